"""A kernel process for tests/kernel/test_crash.py (not a test module).

Reads JSON lines on stdin: {"op": "submit", "key": K} spawns a non-idempotent
append-a-line tool process with idempotency key K and prints "ACK K PID" once the
kernel acknowledged it; {"op": "drain"} runs until idle, settles every process
marked needs_confirmation the way a careful person would (the line is already in
the file: kill; it is not: confirm), runs until idle again and prints
"STATES <json>". SIGTERM shuts the kernel down gracefully and prints "BYE".
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import make_registry  # noqa: E402
from llmos.config import load_config  # noqa: E402
from llmos.kernel import Kernel, ProcState  # noqa: E402


async def submit(k: Kernel, key: str, target: str) -> None:
    res = await k.syscall("root", "proc.spawn", {
        "kind": "tool", "idempotency_key": key,
        "spec": {"tool": "test.append", "workdir": os.path.dirname(target),
                 "args": {"path": os.path.basename(target), "line": key}}})
    if res.ok:
        print(f"ACK {key} {res.value['pid']}", flush=True)
    else:
        print(f"ERR {key} {res.error.code} {res.error.message}", flush=True)


async def drain(k: Kernel, target: str) -> None:
    await k.run_until_idle(60)
    lines = set(Path(target).read_text().split()) if os.path.exists(target) else set()
    for p in list(k.procs):
        if k.view(p)["needs_confirmation"]:
            op = "proc.kill" if p.idem_key in lines else "proc.confirm"
            (await k.syscall("root", op, {"pid": p.pid})).unwrap()
    await k.run_until_idle(60)
    states = {p.idem_key: [p.pid, p.state.name.lower(), p.attempts] for p in k.procs}
    print("STATES " + json.dumps(states), flush=True)


async def main(home: str, target: str) -> None:
    k = await Kernel.boot(load_config(env={"LLMOS_HOME": home}), tools=make_registry())
    k.install_signal_handlers()
    print("READY " + json.dumps(k.recovery.to_dict()), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    closed = asyncio.ensure_future(k.wait_closed())
    pending: set[asyncio.Task] = set()
    while True:
        line = asyncio.ensure_future(reader.readline())
        await asyncio.wait({line, closed}, return_when=asyncio.FIRST_COMPLETED)
        if closed.done():
            line.cancel()
            live = sum(1 for p in k.procs if not p.state.finished and p.state != ProcState.WAITING)
            print(f"BYE {live}", flush=True)
            return
        raw = line.result()
        if not raw:
            await k.shutdown()
            return
        msg = json.loads(raw)
        if msg["op"] == "submit":
            t = asyncio.ensure_future(submit(k, msg["key"], target))
            pending.add(t)
            t.add_done_callback(pending.discard)
        elif msg["op"] == "drain":
            await drain(k, target)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
