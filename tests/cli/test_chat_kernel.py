"""``llmos chat`` runs through the kernel: the daemon's when one serves the state
directory, else one booted in-process (``mode``, from conftest). Each reply is an ``llm``
process of the person's agent, recorded in the process table and the audit log."""

from __future__ import annotations

import re

import pytest

from llmos.cli import main
from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel
from llmos.llm.fake import FakeEngine
from llmos.sdk.discover import discover

REPLY = "hello from the kernel"


@pytest.fixture
def script() -> dict[str, str]:
    return {"plan": REPLY}


def _conv_id(stderr: str) -> str:
    m = re.search(r"conversation (conv-[0-9a-f]+)", stderr)
    assert m, stderr
    return m.group(1)


def _records(mode: str, config, conv: str) -> tuple[list[tuple[str, str, int]], list[str], dict]:
    """(llm processes as (kind, owner, priority), audited syscall names, the history)."""
    import asyncio

    if mode == "daemon":
        c = discover(config)
        assert c is not None
        with c:
            procs = [(p["kind"], p["owner"], p["priority"]) for p in c.ps()]
            hist = c.syscall("conversation.history", {"id": conv})
        return procs, _audit_calls(config), hist

    async def look():
        k = await Kernel.boot(config, engines={"fake": FakeEngine(REPLY)}, hal=FakeHAL())
        try:
            procs = [(p.kind, p.owner, p.priority) for p in k.procs]
            res = await k.syscall("root", "conversation.history", {"id": conv})
            assert res.ok, res.error
            return procs, res.value
        finally:
            await k.shutdown(grace_s=0.5)
    procs, hist = asyncio.run(look())
    return procs, _audit_calls(config), hist


def _audit_calls(config) -> list[str]:
    """The person's audited calls, read from the journal (a daemon commits its audit rows
    in groups, so this waits up to 5 s for both replies to be there)."""
    import sqlite3
    import time

    deadline = time.monotonic() + 5.0
    while True:
        db = sqlite3.connect(str(config.db_path))
        try:
            calls = [r[0] for r in db.execute("SELECT call FROM audit WHERE agent = 'root' ORDER BY id")]
        finally:
            db.close()
        if calls.count("conversation.say") >= 2 or time.monotonic() > deadline:
            return calls
        time.sleep(0.05)


def test_chat_goes_through_the_kernel(mode, config, capsys):
    assert main(["chat", "hi there"]) == 0
    out, errs = capsys.readouterr()
    assert out.strip() == REPLY
    where = "daemon" if mode == "daemon" else "in-process kernel"
    assert where in errs
    conv = _conv_id(errs)
    assert main(["chat", "--conversation", conv, "and again"]) == 0
    out, _ = capsys.readouterr()
    assert out.strip() == REPLY
    procs, calls, hist = _records(mode, config, conv)
    assert procs.count(("llm", "root", 0)) >= 2                    # one scheduled llm process per reply
    assert calls.count("conversation.say") >= 2
    assert [t["content"] for t in hist["turns"]] == ["hi there", REPLY, "and again", REPLY]


def test_chat_bad_input_is_one_clear_line(mode, capsys):
    assert main(["chat", "   "]) == 1
    err = capsys.readouterr().err
    assert "error: message: expected some text" in err and "Traceback" not in err
    assert main(["chat", "--conversation", "conv-0000", "hello"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2].startswith("error: no conversation 'conv-0000'")
    assert err[-1].startswith("hint: omit --conversation")
    assert "Traceback" not in "\n".join(err)


def test_openai_endpoint_continues_a_conversation(config, daemon_starter):
    import asyncio

    from llmos.errors import InvalidArgument, NotFound
    from llmos.sdk.discover import async_discover

    srv = daemon_starter(config)

    async def go():
        c = await async_discover(config)
        async with c:
            conv = (await c.syscall("conversation.open", {}))["id"]
            chunks = [ch async for ch in c.chat_stream([{"role": "user", "content": "one"}], conversation=conv)]
            text = "".join((ch["choices"][0]["delta"].get("content") or "") for ch in chunks if ch["choices"])
            assert text == REPLY
            hist = await c.syscall("conversation.history", {"id": conv})
            assert [t["content"] for t in hist["turns"]] == ["one", REPLY]
            with pytest.raises(NotFound, match="no conversation 'conv-nope'"):
                async for _ in c.chat_stream([{"role": "user", "content": "x"}], conversation="conv-nope"):
                    pass
            with pytest.raises(InvalidArgument, match="last message must be the user's"):
                async for _ in c.chat_stream([{"role": "assistant", "content": "x"}], conversation=conv):
                    pass
    try:
        asyncio.run(go())
    finally:
        srv.stop()
