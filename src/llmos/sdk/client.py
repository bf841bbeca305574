"""``llmos.Client`` (sync) and ``llmos.AsyncClient`` over httpx, for programs and agents.

Map:
- ``_Endpoints``: every REST call as one line (method, path, body, which key to return);
  shared by both clients, whose ``_call`` is sync or async.
- ``Client`` / ``AsyncClient``: ``syscall``, processes (``spawn``, ``ps``, ``get_process``,
  ``kill``, ``nice``, ``wait``), runs (``submit_run``, ``get_run``, ``plan``, ``confirm``,
  ``reject``, ``wait_run``, ``run_events``, ``follow_run``; ``run_record`` gives a run as a
  typed ``llmos.runs.Run``), agents and tokens, tools, timers, alloc,
  memory, ``system``, ``events`` (server-sent events as dicts), ``chat`` (the
  OpenAI-compatible endpoint; ``AsyncClient.chat_stream`` streams it, optionally
  continuing a daemon-held conversation) and ``openai()`` (an official ``openai`` client bound to
  this daemon).
- Errors come back as the same ``llmos.errors`` classes as in-process (see ``errors.py``);
  a daemon that cannot be reached raises ``RemoteUnavailable``.

Example::

    from llmos.sdk import Client
    with Client("http://127.0.0.1:8420", token="llmos-...") as c:
        run = c.submit_run("count the lines in notes.txt", workdir="/tmp/work")
        print(c.wait_run(run["id"])["answer"])
"""

from __future__ import annotations

import abc
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from llmos import params
from llmos.errors import map_foreign
from llmos.runs import Run, RunStatus
from llmos.sdk.errors import from_body

__all__ = ["Client", "AsyncClient", "DEFAULT_URL", "parse_sse"]

DEFAULT_URL = f"http://{params.API_HOST}:{params.API_PORT}"
TIMEOUT_S = 30.0            # default per-request timeout (connect + read), seconds
RUN_FINAL = RunStatus.final()   # run statuses after which nothing changes (llmos.runs)


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _stops_wait(ev: dict) -> bool:
    """A run event after which ``wait_run`` returns: the end, or a step awaiting a yes/no."""
    if ev.get("type") in ("run.finished", "run.pending"):
        return True
    run = ev.get("run") if ev.get("type") == "run.snapshot" else None
    return bool(run and (run.get("status") in RUN_FINAL or run.get("pending")))


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        body = resp.json()
    except ValueError:
        body = resp.text
    raise from_body(resp.status_code, body)


def _pick(resp: httpx.Response, key: str | None) -> Any:
    _raise_for(resp)
    if resp.status_code == 204 or not resp.content:
        return None
    data = resp.json()
    return data[key] if key and isinstance(data, dict) else data


class parse_sse:  # noqa: N801 - used like a function
    """Incremental text/event-stream parser: feed lines, get event dicts."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""

    def feed(self, line: str) -> dict | None:
        line = line.rstrip("\r")
        if not line:
            if not self._data:
                return None
            raw, self._data = "\n".join(self._data), []
            try:
                ev = json.loads(raw)
            except ValueError:
                ev = {"type": self._event or "message", "data": raw}
            self._event = ""
            return ev
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None


class _Endpoints(abc.ABC):
    """The REST surface, written once. ``_call`` is sync in Client, async in AsyncClient."""

    @abc.abstractmethod
    def _call(self, method: str, path: str, *, json: Any = None, params: dict | None = None,
              key: str | None = None, timeout: float | None = None) -> Any:
        """Send one request; return the decoded JSON body or raise the mapped error."""

    # ── daemon ─────────────────────────────────────────────────────────────
    def health(self):
        return self._call("GET", "/api/v1/health")

    def whoami(self):
        """The agent this client's token acts for: ``{"agent", "admin"}``."""
        return self._call("GET", "/api/v1/whoami")

    def system(self):
        """CPU, memory, GPU, energy and engine throughput as the daemon sees them."""
        return self._call("GET", "/api/v1/system")

    def syscall(self, name: str, args: dict | None = None, *, timeout: float | None = None,
                as_agent: str | None = None):
        """Any kernel syscall by name; returns its value or raises its error. ``as_agent``
        (the admin token only): the person makes the call as that agent, with its rights."""
        return self._call("POST", "/api/v1/syscall", json=_clean({"name": name, "args": args or {},
                                                                   "agent": as_agent}),
                          key="value", timeout=timeout)

    # ── processes ──────────────────────────────────────────────────────────
    def spawn(self, kind: str, spec: dict, *, priority: int | None = None,
              parent: int | None = None, idempotency_key: str | None = None,
              confirmed: bool = False):
        """Start a process (llm | tool | run | job); returns it once journaled."""
        return self._call("POST", "/api/v1/processes", json=_clean(
            {"kind": kind, "spec": spec, "priority": priority, "parent": parent,
             "idempotency_key": idempotency_key, "confirmed": confirmed or None}))

    def ps(self, *, state: str | None = None, owner: str | None = None, limit: int | None = None):
        return self._call("GET", "/api/v1/processes", key="processes",
                          params=_clean({"state": state, "owner": owner, "limit": limit}))

    def get_process(self, pid: int):
        return self._call("GET", f"/api/v1/processes/{int(pid)}")

    def kill(self, pid: int, reason: str | None = None):
        return self._call("POST", f"/api/v1/processes/{int(pid)}/kill", json=_clean({"reason": reason}))

    def nice(self, pid: int, priority: int):
        return self._call("POST", f"/api/v1/processes/{int(pid)}/nice", json={"priority": priority})

    def wait(self, pid: int, timeout: float | None = None):
        """Block until the process finishes (or ``timeout`` seconds); returns it."""
        t = 3600.0 + TIMEOUT_S if timeout is None else timeout + TIMEOUT_S
        return self._call("POST", f"/api/v1/processes/{int(pid)}/wait",
                          json=_clean({"timeout_s": timeout}), timeout=t)

    def confirm_process(self, pid: int):
        """Approve a process waiting for the person's yes."""
        return self._call("POST", f"/api/v1/processes/{int(pid)}/confirm")

    # ── runs (plain-language requests) ─────────────────────────────────────
    def submit_run(self, request: str, *, workdir: str | None = None, yes: bool = False,
                   model: str | None = None, dry_run: bool = False, priority: int | None = None,
                   ask: bool = True, yes_all: bool = False):
        """Submit a plain-language request; returns the run (its id, status and plan so far).

        ``ask=False``: a risky step is not parked for ``confirm``/``reject``; the run stops
        before it with status ``needs_confirmation`` (what ``llmos run`` without --yes does).
        ``yes_all``: also pass the guards ``yes`` does not (changing paths the request did not
        name; commands filled in from content read during the run)."""
        return self._call("POST", "/api/v1/runs", json=_clean(
            {"request": request, "workdir": workdir, "yes": yes, "model": model,
             "dry_run": dry_run, "priority": priority, "ask": None if ask else False,
             "yes_all": yes_all or None}))

    def runs(self, limit: int = 20):
        return self._call("GET", "/api/v1/runs", params={"limit": limit}, key="runs")

    def get_run(self, run_id: str):
        return self._call("GET", f"/api/v1/runs/{run_id}")

    def plan(self, run_id: str):
        return self._call("GET", f"/api/v1/runs/{run_id}/plan")

    def confirm(self, run_id: str, step: int | None = None):
        """Approve the pending step of a run (or the named one)."""
        return self._call("POST", f"/api/v1/runs/{run_id}/confirm", json=_clean({"step": step}))

    def cancel_run(self, run_id: str):
        """Stop a run that has not finished; its process and current step are killed."""
        return self._call("POST", f"/api/v1/runs/{run_id}/cancel")

    def reject(self, run_id: str, step: int | None = None, reason: str | None = None):
        return self._call("POST", f"/api/v1/runs/{run_id}/reject",
                          json=_clean({"step": step, "reason": reason}))

    # ── agents and tokens ──────────────────────────────────────────────────
    def create_agent(self, name: str, capabilities: dict | None = None, *, token: bool = True):
        """Create an agent; with ``token=True`` the answer carries its first bearer token."""
        return self._call("POST", "/api/v1/agents", json=_clean(
            {"name": name, "capabilities": capabilities, "issue_token": token}))

    def agents(self):
        return self._call("GET", "/api/v1/agents", key="agents")

    def create_token(self, agent: str, label: str = ""):
        return self._call("POST", f"/api/v1/agents/{agent}/tokens", json={"label": label})

    def tokens(self, agent: str):
        return self._call("GET", f"/api/v1/agents/{agent}/tokens", key="tokens")

    def revoke_token(self, agent: str, token_id: str):
        return self._call("DELETE", f"/api/v1/agents/{agent}/tokens/{token_id}")

    # ── tools, timers, alloc, memory ───────────────────────────────────────
    def tools(self):
        return self._call("GET", "/api/v1/tools", key="tools")

    def timers(self):
        return self._call("GET", "/api/v1/timers", key="timers")

    def set_timer(self, message: str, *, in_s: float | None = None, at: float | None = None,
                  every_s: float | None = None):
        """A durable reminder ``in_s`` seconds from now, or at epoch time ``at``; ``every_s``
        repeats it (alone: the first one ``every_s`` from now)."""
        return self._call("POST", "/api/v1/timers",
                          json=_clean({"message": message, "in_s": in_s, "at": at, "every_s": every_s}))

    def cancel_timer(self, timer_id: int | str):
        return self._call("DELETE", f"/api/v1/timers/{timer_id}")

    def alloc(self, problem: dict):
        """Solve an allocation problem (tasks x resources) on the kernel's allocator."""
        return self._call("POST", "/api/v1/alloc", json=problem)

    def memory_put(self, key: str, value: str):
        return self._call("POST", "/api/v1/memory", json={"key": key, "value": value})

    def memory_get(self, key: str):
        return self._call("GET", f"/api/v1/memory/{key}")

    def memory_delete(self, key: str):
        return self._call("DELETE", f"/api/v1/memory/{key}")

    def memory_search(self, query: str, limit: int = 10):
        return self._call("POST", "/api/v1/memory/search", json={"query": query, "limit": limit},
                          key="results")

    # ── OpenAI-compatible ──────────────────────────────────────────────────
    def models(self):
        return self._call("GET", "/v1/models", key="data")

    def chat(self, messages: list[dict], *, model: str | None = None, priority: int | None = None,
             **kwargs: Any):
        """One non-streaming chat completion; returns the OpenAI-shaped response dict."""
        body = _clean({"model": model or "default", "messages": messages, **kwargs})
        headers = None if priority is None else {"X-LLMOS-Priority": str(priority)}
        return self._call("POST", "/v1/chat/completions", json=body, headers=headers)


class Client(_Endpoints):
    """Synchronous client. Use as a context manager, or call ``close()``."""

    def __init__(self, base_url: str = DEFAULT_URL, token: str | None = None, *,
                 timeout: float = TIMEOUT_S, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout,
                                  transport=transport)

    def _call(self, method, path, *, json=None, params=None, key=None, timeout=None, headers=None):
        kw: dict[str, Any] = {"json": json, "params": params, "headers": headers}
        if timeout is not None:
            kw["timeout"] = timeout
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise map_foreign(e, context=f"llmos daemon at {self.base_url}") from e
        return _pick(resp, key)

    def events(self, types: list[str] | tuple[str, ...] = (), *, last_id: int | None = None,
               path: str = "/api/v1/events") -> Iterator[dict]:
        """Server-sent events as dicts, until the caller stops iterating."""
        headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
        q = {"types": ",".join(types)} if types else None
        parser = parse_sse()
        try:
            with self._http.stream("GET", path, params=q, headers=headers,
                                   timeout=httpx.Timeout(TIMEOUT_S, read=None)) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    _raise_for(resp)
                for line in resp.iter_lines():
                    ev = parser.feed(line)
                    if ev is not None:
                        yield ev
        except httpx.HTTPError as e:
            raise map_foreign(e, context=f"llmos daemon at {self.base_url}") from e

    def run_events(self, run_id: str) -> Iterator[dict]:
        """Progress of one run (plan, steps, confirmations) until it ends."""
        for ev in self.events(path=f"/api/v1/runs/{run_id}/events"):
            yield ev
            if ev.get("type") == "run.finished":
                return

    def follow_run(self, request: str, **submit: Any) -> Iterator[dict]:
        """Submit a request and yield every event of its run, none missed: the event
        stream is open before the run exists. First ``run.submitted`` (``run``: the
        submitted run), then ``run.planning``, ``run.plan``, ``run.step``,
        ``run.pending`` (answer it with ``confirm``/``reject``)..., last ``run.finished``.
        ``submit``: the keyword arguments of ``submit_run``."""
        parser = parse_sse()
        try:
            with self._http.stream("GET", "/api/v1/events", params={"types": "run"},
                                   timeout=httpx.Timeout(TIMEOUT_S, read=None)) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    _raise_for(resp)
                # the daemon subscribes this stream before it answers, so nothing is lost
                run = self.submit_run(request, **submit)
                yield {"type": "run.submitted", "run_id": run["id"], "run": run}
                for line in resp.iter_lines():
                    ev = parser.feed(line)
                    if ev is None or ev.get("run_id") != run["id"]:
                        continue
                    yield ev
                    if ev.get("type") == "run.finished":
                        return
        except httpx.HTTPError as e:
            raise map_foreign(e, context=f"llmos daemon at {self.base_url}") from e

    def run_record(self, run_id: str) -> Run:
        """``get_run`` as a typed ``llmos.runs.Run`` (ordered status, ``Step`` records)."""
        return Run.from_dict(self.get_run(run_id))

    def wait_run(self, run_id: str) -> dict:
        """Block until the run ends (or stops for a confirmation); return the run."""
        for ev in self.run_events(run_id):
            if _stops_wait(ev):
                break
        return self.get_run(run_id)

    def openai(self, **kwargs: Any):
        """An official ``openai.OpenAI`` client pointed at this daemon's ``/v1``."""
        import openai

        return openai.OpenAI(base_url=self.base_url + "/v1", api_key=self.token or "none", **kwargs)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Endpoints):
    """Asynchronous client: every method of ``Client``, awaited; streams are async iterators."""

    def __init__(self, base_url: str = DEFAULT_URL, token: str | None = None, *,
                 timeout: float = TIMEOUT_S, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout,
                                       transport=transport)

    async def _call(self, method, path, *, json=None, params=None, key=None, timeout=None,
                    headers=None):
        kw: dict[str, Any] = {"json": json, "params": params, "headers": headers}
        if timeout is not None:
            kw["timeout"] = timeout
        try:
            resp = await self._http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise map_foreign(e, context=f"llmos daemon at {self.base_url}") from e
        return _pick(resp, key)

    async def events(self, types: list[str] | tuple[str, ...] = (), *, last_id: int | None = None,
                     path: str = "/api/v1/events") -> AsyncIterator[dict]:
        headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
        q = {"types": ",".join(types)} if types else None
        parser = parse_sse()
        try:
            async with self._http.stream("GET", path, params=q, headers=headers,
                                         timeout=httpx.Timeout(TIMEOUT_S, read=None)) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    _raise_for(resp)
                async for line in resp.aiter_lines():
                    ev = parser.feed(line)
                    if ev is not None:
                        yield ev
        except httpx.HTTPError as e:
            raise map_foreign(e, context=f"llmos daemon at {self.base_url}") from e

    async def run_events(self, run_id: str) -> AsyncIterator[dict]:
        async for ev in self.events(path=f"/api/v1/runs/{run_id}/events"):
            yield ev
            if ev.get("type") == "run.finished":
                return

    async def follow_run(self, request: str, **submit: Any) -> AsyncIterator[dict]:
        """``Client.follow_run``, as an async iterator."""
        parser = parse_sse()
        try:
            async with self._http.stream("GET", "/api/v1/events", params={"types": "run"},
                                         timeout=httpx.Timeout(TIMEOUT_S, read=None)) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    _raise_for(resp)
                run = await self.submit_run(request, **submit)
                yield {"type": "run.submitted", "run_id": run["id"], "run": run}
                async for line in resp.aiter_lines():
                    ev = parser.feed(line)
                    if ev is None or ev.get("run_id") != run["id"]:
                        continue
                    yield ev
                    if ev.get("type") == "run.finished":
                        return
        except httpx.HTTPError as e:
            raise map_foreign(e, context=f"llmos daemon at {self.base_url}") from e

    async def run_record(self, run_id: str) -> Run:
        """``get_run`` as a typed ``llmos.runs.Run`` (ordered status, ``Step`` records)."""
        return Run.from_dict(await self.get_run(run_id))

    async def wait_run(self, run_id: str) -> dict:
        async for ev in self.run_events(run_id):
            if _stops_wait(ev):
                break
        return await self.get_run(run_id)

    async def chat_stream(self, messages: list[dict], *, model: str | None = None,
                          priority: int | None = None, conversation: str | None = None,
                          **kwargs: Any) -> AsyncIterator[dict]:
        """A streamed chat completion: each ``chat.completion.chunk`` as a dict. With
        ``conversation`` (an id from the ``conversation.open`` syscall) the daemon keeps the
        history: send only the new user message."""
        body = _clean({"model": model or "default", "messages": messages, "stream": True, **kwargs})
        headers = {}
        if priority is not None:
            headers["X-LLMOS-Priority"] = str(priority)
        if conversation is not None:
            headers["X-LLMOS-Conversation"] = conversation
        try:
            async with self._http.stream("POST", "/v1/chat/completions", json=body, headers=headers,
                                         timeout=httpx.Timeout(TIMEOUT_S, read=None)) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    _raise_for(resp)
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    chunk = json.loads(data)
                    if isinstance(chunk, dict) and isinstance(chunk.get("error"), dict):
                        raise from_body(200, chunk)
                    yield chunk
        except httpx.HTTPError as e:
            raise map_foreign(e, context=f"llmos daemon at {self.base_url}") from e

    def openai(self, **kwargs: Any):
        """An official ``openai.AsyncOpenAI`` client pointed at this daemon's ``/v1``."""
        import openai

        return openai.AsyncOpenAI(base_url=self.base_url + "/v1", api_key=self.token or "none",
                                  **kwargs)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
