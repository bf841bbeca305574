"""What HTTP adds to a syscall: round trip through the daemon vs the same call in-process.

One daemon (``ServerThread``: uvicorn + the app + a kernel on a FakeEngine) runs in
this process. Measured, interleaved in rounds so machine noise hits both alike:
- ``in-process`` (baseline): ``await kernel.syscall("root", "proc.get", {"pid": 1})``
  timed on the daemon's own event loop, call by call;
- ``http``: the same syscall as ``POST /api/v1/syscall`` from a separate client
  process (stdlib ``http.client``, one keep-alive connection, sequential calls),
  timed per request by the client: admin-token auth, body limit, JSON decode,
  dispatch, JSON encode, the socket both ways.

Reported: p50 and p99 of each, and ``added = p50(http) − p50(in-process)``.
Target: added p50 ≤ 1 ms. Last stdout line: one JSON object (see ../shared/BENCH.md).

    python bench/http_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

CLIENT = r"""
import http.client, json, sys, time
host, port, token, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
body = json.dumps({"name": "proc.get", "args": {"pid": 1}}).encode()
hdr = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
conn = http.client.HTTPConnection(host, port)
out = []
for i in range(n + 20):
    t = time.perf_counter()
    conn.request("POST", "/api/v1/syscall", body, hdr)
    r = conn.getresponse()
    data = r.read()
    dt = time.perf_counter() - t
    if r.status != 200:
        print(json.dumps({"error": r.status, "body": data.decode()[:200]})); sys.exit(1)
    if i >= 20:                       # warm-up excluded
        out.append(dt)
print(json.dumps(out))
"""


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def inprocess(srv, n: int) -> list[float]:
    """Time ``n`` syscalls on the daemon's own loop (the kernel lives there)."""
    svc = srv.app_services()

    async def go() -> list[float]:
        out = []
        for _ in range(n + 20):
            t = time.perf_counter()
            res = await svc.kernel.syscall("root", "proc.get", {"pid": 1})
            out.append(time.perf_counter() - t)
            assert res.ok, res.error
        return out[20:]

    return asyncio.run_coroutine_threadsafe(go(), srv.loop).result(600)


def over_http(srv, n: int) -> list[float]:
    host, port = srv.url.split("//", 1)[1].rsplit(":", 1)
    r = subprocess.run([sys.executable, "-c", CLIENT, host, port, srv.token, str(n)],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise SystemExit(f"client failed: {r.stdout} {r.stderr}")
    return json.loads(r.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    rounds, n = (3, 300) if a.quick else (6, 1000)

    from llmos.api.server import ServerThread
    from llmos.config import load_config
    from llmos.hal.fake import FakeHAL
    from llmos.llm.fake import FakeEngine

    home = tempfile.mkdtemp(prefix="llmos-bench-")
    cfg = load_config(env={"LLMOS_HOME": home})
    with ServerThread(cfg, engines={"fake": FakeEngine("ok")}, hal=FakeHAL(), preload_models=False) as srv:
        asyncio.run_coroutine_threadsafe(                 # pid 1 must exist: make it
            srv.app_services().kernel.syscall("root", "llm.generate", {"prompt": "x"}), srv.loop).result(60)
        base: list[float] = []
        http: list[float] = []
        for i in range(rounds):
            base += inprocess(srv, n)
            http += over_http(srv, n)
            print(f"round {i + 1}/{rounds}: in-process p50 {pct(base, .5) * 1e3:.3f} ms, "
                  f"http p50 {pct(http, .5) * 1e3:.3f} ms", file=sys.stderr)
    b50, h50 = pct(base, 0.5) * 1e3, pct(http, 0.5) * 1e3
    added = h50 - b50
    table = {"in_process_p50_ms": round(b50, 4), "in_process_p99_ms": round(pct(base, 0.99) * 1e3, 4),
             "http_p50_ms": round(h50, 4), "http_p99_ms": round(pct(http, 0.99) * 1e3, 4),
             "http_mean_ms": round(statistics.mean(http) * 1e3, 4), "calls_each": len(http)}
    for k, v in table.items():
        print(f"{k:>20}: {v}")
    target = 1.0
    print(json.dumps({"bench": "http_overhead", "metric": "p50_added_ms", "value": round(added, 4),
                      "baseline": round(b50, 4), "ratio": round(h50 / b50, 2) if b50 else None,
                      "unit": "ms", "target": f"value <= {target}", "ok": added <= target,
                      "quick": a.quick, **table, "cpus": os.cpu_count(), "machine": platform.processor()
                      or platform.machine(), "load_avg": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
