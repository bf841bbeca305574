"""OpenAI-compatible API under ``/v1``: models, chat completions, completions, embeddings.

Map:
- ``GET /v1/models``: the models the kernel can serve (its engines) and the registry's.
- ``POST /v1/chat/completions``: one ``llm.generate`` syscall per choice, as the calling
  agent, so each request is a scheduled, accounted, capability-checked kernel process.
  Priority comes from the ``X-LLMOS-Priority`` header (nice-like, -20..19), else the
  agent's default. ``stream: true`` answers server-sent ``chat.completion.chunk``s
  (then ``[DONE]``); ``tools`` work through constrained JSON (``openai_tools``);
  ``response_format`` ``json_object`` / ``json_schema`` constrain the output.
  With an ``X-LLMOS-Conversation: <id>`` header (an id from ``conversation.open``) the
  request continues that conversation instead: its last message (a user message) is the
  new turn, the daemon holds the rest of the history within the model's window
  (``conversation.say``: older turns summarized, originals kept), so the earlier
  messages of the request are not used. Tools, ``response_format`` and ``n`` > 1 are
  refused there. With ``X-LLMOS-Memory: k`` the calling agent's k memories nearest the
  last user message are recalled into the system message (``openai_memory``; with a
  conversation, into that turn's system prompt); their ids come back in ``llmos.memories``.
- ``POST /v1/completions``: the same for raw prompts (``echo`` supported).
- ``POST /v1/embeddings``: all-MiniLM-L6-v2 (384 dimensions), the model long-term memory
  uses, through the ``memory.embed`` syscall as the calling agent; ``model`` is its name
  (or a default alias), any other is a 400 naming ``model``.

A client that disconnects from a stream before its end gets its generation killed (as
that agent, ``proc.kill``): ``GenerationResponse`` kills the pid that the kernel's
``started`` event named.

Errors use OpenAI's envelope (``{"error": {message, type, param, code}}``) so unchanged
OpenAI clients raise their usual exceptions; ``param`` names the bad field.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Header, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

from llmos import params
from llmos.api.auth import Principal
from llmos.api.deps import Services, call, principal, services
from llmos.api.errors import ApiError
from llmos.api.openai_memory import attach, memory_k
from llmos.api.openai_schemas import (
    ChatCompletionOut,
    ChatRequest,
    CompletionOut,
    CompletionRequest,
    EmbeddingList,
    EmbeddingRequest,
    ModelList,
)
from llmos.api.openai_tools import ToolPlan
from llmos.errors import InvalidArgument, LLMOSError, map_foreign

__all__ = ["router", "priority_from_header", "registry_models", "GenerationResponse"]

log = logging.getLogger("llmos.api")

router = APIRouter(prefix="/v1", tags=["openai"])
Who = Depends(principal)
Svc = Depends(services)
DEFAULT_ALIASES = ("default", "llmos")      # model names that mean "the configured default"
_ERR = {"description": "OpenAI error envelope: {error: {message, type, param, code}}"}
RESPONSES: dict[int | str, dict[str, Any]] = {s: _ERR for s in (400, 401, 403, 404, 413, 422, 429)}


def priority_from_header(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        p = int(value.strip())
    except ValueError:
        p = None
    if p is None or not params.PRIORITY_MIN <= p <= params.PRIORITY_MAX:
        raise InvalidArgument(f"X-LLMOS-Priority: expected an integer in [{params.PRIORITY_MIN}, "
                              f"{params.PRIORITY_MAX}], got {value!r}", field="X-LLMOS-Priority",
                              expected=f"integer in [{params.PRIORITY_MIN}, {params.PRIORITY_MAX}]")
    return p


def _model_arg(svc: Services, model: str) -> str | None:
    """The ``model`` argument for llm.generate: None for the default engine."""
    if model in DEFAULT_ALIASES or model == svc.config.model:
        return None
    return model


def _usage(final: dict[str, Any]) -> dict[str, int]:
    u = final.get("usage") if isinstance(final.get("usage"), dict) else {}
    pt = int(u.get("prompt_tokens", final.get("tokens_in", 0)) or 0)
    ct = int(u.get("completion_tokens", final.get("tokens_out", 0)) or 0)
    return {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}


def _ttft(final: dict[str, Any]) -> float | None:
    u = final.get("usage") if isinstance(final.get("usage"), dict) else {}
    v = u.get("ttft_s", final.get("ttft_s"))
    return float(v) if isinstance(v, (int, float)) else None


def _finish(final: dict[str, Any]) -> str:
    r = str(final.get("finish_reason") or "stop")
    return r if r in ("stop", "length", "tool_calls", "content_filter") else "stop"


def _chunk_text(item: Any) -> str | None:
    """Text of a streamed ``{"type": "chunk"}`` item; None for the final result."""
    if isinstance(item, dict) and item.get("type") == "chunk":
        return str(item.get("text", ""))
    return None


def _raise_if_error(item: Any) -> None:
    """A failed final ``{"type": "result", "ok": false, "error": {...}}`` as its LLMOSError."""
    if isinstance(item, dict) and item.get("type") == "result" and not item.get("ok", True):
        from llmos.errors import error_from_dict

        raise error_from_dict(item.get("error") or {"error": "error", "message": "generation failed"})


def _final_value(item: Any) -> dict[str, Any]:
    v = item.get("value") if isinstance(item, dict) else None
    return v if isinstance(v, dict) else {}


@dataclass
class _Gen:
    """One streamed generation, as the API follows it."""
    pid: int | None = None        # its llm process, from the kernel's "started" event
    done: bool = False            # its final result was read (nothing left to kill)


async def _stream(svc: Services, who: Principal, args: dict[str, Any], gen: _Gen,
                  name: str = "llm.generate") -> AsyncIterator[Any]:
    """``kernel.syscall_stream`` of ``name`` with errors raised as LLMOSError; ``started``
    is noted in ``gen``, not yielded."""
    try:
        async with contextlib.aclosing(svc.kernel.syscall_stream(
                who.agent, name, {**args, "stream": True})) as items:
            async for item in items:
                kind = item.get("type") if isinstance(item, dict) else None
                if kind == "started":
                    gen.pid = item.get("pid")
                    continue
                if kind == "result":
                    gen.done = True
                _raise_if_error(item)
                yield item
    except LLMOSError:
        raise
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - mapped at this boundary
        raise map_foreign(e, context="llm.generate") from e


class GenerationResponse(StreamingResponse):
    """Server-sent events of one generation. If the response ends before the generation
    did (the client disconnected, or sending failed), the process is killed as the
    calling agent, and the generators behind the body are closed."""

    def __init__(self, content: AsyncIterator[bytes], *, svc: Services, who: Principal, gen: _Gen,
                 feed: AsyncIterator[Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self.svc = svc
        self.who = who
        self.gen = gen
        self.feed = feed              # the _stream generator the body reads from

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if not self.gen.done:
                # a new task: this one may be inside a cancelled scope (client gone)
                task = asyncio.get_running_loop().create_task(self._abandon())
                tasks = self.svc.extra.setdefault("abandoned", set())
                tasks.add(task)
                task.add_done_callback(tasks.discard)

    async def _abandon(self) -> None:
        for it in (self.body_iterator, self.feed):
            with contextlib.suppress(Exception):
                await it.aclose()  # type: ignore[attr-defined]
        if self.gen.pid is None or self.gen.done:
            return
        res = await self.svc.kernel.syscall(self.who.agent, "proc.kill",
                                            {"pid": self.gen.pid, "reason": "client disconnected"})
        if not res.ok:
            log.info("pid %s: kill after client disconnect: %s", self.gen.pid, res.error.message)


async def _prime(gen: AsyncIterator[Any]) -> tuple[list[Any], bool]:
    """Read up to the first chunk, so errors before any output become HTTP errors."""
    head: list[Any] = []
    async for item in gen:
        head.append(item)
        if _chunk_text(item) is not None:
            return head, False
    return head, True


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


async def _replay(head: list[Any], ended: bool, gen: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The items ``_prime`` read, then the rest of ``gen``."""
    for it in head:
        yield it
    if not ended:
        async for it in gen:
            yield it


def _sse_error(e: LLMOSError) -> bytes:
    """A failure after the stream began: an error event, then the end of the stream."""
    return _sse({"error": {"message": e.message, "type": "server_error", "code": e.code}}) + b"data: [DONE]\n\n"


# ── models ──────────────────────────────────────────────────────────────────
def _registry_names(config: Any) -> list[tuple[str, str]]:
    """(name, kind) of every model the registry knows, without reading GGUF headers
    (that parse takes seconds; /v1/models needs names only)."""
    from llmos.llm.models import PACKAGED, embedded_model_path, packaged_path

    out: list[tuple[str, str]] = []
    try:
        embedded_model_path()
        out.append((params.DEFAULT_MODEL, "embedded"))
    except LLMOSError:
        pass
    named = {name for name, _ in config.models}
    out += [(s.name, "packaged") for s in PACKAGED.values()
            if s.name not in named and packaged_path(s, config).is_file()]
    out += [(name, "gguf") for name, _ in config.models]
    out += [(r.name, "remote") for r in config.remotes]
    return out


async def registry_models(svc: Services) -> list[tuple[str, str]]:
    """The registry's model names, looked up once per daemon (in a thread)."""
    task = svc.extra.get("registry_models")
    if task is None:
        task = svc.extra["registry_models"] = asyncio.ensure_future(
            asyncio.to_thread(_registry_names, svc.config))
    try:
        return list(await asyncio.shield(task))
    except LLMOSError:
        return []


def _ok(model: type, stream: bool = False) -> dict[int | str, dict[str, Any]]:
    content: dict[str, Any] = {"application/json": {}}
    if stream:
        content["text/event-stream"] = {"schema": {"type": "string"},
                                        "description": "with stream=true: data: {chunk} lines, then [DONE]"}
    return {**RESPONSES, 200: {"model": model, "content": content}}


@router.get("/models", responses=_ok(ModelList))
async def models(who: Principal = Who, svc: Services = Svc) -> dict:
    """Models this daemon can serve: each engine's model, then the registry's."""
    from llmos.api.observe import _engine_map

    seen: dict[str, dict] = {}
    for name, eng in _engine_map(svc.kernel).items():
        for mid in (str(name), str(getattr(eng, "model", "") or "")):
            if mid and mid not in seen:
                seen[mid] = {"id": mid, "object": "model", "created": int(svc.started),
                             "owned_by": "llmos", "engine": str(name)}
    for name, kind in await registry_models(svc):
        seen.setdefault(name, {"id": name, "object": "model", "created": int(svc.started),
                               "owned_by": "llmos", "kind": kind})
    return {"object": "list", "data": list(seen.values())}


# ── chat ────────────────────────────────────────────────────────────────────
@router.post("/chat/completions", responses=_ok(ChatCompletionOut, stream=True))
async def chat_completions(body: ChatRequest, who: Principal = Who, svc: Services = Svc,
                           x_llmos_priority: str | None = Header(None),
                           x_llmos_conversation: str | None = Header(None),
                           x_llmos_memory: str | None = Header(None)) -> Response:
    body.check()
    prio = priority_from_header(x_llmos_priority)
    recall_k, recalled = memory_k(x_llmos_memory), []
    plan = ToolPlan.build(body)
    mt = body.max_completion_tokens or body.max_tokens
    name = "llm.generate"
    if x_llmos_conversation is not None:
        name, args = "conversation.say", _conversation_args(x_llmos_conversation, body, plan)
        if recall_k:
            args["memory"] = recall_k          # recalled inside conversation.say, into that turn only
    else:
        args = {"messages": plan.engine_messages(body.messages)}
        if recall_k:
            args["messages"], recalled = await attach(svc, who, recall_k, args["messages"])
        for k, v in (("json_schema", plan.schema), ("model", _model_arg(svc, body.model))):
            if v is not None:
                args[k] = v
    for k, v in (("max_tokens", mt), ("temperature", body.temperature), ("top_p", body.top_p),
                 ("seed", body.seed), ("priority", prio)):
        if v is not None:
            args[k] = v
    if body.stops():
        args["stop"] = body.stops()
    cid = "chatcmpl-" + uuid.uuid4().hex[:24]
    created = int(time.time())
    if body.stream:
        return await _chat_stream(svc, who, args, plan, body, cid, created, name)
    t0 = time.perf_counter()
    finals = await asyncio.gather(*(call(svc, who, name, args) for _ in range(body.n)))
    choices = []
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for i, final in enumerate(finals):
        content, tool_calls = plan.parse(str(final.get("text", "")))
        msg: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            msg["tool_calls"] = tool_calls
        choices.append({"index": i, "message": msg, "logprobs": None,
                        "finish_reason": "tool_calls" if tool_calls else _finish(final)})
        u = _usage(final)
        usage = {k: usage[k] + u[k] for k in usage}
        svc.metrics.observe_ttft(_ttft(final))
    if not finals or _ttft(finals[0]) is None:
        svc.metrics.observe_ttft(time.perf_counter() - t0)
    return JSONResponse({"id": cid, "object": "chat.completion", "created": created,
                         "model": body.model, "choices": choices, "usage": usage,
                         "system_fingerprint": None,
                         "llmos": {"pids": [f.get("pid") for f in finals],
                                   **({"memories": finals[0].get("memories", recalled)} if recall_k else {})}})


def _conversation_args(conv: str, body: ChatRequest, plan: ToolPlan) -> dict[str, Any]:
    """``conversation.say`` arguments: the request's last message is the new turn."""
    if not conv.strip():
        raise InvalidArgument("X-LLMOS-Conversation: expected a conversation id", field="X-LLMOS-Conversation",
                              expected="an id from conversation.open")
    for field, bad in (("tools", plan.active), ("response_format", plan.schema is not None), ("n", body.n > 1)):
        if bad:
            raise InvalidArgument(f"{field}: not supported with X-LLMOS-Conversation", field=field,
                                  expected="omitted when continuing a conversation")
    last = plan.engine_messages(body.messages)[-1]
    if last["role"] != "user":
        raise InvalidArgument("messages: the last message must be the user's new turn when continuing "
                              "a conversation", field="messages", expected="a last message with role user")
    return {"id": conv.strip(), "content": last["content"]}


async def _chat_stream(svc: Services, who: Principal, args: dict, plan: ToolPlan, body: ChatRequest,
                       cid: str, created: int, name: str = "llm.generate") -> Response:
    t0 = time.perf_counter()
    state = _Gen()
    gen = _stream(svc, who, args, state, name)
    head, ended = await _prime(gen)
    if not ended:
        svc.metrics.observe_ttft(time.perf_counter() - t0)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": body.model,
            "system_fingerprint": None}

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                          "finish_reason": finish}]})

    async def events() -> AsyncIterator[bytes]:
        yield chunk({"role": "assistant", "content": ""})
        buffered: list[str] = []          # tool mode: the JSON is parsed once complete
        final: dict[str, Any] = {}
        try:
            async for item in _replay(head, ended, gen):
                text = _chunk_text(item)
                if text is None:
                    final = _final_value(item)
                    continue
                if plan.active:
                    buffered.append(text)
                elif text:
                    yield chunk({"content": text})
        except LLMOSError as e:
            yield _sse_error(e)
            return
        finish = _finish(final)
        if plan.active:
            content, tool_calls = plan.parse("".join(buffered) or str(final.get("text", "")))
            if tool_calls:
                yield chunk({"tool_calls": [{"index": i, **c} for i, c in enumerate(tool_calls)]})
                finish = "tool_calls"
            elif content:
                yield chunk({"content": content})
        yield chunk({}, finish)
        if include_usage:
            yield _sse({**base, "choices": [], "usage": _usage(final)})
        yield b"data: [DONE]\n\n"

    return GenerationResponse(events(), svc=svc, who=who, gen=state, feed=gen,
                              headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# ── completions ─────────────────────────────────────────────────────────────
@router.post("/completions", responses=_ok(CompletionOut, stream=True))
async def completions(body: CompletionRequest, who: Principal = Who, svc: Services = Svc,
                      x_llmos_priority: str | None = Header(None)) -> Response:
    body.check()
    prio = priority_from_header(x_llmos_priority)
    base_args: dict[str, Any] = {}
    for k, v in (("max_tokens", body.max_tokens), ("temperature", body.temperature),
                 ("top_p", body.top_p), ("seed", body.seed), ("priority", prio),
                 ("model", _model_arg(svc, body.model))):
        if v is not None:
            base_args[k] = v
    if body.stops():
        base_args["stop"] = body.stops()
    cid = "cmpl-" + uuid.uuid4().hex[:24]
    created = int(time.time())
    base = {"id": cid, "object": "text_completion", "created": created, "model": body.model}
    if body.stream:
        prompt = body.prompts()[0] if len(body.prompts()) == 1 else None
        if prompt is None:
            raise InvalidArgument("prompt: streaming takes one prompt", field="prompt",
                                  expected="a single string when stream=true")
        state = _Gen()
        gen = _stream(svc, who, {**base_args, "prompt": prompt}, state)
        head, ended = await _prime(gen)

        async def events() -> AsyncIterator[bytes]:
            final: dict[str, Any] = {}
            if body.echo:
                yield _sse({**base, "choices": [{"index": 0, "text": prompt, "logprobs": None,
                                                 "finish_reason": None}]})
            try:
                async for item in _replay(head, ended, gen):
                    text = _chunk_text(item)
                    if text is None:
                        final = _final_value(item)
                    elif text:
                        yield _sse({**base, "choices": [{"index": 0, "text": text, "logprobs": None,
                                                         "finish_reason": None}]})
            except LLMOSError as e:
                yield _sse_error(e)
                return
            yield _sse({**base, "choices": [{"index": 0, "text": "", "logprobs": None,
                                             "finish_reason": _finish(final)}]})
            if body.stream_options and body.stream_options.include_usage:
                yield _sse({**base, "choices": [], "usage": _usage(final)})
            yield b"data: [DONE]\n\n"

        return GenerationResponse(events(), svc=svc, who=who, gen=state, feed=gen,
                                  headers={"Cache-Control": "no-cache"})
    jobs = [(p, {**base_args, "prompt": p}) for p in body.prompts() for _ in range(body.n)]
    finals = await asyncio.gather(*(call(svc, who, "llm.generate", a) for _, a in jobs))
    choices = []
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for i, ((prompt, _), final) in enumerate(zip(jobs, finals, strict=True)):
        text = str(final.get("text", ""))
        choices.append({"index": i, "text": (prompt + text) if body.echo else text, "logprobs": None,
                        "finish_reason": _finish(final)})
        u = _usage(final)
        usage = {k: usage[k] + u[k] for k in usage}
        svc.metrics.observe_ttft(_ttft(final))
    return JSONResponse({**base, "choices": choices, "usage": usage,
                         "llmos": {"pids": [f.get("pid") for f in finals]}})


# ── embeddings ──────────────────────────────────────────────────────────────
@router.post("/embeddings", responses=_ok(EmbeddingList))
async def embeddings(body: EmbeddingRequest, who: Principal = Who, svc: Services = Svc) -> Response:
    body.check()
    from llmos.llm.embed import MODEL_NAME

    if body.model not in DEFAULT_ALIASES and body.model.rsplit("/", 1)[-1].lower() != MODEL_NAME.lower():
        raise ApiError(400, "unsupported", f"model {body.model!r} does not compute embeddings here",
                       field="model", expected=f"{MODEL_NAME!r} (or {' / '.join(DEFAULT_ALIASES)})",
                       hint="embeddings come from the model long-term memory uses")
    res = await call(svc, who, "memory.embed", {"input": body.inputs()})
    vectors = res.get("embeddings", res) if isinstance(res, dict) else res
    data = []
    for i, v in enumerate(vectors):
        v = list(v)[: body.dimensions] if body.dimensions else list(v)
        if body.encoding_format == "base64":
            import base64
            import struct

            v = base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()
        data.append({"object": "embedding", "index": i, "embedding": v})
    tokens = int(res.get("tokens", 0)) if isinstance(res, dict) else 0
    return JSONResponse({"object": "list", "data": data, "model": body.model,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
