"""200 concurrent clients against the daemon (FakeEngine): errors, latency, memory.

The daemon runs in a child process (``--serve`` mode of this script: the real app,
kernel and journal on a FakeEngine, uvicorn on a free loopback port) so its memory
is measured alone. The clients run here, on one asyncio loop with one httpx
connection each:
- ``baseline``: one client alone, the same request mix, sequential (unloaded latency);
- ``load``: N clients (default 200) for a fixed time, each looping over the mix
  (60 % chat completions, 20 % process lists, 10 % syscalls, 10 % process gets), plus
  10 server-sent-event watchers counting what reaches them.

A request is an error if it fails to connect, times out (30 s), or answers anything
but 2xx. Reported: errors, p50/p99 latency under load, requests/s, the daemon's RSS
before, at peak and after (psutil), and events delivered. Target: zero errors.

    python bench/load.py [--quick] [--clients N] [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time

WATCHERS = 10          # SSE clients, in addition to the request clients
TIMEOUT_S = 30.0


def serve(home: str) -> None:
    """Child process: the daemon on a FakeEngine; prints its URL and token, then runs."""
    from llmos.api.server import ServerThread
    from llmos.config import load_config
    from llmos.hal.fake import FakeHAL
    from llmos.llm.fake import FakeEngine

    cfg = load_config(env={"LLMOS_HOME": home})
    engine = FakeEngine("This is a short answer from the fake engine.", max_active=16)
    with ServerThread(cfg, engines={"fake": engine}, hal=FakeHAL(), preload_models=False) as srv:
        print(json.dumps({"url": srv.url, "token": srv.token}), flush=True)
        sys.stdin.read()                 # until the parent closes our stdin


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def one_request(http, rng: random.Random) -> None:
    x = rng.random()
    if x < 0.6:
        r = await http.post("/v1/chat/completions", json={
            "model": "fake", "max_tokens": 16,
            "messages": [{"role": "user", "content": f"question {rng.randrange(1000)}"}]})
    elif x < 0.8:
        r = await http.get("/api/v1/processes", params={"limit": 20})
    elif x < 0.9:
        r = await http.post("/api/v1/syscall", json={"name": "proc.list", "args": {"limit": 5}})
    else:
        r = await http.get("/api/v1/processes/1")
    if r.status_code >= 300:
        raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")


def make_client(url: str, token: str, ssl_ctx, **kw):
    """One client = one connection. The SSL context is shared: building one per client
    costs ~50 ms of CPU each and would swamp the measurement."""
    import httpx

    kw.setdefault("timeout", TIMEOUT_S)
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, verify=ssl_ctx,
                             limits=httpx.Limits(max_connections=1), **kw)


async def client(http, until: float, seed: int, lat: list[float], errs: list[str]) -> None:
    rng = random.Random(seed)
    async with http:
        loop = asyncio.get_running_loop()
        while loop.time() < until:
            t = time.perf_counter()
            try:
                await one_request(http, rng)
                lat.append(time.perf_counter() - t)
            except Exception as e:  # noqa: BLE001 - every failure is counted, by kind
                errs.append(f"{type(e).__name__}: {str(e)[:120]}")


async def watcher(http, until: float, seen: list[int]) -> None:
    async with http:
        try:
            async with http.stream("GET", "/api/v1/events", params={"types": "proc"}) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data:"):
                        seen[0] += 1
                    if asyncio.get_running_loop().time() >= until:
                        return
        except Exception:  # noqa: BLE001 - a watcher's failure shows as fewer events
            return


async def drive(url: str, token: str, n: int, seconds: float, watchers: int = 0) -> dict:
    import ssl

    import httpx

    ctx = ssl.create_default_context()
    clients = [make_client(url, token, ctx) for _ in range(n)]
    watching = [make_client(url, token, ctx, timeout=httpx.Timeout(TIMEOUT_S, read=None))
                for _ in range(watchers)]
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    lat: list[float] = []
    errs: list[str] = []
    seen = [0]
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(client(c, until, i, lat, errs)) for i, c in enumerate(clients)]
    tasks += [asyncio.create_task(watcher(w, until + 1, seen)) for w in watching]
    await asyncio.gather(*tasks[:n])
    wall = time.perf_counter() - t0
    if tasks[n:]:
        await asyncio.wait(tasks[n:], timeout=5)
    for t in tasks[n:]:
        t.cancel()
    return {"requests": len(lat), "errors": len(errs), "error_kinds": sorted(set(errs))[:5],
            "p50_ms": pct(lat, 0.5) * 1e3, "p99_ms": pct(lat, 0.99) * 1e3, "rps": len(lat) / wall,
            "events_seen": seen[0]}


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--serve", metavar="HOME", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        serve(a.serve)
        return
    seconds = a.seconds or (8.0 if a.quick else 30.0)
    home = tempfile.mkdtemp(prefix="llmos-load-")
    child = subprocess.Popen([sys.executable, __file__, "--serve", home], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(child.stdout.readline())
        url, token = info["url"], info["token"]
        rss0 = rss_mb(child.pid)
        base = asyncio.run(drive(url, token, 1, min(3.0, seconds / 4)))
        print(f"baseline (1 client): p50 {base['p50_ms']:.2f} ms, p99 {base['p99_ms']:.2f} ms, "
              f"{base['rps']:.0f} req/s, errors {base['errors']}", file=sys.stderr)
        peak = [rss0]

        async def with_rss() -> dict:
            async def sample() -> None:
                while True:
                    peak[0] = max(peak[0], rss_mb(child.pid))
                    await asyncio.sleep(0.5)

            s = asyncio.create_task(sample())
            try:
                return await drive(url, token, a.clients, seconds, WATCHERS)
            finally:
                s.cancel()

        load = asyncio.run(with_rss())
        rss1 = rss_mb(child.pid)
    finally:
        child.stdin.close()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
    print(f"load ({a.clients} clients, {seconds:g} s): {load['requests']} requests, "
          f"{load['rps']:.0f} req/s, p50 {load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms, "
          f"errors {load['errors']} {load['error_kinds']}, events seen {load['events_seen']}", file=sys.stderr)
    print(f"daemon RSS: {rss0:.0f} MiB at start, {peak[0]:.0f} MiB peak, {rss1:.0f} MiB after", file=sys.stderr)
    errors = load["errors"] + base["errors"]
    print(json.dumps({
        "bench": "load", "metric": f"p99_latency_ms_c{a.clients}", "value": round(load["p99_ms"], 2),
        "baseline": round(base["p50_ms"], 3), "ratio": round(load["p99_ms"] / base["p50_ms"], 1),
        "unit": "ms", "target": "errors == 0", "ok": errors == 0, "quick": a.quick,
        "errors": errors, "requests": load["requests"], "rps": round(load["rps"], 1),
        "p50_ms": round(load["p50_ms"], 2), "baseline_p99_ms": round(base["p99_ms"], 3),
        "rss_mb_start": round(rss0, 1), "rss_mb_peak": round(peak[0], 1), "rss_mb_after": round(rss1, 1),
        "events_seen": load["events_seen"], "clients": a.clients, "seconds": seconds,
        "cpus": os.cpu_count(), "machine": platform.machine(), "load_avg": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
