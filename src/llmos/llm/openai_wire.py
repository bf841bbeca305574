"""The OpenAI HTTP wire format, as the remote engine speaks it.

Map:
- ``request_body``: a ``GenerationRequest`` (plus any text already generated, when a
  preempted request resumes) as the JSON body of ``/chat/completions`` or ``/completions``.
- ``connect``: open a request, retrying only while no connection could be made.
- ``iter_sse``: the ``data:`` payloads of a streamed response.
- ``prompt_text``: a request's prompt as plain text (for estimates).
- ``finish_reason``: a server's finish reason in the engine's vocabulary.
- ``error_fields`` / ``http_error``: a server's error body (OpenAI, FastAPI, Ollama or
  plain text) as one line, the offending field, and the matching error of the tree.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx

from llmos.errors import ContextOverflow, EngineError, InvalidRequest, RemoteError, RemoteUnavailable
from llmos.llm.base import FinishReason, GenerationRequest

__all__ = ["request_body", "connect", "iter_sse", "prompt_text", "finish_reason", "error_fields",
           "http_error"]

_CONTEXT_RE = re.compile(r"context (length|size|window)|too long|maximum context|exceeds the available",
                         re.IGNORECASE)
_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length", "eos": "stop",
                                    "tool_calls": "stop", "content_filter": "stop",
                                    "function_call": "stop"}


def request_body(req: GenerationRequest, model: str, *, generated_text: str = "",
                 generated_tokens: int = 0, stream_usage: bool = True,
                 response_format: str = "json_schema", grammar_field: str | None = None,
                 chat_resume: Mapping[str, Any] | None = None,
                 extra_body: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The streaming request for ``req``. With ``generated_text`` the request continues it:
    a prompt gets the text appended; messages get a trailing partial assistant message and
    the ``chat_resume`` fields (e.g. vLLM's ``continue_final_message``)."""
    p = req.params
    body: dict[str, Any] = {"model": model, "stream": True,
                            "max_tokens": max(1, p.max_tokens - generated_tokens),
                            "temperature": p.temperature, "top_p": p.top_p}
    body.update(extra_body or {})
    if stream_usage:
        body["stream_options"] = {"include_usage": True}
    if p.top_k:
        body["top_k"] = p.top_k
    if p.seed is not None:
        body["seed"] = p.seed
    if p.stop:
        body["stop"] = list(p.stop)
    if req.messages is not None:
        msgs = [dict(m) for m in req.messages]
        if generated_text:
            msgs.append({"role": "assistant", "content": generated_text})
            body.update(chat_resume or {})
        body["messages"] = msgs
    else:
        body["prompt"] = (req.prompt or "") + generated_text
    if req.json_schema is not None:
        if response_format == "json_schema":   # OpenAI, vLLM, llama-server, Ollama
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "output", "schema": req.json_schema, "strict": True}}
        else:                                   # llama-cpp-python's server
            body["response_format"] = {"type": "json_object", "schema": req.json_schema}
    if req.grammar is not None and grammar_field:
        body[grammar_field] = req.grammar
    return body


async def connect(make: Callable[[], Any], *, base_url: str, retries: int, backoff_s: float,
                  backoff_max_s: float, give_up: Callable[[], bool] = lambda: False,
                  wait_server: Callable[[], Awaitable[None]] | None = None) -> Any:
    """Open a request: ``make()`` returns a coroutine (awaited: the response) or a stream
    context manager (entered: headers read; returned as a manager already entered).

    Only failures to connect (refused, connect timeout, no pooled connection) are
    retried, after ``backoff_s`` doubling up to ``backoff_max_s``, then ``wait_server()``
    (a managed server that may be restarting). Anything after the request could have
    reached the server is raised at once as RemoteUnavailable."""
    attempt = 0
    while True:
        try:
            obj = make()
            if hasattr(obj, "__aenter__"):
                return _Entered(obj, await obj.__aenter__())
            return await obj
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
            if attempt >= retries or give_up():
                raise RemoteUnavailable(
                    f"cannot connect to remote server {base_url} "
                    f"({type(e).__name__}, {attempt + 1} attempt{'s' if attempt else ''})",
                    hint=f"is a server running at {base_url}? "
                         "(check base_url under [[remote]] in config.toml)") from e
            await asyncio.sleep(min(backoff_max_s, backoff_s * (2 ** attempt)))
            if wait_server is not None:
                await wait_server()
            attempt += 1
        except httpx.TimeoutException as e:
            raise RemoteUnavailable(f"remote server {base_url} timed out ({type(e).__name__})",
                                    hint=f"check the server at {base_url}") from e
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as e:
            raise RemoteUnavailable(
                f"remote server {base_url} dropped the connection ({type(e).__name__}); "
                "not retried because the request may have reached it",
                hint=f"check the server at {base_url}") from e


class _Entered:
    """A stream context manager already entered once (so retries happen before the body)."""

    def __init__(self, cm: Any, value: Any) -> None:
        self._cm, self._value = cm, value

    async def __aenter__(self) -> Any:
        return self._value

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._cm.__aexit__(*exc)


async def iter_sse(resp: httpx.Response) -> AsyncIterator[str]:
    """The payload of each SSE ``data:`` line. OpenAI-compatible servers put one JSON
    object on each line, and some omit the blank line between events, so every data
    line is a payload of its own; comments, ``event:`` and ``id:`` lines are skipped."""
    async for line in resp.aiter_lines():
        name, sep, value = line.partition(":")
        if not sep or name != "data":
            continue
        payload = value.strip()
        if payload:
            yield payload


def prompt_text(req: GenerationRequest) -> str:
    if req.prompt is not None:
        return req.prompt
    return "\n".join(f"{m.get('role')}: {m.get('content', '')}" for m in req.messages or ())


def finish_reason(raw: Any) -> FinishReason:
    return _FINISH.get(str(raw), "stop")


def error_fields(content: bytes) -> tuple[str, str | None, str | None]:
    """(message, offending field, code) from an error body."""
    text = content.decode("utf-8", "replace").strip()
    try:
        obj = json.loads(text)
    except ValueError:
        return (text.splitlines()[0][:300] if text else "no details"), None, None
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        if isinstance(err, str):
            return err, None, None
        if isinstance(err, dict) and err.get("message"):
            param, code = err.get("param"), err.get("code")
            return str(err["message"]), (str(param) if param else None), (str(code) if code else None)
        detail = obj.get("detail")
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            loc = [str(p) for p in detail[0].get("loc", ()) if p != "body"]
            field = ".".join(loc) or None
            return f"{field or 'request'}: {detail[0].get('msg', 'invalid')}", field, None
        if isinstance(detail, str):
            return detail, None, None
    return text[:300], None, None


def http_error(status: int, content: bytes, *, base_url: str, model: str,
               api_key_env: str | None = None, key_sent: bool = False) -> EngineError:
    """The error of the tree for an HTTP error status from the server at ``base_url``."""
    msg, param, code = error_fields(content)
    where = f"remote server {base_url}"
    if status in (400, 413, 422):
        if code == "context_length_exceeded" or _CONTEXT_RE.search(msg):
            return ContextOverflow(f"{where}: {msg}", hint="shorten the prompt or lower max_tokens")
        return InvalidRequest(f"{where} rejected the request ({status}): {msg}", field=param,
                              hint="fix the named field" if param else None)
    hint: str | None = None
    if status in (401, 403):
        if api_key_env:
            state = "is set; check its value" if os.environ.get(api_key_env) else "is not set"
            hint = f"the API key comes from ${api_key_env}, which {state}"
        elif key_sent:
            hint = "the server refused the API key; check it"
        else:
            hint = "this server needs an API key: set api_key_env under [[remote]] in config.toml"
    elif status == 404:
        hint = f"check the model id {model!r} and that base_url ends with /v1"
    elif status == 429:
        hint = "rate limited: lower max_in_flight or retry later"
    elif status >= 500:
        hint = f"the server at {base_url} failed; see its log"
    return RemoteError(f"{where} returned {status}: {msg}", hint=hint)
