"""A small scripted OpenAI-compatible server for the remote-engine tests.

``StubServer`` runs a FastAPI app under uvicorn on 127.0.0.1 (a free port) in a
background thread. By default it behaves like a real server: it answers chat requests
with the last user message (continuing it when the last message is a partial assistant
answer) and prompt requests with the prompt (word-ish tokens), honours
``max_tokens``, ``stop`` and ``response_format`` (it emits the smallest instance of the
schema), and streams usage when asked. ``stub.script = fn(body) -> Reply`` scripts any
other behaviour: HTTP errors, slow headers, slow tokens, dropped connections, error
events, a missing ``[DONE]``.

It records every request body and header set (``requests``, ``headers``), requests whose
stream the client aborted (``aborted``), and the most streams open at once (``max_active``).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from llmos.llm.fake import tokenize

__all__ = ["StubServer", "Reply", "free_port", "schema_instance"]


@dataclass
class Reply:
    text: str | None = None          # answer text (split into tokens); None: default behaviour
    tokens: list[str] | None = None  # or the exact stream pieces
    finish: str = "stop"
    status: int = 200
    error: Any = None                # JSON body for status >= 400
    delay_s: float = 0.0             # before the response headers
    token_delay_s: float = 0.0       # between stream pieces
    drop_after: int | None = None    # close the connection after this many pieces
    error_event: str | None = None   # send `data: {"error": ...}` after the pieces
    done: bool = True                # send `data: [DONE]`
    finish_chunk: bool = True        # send a chunk carrying finish_reason
    honour_limits: bool = True       # apply max_tokens / stop like a real server
    usage: dict | None = None        # usage to report instead of the counted one


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def schema_instance(schema: dict) -> Any:
    """The smallest value a (simple) JSON schema accepts: what a constraining server emits."""
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    t = schema.get("type", "object")
    if isinstance(t, list):
        t = t[0]
    if t == "object":
        props = schema.get("properties", {})
        return {k: schema_instance(props[k]) for k in schema.get("required", list(props))}
    if t == "array":
        return [schema_instance(schema.get("items", {"type": "string"}))
                for _ in range(schema.get("minItems", 0))]
    if t == "integer":
        return int(schema.get("minimum", 0))
    if t == "number":
        return float(schema.get("minimum", 0))
    if t == "boolean":
        return False
    if t == "null":
        return None
    return "x" * schema.get("minLength", 1)


def _prompt_text(body: dict) -> str:
    if "messages" in body:
        return "\n".join(f"{m.get('role')}: {m.get('content', '')}" for m in body["messages"])
    return body.get("prompt", "")


def default_answer(body: dict) -> str:
    rf = body.get("response_format")
    if isinstance(rf, dict):
        schema = rf.get("json_schema", {}).get("schema") if rf.get("type") == "json_schema" else rf.get("schema")
        if isinstance(schema, dict):
            return json.dumps(schema_instance(schema))
    if "messages" in body:
        msgs = body["messages"]
        users = [m for m in msgs if m.get("role") == "user"]
        answer = (users[-1] if users else msgs[-1]).get("content", "")
        if msgs[-1].get("role") == "assistant":   # continue a partial answer (assistant prefill)
            partial = msgs[-1].get("content", "")
            return answer[len(partial):] if answer.startswith(partial) else ""
        return answer
    return body.get("prompt", "")


class StubServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.script: Callable[[dict], Reply] | None = None
        self.requests: list[dict] = []          # bodies, in arrival order
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.aborted: list[int] = []            # indexes into requests whose stream was cut
        self.finished: list[int] = []           # indexes whose stream ran to the end
        self.active = 0                          # streams open now
        self.max_active = 0
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = self._build()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset(self) -> None:
        with self._lock:
            self.script = None
            self.requests.clear()
            self.paths.clear()
            self.headers.clear()
            self.aborted.clear()
            self.finished.clear()
            self.max_active = self.active

    def start(self) -> StubServer:
        cfg = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="critical",
                             lifespan="off", access_log=False)
        self._server = uvicorn.Server(cfg)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("stub server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ── the app ────────────────────────────────────────────────────────────
    def _record(self, request: Request, body: dict) -> int:
        with self._lock:
            self.requests.append(body)
            self.paths.append(request.url.path)
            self.headers.append({k.lower(): v for k, v in request.headers.items()})
            return len(self.requests) - 1

    def _build(self) -> FastAPI:
        app = FastAPI()
        stub = self

        @app.get("/v1/models")
        async def models() -> dict:
            return {"object": "list", "data": [{"id": "stub-model", "object": "model"}]}

        @app.post("/v1/embeddings")
        async def embeddings(request: Request) -> Any:
            body = await request.json()
            stub._record(request, body)
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            data = [{"object": "embedding", "index": i,
                     "embedding": [float(len(t)), float(sum(c in "aeiou" for c in t)), 1.0]}
                    for i, t in enumerate(inputs)]
            return {"object": "list", "data": list(reversed(data)), "model": body.get("model")}

        async def complete(request: Request, chat: bool) -> Any:
            body = await request.json()
            idx = stub._record(request, body)
            reply = stub.script(body) if stub.script else Reply()
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            if reply.status >= 400:
                content = reply.error if reply.error is not None else {"error": {"message": "failure"}}
                if isinstance(content, str):
                    return StreamingResponse(iter([content.encode()]), status_code=reply.status)
                return JSONResponse(content, status_code=reply.status)
            pieces, finish = stub._pieces(body, reply)
            return StreamingResponse(stub._stream(idx, body, reply, pieces, finish, chat),
                                     media_type="text/event-stream")

        @app.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> Any:
            return await complete(request, True)

        @app.post("/v1/completions")
        async def completions(request: Request) -> Any:
            return await complete(request, False)

        return app

    def _pieces(self, body: dict, reply: Reply) -> tuple[list[str], str]:
        pieces = list(reply.tokens) if reply.tokens is not None else tokenize(
            reply.text if reply.text is not None else default_answer(body))
        finish = reply.finish
        if not reply.honour_limits:
            return pieces, finish
        out: list[str] = []
        text = ""
        for p in pieces:
            if len(out) >= int(body.get("max_tokens") or 1 << 30):
                return out, "length"
            cut = None
            for s in body.get("stop") or ():
                if s in text + p:
                    cut = (text + p).index(s)
            if cut is not None:
                rest = (text + p)[:cut][len(text):]
                if rest:
                    out.append(rest)
                return out, "stop"
            out.append(p)
            text += p
        return out, finish

    async def _stream(self, idx: int, body: dict, reply: Reply, pieces: list[str], finish: str,
                      chat: bool):
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        completed = False
        try:
            base = {"id": f"cmpl-{idx}", "model": body.get("model"), "created": 0,
                    "object": "chat.completion.chunk" if chat else "text_completion"}

            def chunk(piece: str | None, fin: str | None) -> bytes:
                choice: dict[str, Any] = {"index": 0, "finish_reason": fin}
                if chat:
                    choice["delta"] = {"content": piece} if piece is not None else {}
                else:
                    choice["text"] = piece or ""
                return f"data: {json.dumps({**base, 'choices': [choice]})}\n\n".encode()

            if chat:
                yield f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {'role': 'assistant'}, 'finish_reason': None}]})}\n\n".encode()
            for i, p in enumerate(pieces):
                if reply.drop_after is not None and i >= reply.drop_after:
                    raise ConnectionAbortedError("scripted drop")
                if reply.token_delay_s and i:
                    await asyncio.sleep(reply.token_delay_s)
                yield chunk(p, None)
            if reply.drop_after is not None and reply.drop_after >= len(pieces):
                raise ConnectionAbortedError("scripted drop")
            if reply.error_event:
                yield f"data: {json.dumps({'error': {'message': reply.error_event}})}\n\n".encode()
                completed = True
                return
            if reply.finish_chunk:
                yield chunk(None, finish)
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = reply.usage or {"prompt_tokens": len(tokenize(_prompt_text(body))),
                                        "completion_tokens": len(pieces),
                                        "total_tokens": len(tokenize(_prompt_text(body))) + len(pieces)}
                yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode()
            if reply.done:
                yield b"data: [DONE]\n\n"
            completed = True
        finally:
            with self._lock:
                self.active -= 1
                (self.finished if completed else self.aborted).append(idx)
