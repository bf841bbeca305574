"""Engines on many machines: one engine actor per Ray node, each generation sent to the
node the kernel's allocator chose (else the least loaded one), its tokens streamed back as
they are made, and a generation whose node is lost run again on another.

Imported only with Ray configured (it imports Ray). The kernel's engine set builds a
``RayEngine`` for a local model when ``ray`` and ``ray_engines`` are configured
(``llmos serve --ray auto --ray-engines``); a program can also give one to the kernel.

Map:
- ``EngineActor(factory)``: a Ray actor (async) that holds the engine ``factory()`` makes
  (the embedded llama.cpp engine with its model on a real node, ``FakeEngine`` in tests)
  and streams each generation: ``stream(request)`` is a Ray streaming generator whose
  items are batches of tokens ``[(text, token_id, index), ...]`` (what the engine produced
  since the last item; one token each while the caller keeps up), then the ``Completion``.
- ``node_engine(name, config)``: the factory the kernel gives: ``llm.make_engine`` on the node.
- ``RayEngine(factory, cpus=, restarts=)``: the ``Engine`` interface over those actors.
  ``start()`` places one actor on every live node that has CPUs (node affinity, hard);
  ``submit(request, node=)`` sends it to ``node``'s actor when that is live (the kernel's
  allocator chose it), else to the actor with the fewest generations in flight (ties:
  the lowest measured seconds per generated token, then the node id);
  ``nodes()``: live node -> lanes; ``at(node)``: this engine with generations sent to
  ``node`` (what the kernel's engine set hands out for ``<key>@<node>``: a resource of the
  allocator per node, ``kernel.placement``);
  ``cancel(request_id)`` cancels its Ray task; ``close()`` ends the actors;
  ``node_of(request_id)``: the node running a generation now.
  ``routes``: generations sent per node; ``restarted``: generations run again elsewhere;
  ``diverged``: reruns whose tokens differed from those delivered (see the NOTE).

NOTE (streaming, and a node lost mid-generation). Tokens reach the caller's handle one
``Chunk`` per token as the actor's batches arrive, so the kernel's token stream (quota
guard, SSE, the shell) sees them while the generation runs. An actor that dies, or whose
node leaves, makes its stream fail with Ray's actor or node errors: the actor is dropped
from the rotation and the generation is run again from its prompt on the least loaded
live actor (``restarts`` times at most). The rule for the stream: tokens are numbered;
the rerun's tokens whose index was already delivered are not delivered again, the rest
follow, so the consumer sees each position once and the stream goes on where it stopped.
The rerun reproduces the delivered tokens because every generation is deterministic: a
greedy one is, and a sampled one without a seed is given one at ``submit`` (the same
model and seed give the same tokens on every node). Should a rerun still differ (another
build of the engine on that node), the delivered tokens stand, the rest is the rerun's,
the completion's text is what was delivered, and ``diverged`` counts it. Nothing is
resumed from a snapshot: the KV of a dead node is gone with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import ray

from llmos.errors import Cancelled, EngineError, LLMOSError
from llmos.llm.base import (
    Capabilities,
    Chunk,
    Completion,
    Engine,
    EngineStats,
    GenerationHandle,
    GenerationRequest,
    Usage,
)

__all__ = ["EngineActor", "NodeEngine", "RayEngine", "RESTARTS", "node_engine"]

log = logging.getLogger(__name__)

RESTARTS = 2               # times one generation is run again after its actor or node died


def node_engine(name: str, config: Any) -> Engine:
    """On a node: the engine for model ``name`` as the one factory makes it there (the
    node resolves the model from its own installed packages and files)."""
    from llmos.llm import make_engine
    from llmos.llm.models import resolve

    return make_engine(resolve(name, config), config)


class EngineActor:
    """One node's engine. Owner: the RayEngine that placed it."""

    def __init__(self, factory: Callable[[], Engine]) -> None:
        self.engine = factory()
        self.node = ray.get_runtime_context().get_node_id()

    async def start(self) -> dict[str, Any]:
        await self.engine.start()
        return {"node": self.node, "model": self.engine.model,
                "max_active": self.engine.capabilities.max_active}

    async def stream(self, request: GenerationRequest) -> AsyncIterator[list[tuple] | Completion]:
        """Batches of ``(text, token_id, index)`` as the engine produces them, then the
        ``Completion`` (a Ray streaming generator: call with ``num_returns="streaming"``)."""
        handle = self.engine.submit(request)
        buf: list[tuple] = []                     # tokens produced and not yet yielded
        more = asyncio.Event()

        async def pump() -> None:
            try:
                async for c in handle:
                    buf.append((c.text, c.token_id, c.index))
                    more.set()
            finally:
                more.set()
        task = asyncio.ensure_future(pump())
        try:
            while True:
                await more.wait()
                more.clear()
                ended = task.done()               # before draining: then nothing follows the drain
                if buf:
                    batch = buf[:]
                    buf.clear()
                    yield batch
                if ended:
                    break
            task.result()                         # the engine's error, if it failed
            yield await handle.result()
        finally:
            if not handle.done:
                handle.cancel()
            task.cancel()

    async def close(self) -> None:
        await self.engine.close()


@dataclass
class _Replica:
    node: str
    actor: Any
    max_active: int = 1
    inflight: int = 0                     # generations sent and not yet answered
    tokens: int = 0                       # generated tokens answered (for the speed tie-break)
    seconds: float = 0.0                  # seconds those took, submit to answer
    alive: bool = True

    def s_per_token(self) -> float:
        return self.seconds / self.tokens if self.tokens else 0.0


@dataclass
class _Call:
    handle: GenerationHandle
    task: asyncio.Task | None = None
    ref: Any = None                       # the actor's stream (an ObjectRefGenerator)
    replica: _Replica | None = field(default=None, repr=False)
    node: str | None = None               # the node asked for (the allocator's choice), if any
    texts: dict[int, str] = field(default_factory=dict)   # token index -> text, for each delivered
    last: int = -1                        # highest token index delivered (engines skip empty pieces)
    first_at: float | None = None         # monotonic s when the first token was delivered
    diverged: bool = False                # a rerun's tokens differed from those delivered


def _died_errors() -> tuple[type[BaseException], ...]:
    names = ("ActorDiedError", "ActorUnavailableError", "NodeDiedError", "WorkerCrashedError",
             "LocalRayletDiedError", "OwnerDiedError")
    return tuple(t for n in names if isinstance(t := getattr(ray.exceptions, n, None), type))


class RayEngine(Engine):
    name = "ray"

    def __init__(self, factory: Callable[[], Engine], *, model: str = "", cpus: float = 0.0,
                 restarts: int = RESTARTS) -> None:
        self.factory = factory                  # picklable: it is called on every node
        self.model = model
        self.cpus = cpus                        # CPUs each actor asks Ray for
        self.restarts = restarts
        self.replicas: list[_Replica] = []      # owner: this engine (start, _lost)
        self.routes: Counter[str] = Counter()   # node -> generations sent there
        self.restarted = 0
        self.diverged = 0                       # reruns whose delivered tokens came out different
        self._calls: dict[str, _Call] = {}
        self._died = _died_errors()
        self._at: dict[str, NodeEngine] = {}    # node -> this engine bound to it

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(batching=True, max_active=max(1, sum(r.max_active for r in self.replicas if r.alive)))

    async def start(self) -> None:
        if self.replicas:
            return
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        cls = ray.remote(EngineActor)
        nodes = [n for n in ray.nodes() if n.get("Alive") and (n.get("Resources") or {}).get("CPU", 0) > 0]
        if not nodes:
            raise EngineError("ray: no live node with CPUs to run an engine on")
        actors = [cls.options(num_cpus=self.cpus, max_restarts=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
            n["NodeID"], soft=False)).remote(self.factory) for n in nodes]
        infos = await asyncio.gather(*(a.start.remote() for a in actors), return_exceptions=True)
        for a, info in zip(actors, infos, strict=True):
            if isinstance(info, BaseException):
                log.warning("ray: an engine actor did not start: %s", info)
                with contextlib.suppress(Exception):
                    ray.kill(a)
                continue
            self.replicas.append(_Replica(info["node"], a, int(info["max_active"] or 1)))
            self.model = self.model or info["model"]
        if not self.replicas:
            raise EngineError(f"ray: no engine actor started on {len(nodes)} nodes",
                              hint="see the nodes' logs (does each have the model?)")

    async def close(self) -> None:
        for c in list(self._calls.values()):
            if c.task is not None:
                c.task.cancel()
        for r in self.replicas:
            with contextlib.suppress(Exception):
                ray.kill(r.actor)
        self.replicas = []

    def stats(self) -> EngineStats:
        return EngineStats(active=sum(r.inflight for r in self.replicas if r.alive))

    def loads(self) -> dict[str, int]:
        """Generations in flight per live node."""
        return {r.node: r.inflight for r in self.replicas if r.alive}

    def nodes(self) -> dict[str, int]:
        """Live node -> its actor's lanes (generations it runs at once)."""
        return {r.node: r.max_active for r in self.replicas if r.alive}

    def at(self, node: str) -> NodeEngine:
        """This engine, its generations sent to ``node`` while that node is live."""
        if node not in self._at:
            self._at[node] = NodeEngine(self, node)
        return self._at[node]

    def node_of(self, request_id: str) -> str | None:
        """The node running generation ``request_id`` now (None: not running here)."""
        call = self._calls.get(request_id)
        return call.replica.node if call is not None and call.replica is not None else None

    # ── generations ────────────────────────────────────────────────────────
    def submit(self, request: GenerationRequest, *, node: str | None = None) -> GenerationHandle:
        request.validate()
        p = request.params
        if p.temperature > 0 and p.seed is None:           # a rerun must reproduce what was delivered
            request = dataclasses.replace(request, params=dataclasses.replace(p, seed=secrets.randbits(31)))
        handle = GenerationHandle(request, self)
        call = _Call(handle, node=node)
        self._calls[request.request_id] = call
        call.task = asyncio.ensure_future(self._run(request, call))
        return handle

    def cancel(self, request_id: str) -> bool:
        call = self._calls.get(request_id)
        if call is None or call.handle.done:
            return False
        if call.ref is not None:
            with contextlib.suppress(Exception):
                ray.cancel(call.ref)
        if call.task is not None:
            call.task.cancel()
        call.handle.finish(Completion(request_id, "", "cancelled", Usage(), self.model))
        return True

    def _pick(self, node: str | None = None) -> _Replica | None:
        live = [r for r in self.replicas if r.alive]
        asked = next((r for r in live if r.node == node), None)
        if asked is not None:
            return asked
        return min(live, key=lambda r: (r.inflight / r.max_active, r.s_per_token(), r.node)) if live else None

    async def _run(self, request: GenerationRequest, call: _Call) -> None:
        rid = request.request_id
        tries = 0
        try:
            while True:
                r = self._pick(call.node)
                if r is None:
                    raise EngineError(f"ray: no live engine actor for request {rid}",
                                      hint="every node that had the model has left")
                r.inflight += 1
                self.routes[r.node] += 1
                call.replica = r
                t0 = time.monotonic()
                try:
                    out = await self._stream(r, request, call)
                except self._died as e:
                    self._lost(r, e)
                    tries += 1
                    if tries > self.restarts:
                        raise EngineError(f"ray: request {rid} lost its engine {tries} times "
                                          f"({type(e).__name__})", hint="nodes are leaving the cluster") from None
                    self.restarted += 1
                    log.warning("ray: the engine on node %s died mid-generation (%s); request %s runs "
                                "again elsewhere after %d delivered tokens (%d/%d)", r.node[:12],
                                type(e).__name__, rid, len(call.texts), tries, self.restarts)
                    continue
                except ray.exceptions.RayTaskError as e:        # the engine's own error
                    cause = getattr(e, "cause", None)
                    raise (cause if isinstance(cause, LLMOSError) else
                           EngineError(f"ray: the engine on node {r.node[:12]} failed: "
                                       f"{(str(e).strip().splitlines() or [type(e).__name__])[-1][:200]}")) from None
                finally:
                    r.inflight -= 1
                r.tokens += out.usage.completion_tokens
                r.seconds += time.monotonic() - t0
                call.handle.finish(self._final(out, call))
                return
        except asyncio.CancelledError:
            call.handle.fail(Cancelled(f"request {rid} was cancelled"))
            raise
        except BaseException as e:
            call.handle.fail(e)
        finally:
            self._calls.pop(rid, None)

    async def _stream(self, r: _Replica, request: GenerationRequest, call: _Call) -> Completion:
        """One run of ``request`` on ``r``'s actor: deliver the tokens past those already
        delivered (see the NOTE), return its completion."""
        gen = call.ref = r.actor.stream.options(num_returns="streaming").remote(request)
        texts = call.texts
        async for ref in gen:
            item = await ref
            if isinstance(item, Completion):
                return item
            for text, token_id, index in item:
                if index <= call.last:                    # delivered before the rerun
                    if text != texts.get(index, text) and not call.diverged:
                        call.diverged = True
                        self.diverged += 1
                        log.warning("ray: request %s's rerun differs at token %d; the delivered "
                                    "tokens stand", request.request_id, index)
                    continue
                if call.first_at is None:
                    call.first_at = time.monotonic()
                texts[index] = text
                call.last = index
                call.handle.push(Chunk(text, token_id, index))
        raise EngineError(f"ray: the engine's stream for request {request.request_id} ended "
                          "without a completion")

    def _final(self, out: Completion, call: _Call) -> Completion:
        """The run's completion as the caller saw it: its text is the delivered text when a
        rerun differed, and the times are the caller's (submit to first token, to the end)."""
        now = time.monotonic()
        usage = dataclasses.replace(out.usage, total_s=now - call.handle.submitted_at)
        if call.first_at is not None:
            usage.ttft_s = call.first_at - call.handle.submitted_at
            usage.decode_s = now - call.first_at
        text = "".join(call.texts.values()) if call.diverged else out.text
        return dataclasses.replace(out, text=text, usage=usage)

    def _lost(self, r: _Replica, e: BaseException) -> None:
        if r.alive:
            r.alive = False
            log.warning("ray: engine actor on node %s is gone (%s)", r.node[:12], type(e).__name__)
            with contextlib.suppress(Exception):
                ray.kill(r.actor)



class NodeEngine(Engine):
    """``RayEngine.at(node)``: the same engine, each generation sent to ``node`` while it
    is live (else where the engine's own rule sends it). Starting and closing are the
    RayEngine's (its owner's), not this view's."""

    def __init__(self, engine: RayEngine, node: str) -> None:
        self.engine = engine
        self.node = node
        self.name = engine.name
        self.model = engine.model

    @property
    def capabilities(self) -> Capabilities:
        return self.engine.capabilities

    def submit(self, request: GenerationRequest) -> GenerationHandle:
        return self.engine.submit(request, node=self.node)

    def cancel(self, request_id: str) -> bool:
        return self.engine.cancel(request_id)

    def stats(self) -> EngineStats:
        return self.engine.stats()

    def count_tokens(self, text: str) -> int:
        return self.engine.count_tokens(text)
