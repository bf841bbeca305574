"""``/metrics`` for Prometheus: one registry per app, filled from a system snapshot.

Map:
- ``Metrics``: owns a ``CollectorRegistry`` (never the global one, so several apps can
  live in one process). Direct instruments: HTTP requests and their latency, and the
  time-to-first-token histogram (observed by the OpenAI routes and by finished LLM
  processes). Everything else is read at scrape time from ``update(snapshot)``:
  queue depth, processes by state, engine throughput, per-agent tokens / CPU seconds
  / joules, energy counters.
- ``render()``: the text exposition format (bytes) and its content type.

Snapshot shape (built by ``observe.snapshot``): ``{"processes": [Process.to_dict()...],
"engines": [{"name", "tokens_per_s", "tokens_generated", "active", "waiting",
"kv_used_tokens", "kv_total_tokens"}], "energy": [{"domain", "device", "joules",
"method", "label"}], "queue_depth": int}``.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

__all__ = ["Metrics", "CONTENT_TYPE_LATEST"]

PROC_STATES = ("new", "queued", "running", "waiting", "preempted", "succeeded", "failed", "killed")
TTFT_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0)


class _SnapshotCollector(Collector):
    """Yields gauges and counters computed from the last snapshot, at scrape time."""

    def __init__(self) -> None:
        self.snapshot: dict[str, Any] = {}     # last update(); replaced whole, never mutated

    def collect(self) -> Iterable[Any]:
        snap = self.snapshot
        procs: list[dict] = snap.get("processes") or []

        depth = GaugeMetricFamily("llmos_queue_depth", "Processes admitted and waiting to run")
        depth.add_metric([], float(snap.get("queue_depth", 0)))
        yield depth

        by_state = collections.Counter(str(p.get("state", "")) for p in procs)
        states = GaugeMetricFamily("llmos_processes", "Processes by state", labels=["state"])
        for s in PROC_STATES:
            states.add_metric([s], float(by_state.get(s, 0)))
        yield states

        by_kind = collections.Counter((str(p.get("kind", "")), str(p.get("state", ""))) for p in procs
                                      if p.get("state") in ("queued", "running", "waiting", "preempted"))
        live = GaugeMetricFamily("llmos_live_processes", "Unfinished processes by kind and state",
                                 labels=["kind", "state"])
        for (kind, state), n in sorted(by_kind.items()):
            live.add_metric([kind, state], float(n))
        yield live

        tok = CounterMetricFamily("llmos_agent_tokens", "Tokens per agent (prompt=in, generated=out)",
                                  labels=["agent", "direction"])
        cpu = CounterMetricFamily("llmos_agent_cpu_seconds", "CPU seconds spent by an agent's tools",
                                  labels=["agent"])
        joules = CounterMetricFamily("llmos_agent_energy_joules",
                                     "Energy attributed to an agent's processes (where known)",
                                     labels=["agent"])
        per: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
        known_j: set[str] = set()
        for p in procs:
            row = per[str(p.get("owner", "?"))]
            row[0] += float(p.get("tokens_in") or 0)
            row[1] += float(p.get("tokens_out") or 0)
            row[2] += float(p.get("cpu_s") or 0)
            if p.get("joules") is not None:
                row[3] += float(p["joules"])
                known_j.add(str(p.get("owner", "?")))
        for agent, (t_in, t_out, c, j) in sorted(per.items()):
            tok.add_metric([agent, "in"], t_in)
            tok.add_metric([agent, "out"], t_out)
            cpu.add_metric([agent], c)
            if agent in known_j:
                joules.add_metric([agent], j)
        yield tok
        yield cpu
        yield joules

        engines: list[dict] = snap.get("engines") or []
        tps = GaugeMetricFamily("llmos_engine_tokens_per_second", "Recent decode throughput",
                                labels=["engine"])
        gen = CounterMetricFamily("llmos_engine_tokens_generated", "Tokens generated since start",
                                  labels=["engine"])
        active = GaugeMetricFamily("llmos_engine_active_sequences", "Sequences advanced in the last step",
                                   labels=["engine"])
        waiting = GaugeMetricFamily("llmos_engine_waiting_sequences", "Live sequences not advanced",
                                    labels=["engine"])
        kv = GaugeMetricFamily("llmos_engine_kv_used_tokens", "KV cache cells in use", labels=["engine"])
        for e in engines:
            name = str(e.get("name", "engine"))
            tps.add_metric([name], float(e.get("tokens_per_s") or 0))
            gen.add_metric([name], float(e.get("tokens_generated") or 0))
            active.add_metric([name], float(e.get("active") or 0))
            waiting.add_metric([name], float(e.get("waiting") or 0))
            kv.add_metric([name], float(e.get("kv_used_tokens") or 0))
        yield from (tps, gen, active, waiting, kv)

        energy = CounterMetricFamily("llmos_energy_joules",
                                     "Cumulative energy per domain; label says measured or modelled",
                                     labels=["domain", "device", "label"])
        for r in snap.get("energy") or []:
            energy.add_metric([str(r.get("domain")), str(r.get("device")), str(r.get("label"))],
                              float(r.get("joules") or 0))
        yield energy


class Metrics:
    """Prometheus instruments of one app. Owner: the app; updated on its event loop."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._snap = _SnapshotCollector()
        self.registry.register(self._snap)
        self.http_requests = Counter("llmos_http_requests", "HTTP requests answered",
                                     ["method", "route", "status"], registry=self.registry)
        self.http_seconds = Histogram("llmos_http_request_seconds", "HTTP request latency (to headers)",
                                      ["route"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.ttft = Histogram("llmos_time_to_first_token_seconds",
                              "Submit to first generated token", buckets=TTFT_BUCKETS_S,
                              registry=self.registry)
        self.sse_clients = 0       # open event streams; set by the events route

    def update(self, snapshot: dict[str, Any]) -> None:
        self._snap.snapshot = snapshot

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_seconds.labels(route).observe(seconds)

    def observe_ttft(self, seconds: float | None) -> None:
        if seconds is not None and seconds >= 0:
            self.ttft.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
