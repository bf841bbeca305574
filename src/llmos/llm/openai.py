"""OpenAIEngine: any OpenAI-compatible server (vLLM, llama.cpp server, Ollama, hosted APIs).

Map:
- ``OpenAIEngine``: the remote driver behind the ``Engine`` interface. Streams
  ``/chat/completions`` (messages) or ``/completions`` (prompt) over SSE through one
  ``httpx.AsyncClient``; ``embed()`` posts to ``/embeddings``.
- ``PriorityAdmission``: a step policy for standalone use (urgent first, then oldest).
- The wire format (request bodies, SSE framing, error bodies) lives in ``openai_wire``.

NOTE (admission model): a remote server batches on its own, so the kernel's hand on
a remote engine is admission, not tokens. Every event that changes the set of live
requests (submit, finish, cancel, suspend, resume, ``set_policy``, ``step()``) asks
``policy.decide`` over ``SeqView``s of the queued and in-flight requests (not those
held by ``suspend``), with ``budget.max_active = max_in_flight``. ``run`` lists which
may be in flight, in order: queued ones start in that order while fewer than
``max_in_flight`` are in flight. An in-flight request that ``run`` omits, or that
``pause`` / ``swap_out`` names, is preempted by cancel-and-resume: the stream is
aborted (the server stops generating and frees its KV), the text so far is kept, and
when ``run`` lists it again it continues with a new request whose prompt ends with
that text and whose ``max_tokens`` is what is left. ``suspend`` / ``resume`` do the
same on the caller's order. Only requests that can continue exactly are preempted:
every ``prompt`` request, and ``messages`` requests when ``chat_resume`` says how the
server continues a trailing assistant message; other in-flight requests run to the
end (their SeqView stays DECODING) and ``suspend`` refuses them.

Retries: only when the connection could not be made (refused, connect timeout, no
pooled connection), with exponential backoff. A request the server accepted is never
sent twice: a dropped stream, a read timeout or an HTTP error fails the request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import httpx

from llmos.errors import (
    Cancelled,
    ContextOverflow,
    EngineBusy,
    EngineError,
    InvalidRequest,
    LLMOSError,
    RemoteError,
    RemoteUnavailable,
    map_foreign,
)
from llmos.llm import openai_wire as wire
from llmos.llm.base import (
    Capabilities,
    Chunk,
    Completion,
    Engine,
    EngineStats,
    FifoPolicy,
    GenerationHandle,
    GenerationRequest,
    SeqState,
    SeqView,
    StepBudget,
    StepDecision,
    StepPolicy,
    Usage,
)

if TYPE_CHECKING:
    from llmos.config import Config
    from llmos.llm.models import ModelInfo
    from llmos.llm.server import ManagedServer

__all__ = ["OpenAIEngine", "PriorityAdmission"]

log = logging.getLogger("llmos.llm.openai")

# ── named defaults (seconds unless named otherwise) ──────────────────────────
REMOTE_MAX_IN_FLIGHT = 8           # requests streaming from one server at once
REMOTE_QUEUE_MAX = 1024            # requests queued behind them; beyond it: EngineBusy
REMOTE_CONNECT_TIMEOUT_S = 5.0
REMOTE_READ_TIMEOUT_S = 120.0      # longest silence between two stream chunks
REMOTE_RETRIES = 3                 # extra connection attempts after the first
REMOTE_BACKOFF_S = 0.25            # first retry delay; doubles each time
REMOTE_BACKOFF_MAX_S = 4.0
REMOTE_MAX_CHARS_PER_TOKEN = 8     # no tokenizer packs more: a prompt surely needs len/8 tokens
DECISION_LOG_MAX = 256


class PriorityAdmission:
    """Admit the most urgent (lowest nice value) first, then the oldest; never preempt."""

    def decide(self, seqs: Sequence[SeqView], budget: StepBudget) -> StepDecision:
        live = [s for s in seqs if not s.state.finished]
        running = [s for s in live if s.state == SeqState.DECODING]
        queued = sorted((s for s in live if s.state != SeqState.DECODING),
                        key=lambda s: (s.priority, s.arrival_s))
        order = sorted(running, key=lambda s: s.arrival_s) + queued
        return StepDecision(run=[s.request_id for s in order[: budget.max_active]], reason="priority")


@dataclass
class _Req:
    """One request inside the engine; owned and mutated only by the engine, on its loop."""

    handle: GenerationHandle
    arrival: float                        # monotonic s at submit
    prompt_estimate: int                  # tokens, from count_tokens (servers may report exact)
    state: SeqState = SeqState.WAITING
    task: asyncio.Task | None = None      # the stream now in flight, if any
    text: str = ""                        # generated text, all segments, after stop trimming
    generated: int = 0                    # tokens (stream chunks) generated, all segments
    earlier_tokens: int = 0               # of which before the current segment (resumes)
    server_prompt: int | None = None      # prompt tokens the server reported (last segment)
    server_completion: int | None = None  # completion tokens the server reported (last segment)
    cached_tokens: int = 0
    first_token_at: float | None = None   # monotonic s
    last_token_at: float | None = None
    preemptions: int = 0
    held: bool = False                    # suspended by the caller: invisible to the policy


class OpenAIEngine(Engine):
    """Remote engine over the OpenAI HTTP API; one instance per (server, model)."""

    name = "openai"

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 api_key_env: str | None = None, context_length: int | None = None,
                 max_in_flight: int = REMOTE_MAX_IN_FLIGHT, queue_max: int = REMOTE_QUEUE_MAX,
                 connect_timeout_s: float = REMOTE_CONNECT_TIMEOUT_S,
                 read_timeout_s: float = REMOTE_READ_TIMEOUT_S,
                 request_timeout_s: float | None = None, retries: int = REMOTE_RETRIES,
                 backoff_s: float = REMOTE_BACKOFF_S, stream_usage: bool = True,
                 response_format: Literal["json_schema", "json_object"] = "json_schema",
                 grammar_field: str | None = None, chat_resume: Mapping[str, Any] | None = None,
                 embeddings: bool = True, extra_body: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None, policy: StepPolicy | None = None,
                 server: ManagedServer | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        """``base_url`` ends with ``/v1``; ``model`` is the id the server knows.

        - ``api_key`` or ``api_key_env`` (the variable holding it): sent as a Bearer token.
        - ``context_length``: tokens per request (0/None: unknown; the server checks).
        - ``max_in_flight`` / ``queue_max``: admission (see NOTE); ``policy`` orders it.
        - ``connect_timeout_s``, ``read_timeout_s`` (longest silence), ``request_timeout_s``
          (longest one stream may take); ``retries`` / ``backoff_s``: connection failures only.
        - ``stream_usage``: ask for ``stream_options.include_usage`` (else tokens are counted).
        - ``response_format``: how a JSON schema is sent: OpenAI's ``json_schema``, or
          ``json_object`` + ``schema`` (llama-cpp-python's server).
        - ``grammar_field``: the body field a server takes a grammar in (none: refused).
        - ``chat_resume``: body fields that make the server continue a trailing assistant
          message (``{}`` for llama.cpp's server and Ollama); None: chat requests are never
          preempted or suspended.
        - ``extra_body`` / ``headers``: added to every request; ``server``: a ManagedServer
          started and stopped with the engine; ``transport``: an httpx transport (tests).
        """
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise InvalidRequest(f"base_url: expected an http(s) URL, got {base_url!r}",
                                 field="base_url", expected="http(s) URL such as http://127.0.0.1:8000/v1")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("model: expected the model id the server knows", field="model",
                                 expected="non-empty string")
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise InvalidRequest(f"max_in_flight: expected a positive integer, got {max_in_flight!r}",
                                 field="max_in_flight", expected="integer >= 1")
        if response_format not in ("json_schema", "json_object"):
            raise InvalidRequest(f"response_format: expected json_schema or json_object, got {response_format!r}",
                                 field="response_format", expected="json_schema | json_object")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key_env = api_key_env
        if api_key is None and api_key_env:
            api_key = os.environ.get(api_key_env) or None
        self._api_key = api_key
        self._ctx = context_length or 0
        self._max_in_flight = max_in_flight
        self._queue_max = queue_max
        self._timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        self._read_timeout_s = read_timeout_s
        self._request_timeout_s = request_timeout_s
        self._retries = max(0, retries)
        self._backoff_s = backoff_s
        self._stream_usage = stream_usage
        self._response_format = response_format
        self._grammar_field = grammar_field
        self._chat_resume = dict(chat_resume) if chat_resume is not None else None
        self._embeddings = embeddings
        self._extra_body = dict(extra_body or {})
        self._headers = dict(headers or {})
        self._server = server
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._reqs: dict[str, _Req] = {}        # live requests by id; owner: this engine
        self._closed = False
        self.policy: StepPolicy = policy or FifoPolicy()
        self.decision_log: deque[StepDecision] = deque(maxlen=DECISION_LOG_MAX)
        self._stats = EngineStats(kv_total_tokens=self._ctx * max_in_flight)
        self._rate_window: deque[tuple[float, int]] = deque(maxlen=64)  # (monotonic s, tokens)

    @classmethod
    def from_model(cls, info: ModelInfo, config: Config | None = None, **kw: Any) -> OpenAIEngine:
        """An engine for a registry entry of kind ``remote`` (``[[remote]]`` in config)."""
        if info.kind != "remote":
            raise EngineError(f"model {info.name} is {info.kind}, not remote")
        kw.setdefault("api_key_env", info.api_key_env)
        kw.setdefault("context_length", info.context_length)
        return cls(info.location, info.remote_model or info.name, **kw)

    # ── Engine surface ─────────────────────────────────────────────────────
    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(batching=True, snapshots=False, constrained=True,
                            embeddings=self._embeddings, context_length=self._ctx,
                            max_active=self._max_in_flight)

    async def start(self) -> None:
        if self._server is not None:
            await self._server.start()
            self.base_url = self._server.base_url
        self._closed = False
        self._ensure_client()

    async def close(self) -> None:
        self._closed = True
        tasks = []
        for r in list(self._reqs.values()):
            if r.task is not None:
                tasks.append(r.task)
                r.task.cancel()
                r.task = None
            r.state = SeqState.DONE
            r.handle.fail(Cancelled("engine closed"))
        self._reqs.clear()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._server is not None:
            await self._server.stop()

    def submit(self, request: GenerationRequest) -> GenerationHandle:
        request.validate()
        if self._closed:
            raise EngineError("engine is closed")
        if request.grammar is not None and self._grammar_field is None:
            raise InvalidRequest(
                f"grammar: the remote server at {self.base_url} takes no grammar through the OpenAI API",
                field="grammar", expected="json_schema, or an engine built with grammar_field=",
                hint="express the output as a JSON schema (json_schema=...)")
        if self._ctx and request.params.max_tokens >= self._ctx:
            raise ContextOverflow(
                f"max_tokens ({request.params.max_tokens}) does not fit the context of "
                f"{self.model} ({self._ctx} tokens)", hint="lower max_tokens")
        text = wire.prompt_text(request)
        if self._ctx and len(text) // REMOTE_MAX_CHARS_PER_TOKEN + request.params.max_tokens > self._ctx:
            raise ContextOverflow(
                f"prompt (at least {len(text) // REMOTE_MAX_CHARS_PER_TOKEN} tokens) + max_tokens "
                f"({request.params.max_tokens}) exceed the context of {self.model} ({self._ctx} tokens)",
                hint="shorten the prompt or lower max_tokens")
        if request.request_id in self._reqs:
            raise InvalidRequest(f"request_id {request.request_id!r} is already live",
                                 field="request_id", expected="an id not in use")
        queued = sum(1 for r in self._reqs.values() if r.state != SeqState.DECODING)
        if queued >= self._queue_max:
            raise EngineBusy(f"remote engine queue full ({self._queue_max} requests waiting)",
                             hint="retry shortly")
        self._ensure_client()
        handle = GenerationHandle(request, self)
        self._reqs[request.request_id] = _Req(handle, time.monotonic(), self.count_tokens(text))
        self.step()
        return handle

    def cancel(self, request_id: str) -> bool:
        r = self._reqs.pop(request_id, None)
        if r is None:
            return False
        if r.task is not None:
            r.task.cancel()   # closing the stream tells the server to stop generating
            r.task = None
        self._complete(r, "cancelled")
        self.step()
        return True

    def set_policy(self, policy: StepPolicy) -> None:
        self.policy = policy
        self.step()

    async def suspend(self, request_id: str, *, to_disk: bool = False) -> None:
        """Abort the request's stream (the server frees its KV) and hold it, text kept,
        until ``resume``; ``to_disk`` changes nothing (the state is the text so far)."""
        r = self._reqs.get(request_id)
        if r is None:
            raise EngineError(f"no live request {request_id!r}")
        if not self._resumable(r):
            raise EngineError(
                f"cannot suspend chat request {request_id!r}: the engine does not know how "
                f"{self.base_url} continues a partial answer",
                hint="build the engine with chat_resume={} (llama.cpp server, Ollama) or "
                     "chat_resume={'continue_final_message': True, 'add_generation_prompt': False} (vLLM)")
        if r.state == SeqState.DECODING:
            self._preempt(r)
        else:
            r.state = SeqState.SWAPPED
            r.preemptions += 1
        r.held = True
        self.step()

    async def resume(self, request_id: str) -> None:
        r = self._reqs.get(request_id)
        if r is None:
            raise EngineError(f"no live request {request_id!r}")
        r.held = False
        self.step()

    def stats(self) -> EngineStats:
        s = self._stats
        s.active = sum(1 for r in self._reqs.values() if r.state == SeqState.DECODING)
        s.waiting = len(self._reqs) - s.active
        s.kv_used_tokens = sum(r.prompt_estimate + r.generated for r in self._reqs.values()
                               if r.state == SeqState.DECODING)
        if len(self._rate_window) >= 2:
            span = self._rate_window[-1][0] - self._rate_window[0][0]
            toks = sum(n for _, n in list(self._rate_window)[1:])
            s.tokens_per_s = toks / span if span > 0 else 0.0
        return s

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not self._embeddings:
            raise EngineError(f"{self.name} engine for {self.model} was built without embeddings")
        if self._closed:
            raise EngineError("engine is closed")
        if isinstance(texts, str) or not texts or not all(isinstance(t, str) for t in texts):
            raise InvalidRequest("texts: expected a non-empty list of strings", field="texts",
                                 expected="non-empty list of strings")
        self._ensure_client()
        url = f"{self.base_url}/embeddings"
        body = {"model": self.model, "input": list(texts)}
        resp = await self._connect(lambda: self._client.post(url, json=body, headers=self._auth()))  # type: ignore[union-attr]
        if resp.status_code >= 400:
            raise self._http_error(resp.status_code, resp.content)
        try:
            data = sorted(resp.json()["data"], key=lambda d: d.get("index", 0))
            out = [[float(x) for x in d["embedding"]] for d in data]
        except (ValueError, KeyError, TypeError) as e:
            raise RemoteError(f"remote server {self.base_url}: malformed embeddings response "
                              f"({type(e).__name__})") from e
        if len(out) != len(texts):
            raise RemoteError(f"remote server {self.base_url}: {len(out)} embeddings for {len(texts)} texts")
        return out

    # ── admission (see NOTE) ───────────────────────────────────────────────
    def views(self) -> list[SeqView]:
        out = []
        for rid, r in self._reqs.items():
            if r.held:
                continue
            req = r.handle.request
            in_kv = r.prompt_estimate + r.generated if r.state == SeqState.DECODING else 0
            out.append(SeqView(rid, req.owner, req.priority, r.state, r.arrival, r.prompt_estimate,
                               r.prompt_estimate if r.state == SeqState.DECODING else 0,
                               r.generated, req.params.max_tokens, in_kv))
        return out

    def step(self) -> StepDecision | None:
        """Ask the policy which requests may be in flight and apply it; None when idle."""
        if self._closed or not self._reqs:
            return None
        views = self.views()
        used = sum(v.kv_tokens for v in views)
        total = self._ctx * self._max_in_flight
        budget = StepBudget(self._max_in_flight, total, max(0, total - used), total)
        decision = self.policy.decide(views, budget)
        self.decision_log.append(decision)
        self._stats.steps += 1
        run = [rid for rid in dict.fromkeys(decision.run)
               if rid in self._reqs and not self._reqs[rid].held][: self._max_in_flight]
        stop = set(decision.swap_out) | set(decision.pause)
        for rid, r in list(self._reqs.items()):
            if (r.state == SeqState.DECODING and (rid in stop or rid not in run)
                    and self._resumable(r)):
                self._preempt(r)
        running = sum(1 for r in self._reqs.values() if r.state == SeqState.DECODING)
        for rid in run:
            if running >= self._max_in_flight:
                break
            r = self._reqs[rid]
            if rid in stop:
                continue
            if r.state in (SeqState.WAITING, SeqState.PAUSED, SeqState.SWAPPED):
                if r.generated >= r.handle.request.params.max_tokens:   # preempted at the limit
                    self._reqs.pop(rid, None)
                    self._complete(r, "length")
                    continue
                r.state = SeqState.DECODING
                r.task = asyncio.get_running_loop().create_task(self._run(r))
                running += 1
        return decision

    def _resumable(self, r: _Req) -> bool:
        return r.handle.request.prompt is not None or self._chat_resume is not None

    def _preempt(self, r: _Req) -> None:
        r.state = SeqState.SWAPPED
        r.preemptions += 1
        if r.task is not None:
            r.task.cancel()
            r.task = None

    # ── one request in flight ──────────────────────────────────────────────
    async def _run(self, r: _Req) -> None:
        me = asyncio.current_task()
        try:
            if self._request_timeout_s is not None:
                async with asyncio.timeout(self._request_timeout_s):
                    reason = await self._stream(r, me)
            else:
                reason = await self._stream(r, me)
        except TimeoutError:
            self._fail(r, me, RemoteUnavailable(
                f"remote server {self.base_url}: no complete answer within {self._request_timeout_s:g} s",
                hint="raise request_timeout_s, lower max_tokens, or check the server's load"))
        except LLMOSError as e:
            self._fail(r, me, e)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # foreign error from the wire: map it at this boundary
            self._fail(r, me, map_foreign(e, context=f"remote server {self.base_url}"))
        else:
            if r.task is me and reason is not None:
                self._reqs.pop(r.handle.request_id, None)
                r.task = None
                self._complete(r, reason)
        finally:
            if r.task is me:
                r.task = None
            if not self._closed:
                try:
                    self.step()
                except Exception:   # a failing policy must not vanish inside a task
                    log.exception("step policy %s failed", type(self.policy).__name__)

    async def _stream(self, r: _Req, me: asyncio.Task | None) -> str | None:
        """Send one segment of ``r`` and deliver its chunks; returns the finish reason."""
        req = r.handle.request
        chat = req.messages is not None
        url = f"{self.base_url}/{'chat/completions' if chat else 'completions'}"
        body = self._body(r)
        r.earlier_tokens = r.generated
        r.server_prompt = r.server_completion = None
        finish: str | None = None
        saw_done = False
        stream_cm = await self._connect(lambda: self._open_stream(url, body))
        async with stream_cm as resp:
            if resp.status_code >= 400:
                raise self._http_error(resp.status_code, await resp.aread())
            try:
                async for payload in wire.iter_sse(resp):
                    if payload == "[DONE]":
                        saw_done = True
                        break
                    try:
                        obj = json.loads(payload)
                    except ValueError:
                        raise RemoteError(f"remote server {self.base_url}: stream carried non-JSON data "
                                          f"{payload[:80]!r}") from None
                    if not isinstance(obj, dict):
                        continue
                    if obj.get("error"):
                        msg, _, _ = wire.error_fields(json.dumps(obj).encode())
                        raise RemoteError(f"remote server {self.base_url} failed mid-stream: {msg}")
                    self._take_usage(r, obj.get("usage"))
                    for choice in obj.get("choices") or ():
                        if choice.get("index", 0) != 0:
                            continue
                        piece = ((choice.get("delta") or {}).get("content") if chat
                                 else choice.get("text")) or ""
                        if piece and r.task is me:
                            local = self._deliver(r, piece)
                            if local is not None:
                                return local
                        if choice.get("finish_reason"):
                            finish = wire.finish_reason(choice["finish_reason"])
            except httpx.ReadTimeout:
                raise RemoteUnavailable(
                    f"remote server {self.base_url} sent nothing for {self._read_timeout_s:g} s",
                    hint="the server may be overloaded; raise read_timeout_s or lower max_in_flight") from None
            except (httpx.RemoteProtocolError, httpx.ReadError) as e:
                raise RemoteUnavailable(
                    f"remote server {self.base_url} dropped the connection mid-response "
                    f"({type(e).__name__}); not retried because the server had accepted it",
                    hint=f"check the server at {self.base_url} (crash, restart or proxy timeout)") from e
        if finish is None and not saw_done:
            raise RemoteUnavailable(f"remote server {self.base_url} ended the stream without finishing",
                                    hint=f"check the server at {self.base_url}")
        return finish or "stop"

    def _open_stream(self, url: str, body: dict) -> Any:
        assert self._client is not None
        return self._client.stream("POST", url, json=body, headers=self._auth())

    async def _connect(self, make: Any) -> Any:
        wait = self._server.wait_ready if self._server is not None else None
        return await wire.connect(make, base_url=self.base_url, retries=self._retries,
                                  backoff_s=self._backoff_s, backoff_max_s=REMOTE_BACKOFF_MAX_S,
                                  give_up=lambda: self._closed, wait_server=wait)

    def _deliver(self, r: _Req, piece: str) -> str | None:
        """Push one streamed piece; returns a finish reason when a local limit ends it."""
        now = time.monotonic()
        if r.first_token_at is None:
            r.first_token_at = now
        r.last_token_at = now
        r.handle.push(Chunk(piece, None, r.generated))
        r.generated += 1
        r.text += piece
        self._stats.tokens_generated += 1
        self._rate_window.append((now, 1))
        req = r.handle.request
        for stop in req.params.stop:   # servers that ignore `stop` (or split it over a resume)
            if stop in r.text:
                r.text = r.text[: r.text.index(stop)]
                return "stop"
        if r.generated >= req.params.max_tokens:
            return "length"
        return None

    def _take_usage(self, r: _Req, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        if isinstance(usage.get("prompt_tokens"), int):
            r.server_prompt = usage["prompt_tokens"]
        if isinstance(usage.get("completion_tokens"), int):
            r.server_completion = usage["completion_tokens"]
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
            r.cached_tokens = details["cached_tokens"]

    def _body(self, r: _Req) -> dict[str, Any]:
        return wire.request_body(
            r.handle.request, self.model, generated_text=r.text, generated_tokens=r.generated,
            stream_usage=self._stream_usage, response_format=self._response_format,
            grammar_field=self._grammar_field, chat_resume=self._chat_resume,
            extra_body=self._extra_body)

    # ── results ────────────────────────────────────────────────────────────
    def _complete(self, r: _Req, reason: str) -> None:
        now = time.monotonic()
        first = r.first_token_at or now
        seg = r.server_completion if r.server_completion is not None else r.generated - r.earlier_tokens
        completion_tokens = r.earlier_tokens + seg
        if r.server_prompt is not None:   # a resumed segment's prompt includes earlier output
            prompt_tokens = max(0, r.server_prompt - r.earlier_tokens) if r.earlier_tokens else r.server_prompt
        else:
            prompt_tokens = r.prompt_estimate
        usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                      cached_tokens=r.cached_tokens, ttft_s=first - r.handle.submitted_at,
                      decode_s=(r.last_token_at or first) - first,
                      total_s=now - r.handle.submitted_at, preemptions=r.preemptions)
        r.state = SeqState.DONE
        r.handle.finish(Completion(r.handle.request_id, r.text, reason, usage, self.model))  # type: ignore[arg-type]

    def _fail(self, r: _Req, me: asyncio.Task | None, exc: LLMOSError) -> None:
        if r.task is not me:      # cancelled or preempted meanwhile: the error is moot
            return
        self._reqs.pop(r.handle.request_id, None)
        r.task = None
        r.state = SeqState.DONE
        r.handle.fail(exc)

    def _http_error(self, status: int, content: bytes) -> EngineError:
        return wire.http_error(status, content, base_url=self.base_url, model=self.model,
                               api_key_env=self._api_key_env, key_sent=bool(self._api_key))

    def _auth(self) -> dict[str, str]:
        h = dict(self._headers)
        if self._api_key:
            h["Authorization"] = f"Bearer {self._api_key}"
        return h

    def _ensure_client(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self._timeout, transport=self._transport,
                limits=httpx.Limits(max_connections=self._max_in_flight + 4,
                                    max_keepalive_connections=self._max_in_flight))
