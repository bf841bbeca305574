"""Versions are per agent (issue 13, item 5): agent B cannot list, restore or undo agent
A's versions by any argument: A's run id, A's version ids, wildcard or SQL-looking run
ids, a forged run id on B's own calls, paths into A's workspace or out of B's roots. A
restore never writes through a link swapped in after the run, nor outside the agent's
roots. Every refusal reads the same as "nothing of yours", so B learns nothing."""

from __future__ import annotations

import os

import pytest

from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import default_registry

RUN_A = "raaaa0001"


@pytest.fixture
async def k(config, clock, tmp_path):
    kernel = await Kernel.boot(config, engines={"fake": FakeEngine("x")}, tools=default_registry(),
                               clock=clock, hal=FakeHAL(clock))
    shared = tmp_path / "shared"
    for name in ("alice", "bob"):
        (tmp_path / name).mkdir()
    shared.mkdir()
    for name in ("alice", "bob"):
        res = await kernel.syscall("root", "agent.create", {"name": name, "capabilities": {
            "syscalls": ["tool.*", "storage.*", "may.risky"],
            "write_roots": [str(tmp_path / name), str(shared)]}})
        assert res.ok, res.error
    res = await kernel.syscall("root", "agent.create", {"name": "nostore", "capabilities": {
        "syscalls": ["tool.*"], "write_roots": [str(shared)]}})
    assert res.ok, res.error
    kernel.tmp = tmp_path
    yield kernel
    await kernel.shutdown(grace_s=0.5)


async def call(k, agent: str, tool: str, args: dict, wd, key: str) -> dict:
    res = await k.syscall(agent, "tool.call", {"tool": tool, "args": args, "workdir": str(wd),
                                               "confirmed": True, "idempotency_key": key})
    assert res.ok, res.error
    return res.value


async def alice_run(k) -> list[int]:
    a = k.tmp / "alice"
    (a / "secret.txt").write_text("alice's secret v1")
    await call(k, "alice", "files.write", {"path": "secret.txt", "content": "alice's secret v2"}, a, f"{RUN_A}:1:x")
    await call(k, "alice", "files.delete", {"path": "secret.txt"}, a, f"{RUN_A}:2:x")
    hist = (await k.syscall("alice", "storage.history", {"path": str(a / "secret.txt")})).unwrap()
    return [v["version"] for v in hist["versions"]]


async def test_bob_cannot_undo_or_restore_alices_run_or_versions(k):
    ids = await alice_run(k)
    assert len(ids) == 2
    for args in ({"run": RUN_A}, {"run": RUN_A, "force": True}, *({"version": v} for v in ids),
                 {"run": "%"}, {"run": "r%"}, {"run": "' OR 1=1 --"}, {"run": "raaaa000"}, {"run": "*"},
                 {"version": ids[0] + 1000}):
        res = await k.syscall("bob", "storage.restore", args)
        assert not res.ok and res.error.code == "not_found", (args, res)
        assert "alice" not in res.error.message and "secret" not in res.error.message
    assert not (k.tmp / "alice" / "secret.txt").exists()     # nothing was put back
    # the owner can
    assert (await k.syscall("alice", "storage.restore", {"run": RUN_A})).unwrap()["restored"]
    assert (k.tmp / "alice" / "secret.txt").read_text() == "alice's secret v1"


async def test_bob_cannot_list_alices_versions_by_any_path(k):
    await alice_run(k)
    a = k.tmp / "alice"
    for path in (str(a / "secret.txt"), str(a), "../alice/secret.txt", str(a / ".." / "alice" / "secret.txt"),
                 str(k.tmp)):
        res = await k.syscall("bob", "storage.history", {"path": path})
        assert not res.ok and res.error.code == "permission_denied", (path, res)
    # a path both may read: bob sees only his own versions there
    shared = k.tmp / "shared"
    (shared / "s.txt").write_text("s0")
    await call(k, "alice", "files.write", {"path": "s.txt", "content": "alice wrote"}, shared, f"{RUN_A}:3:x")
    res = (await k.syscall("bob", "storage.history", {"path": str(shared / "s.txt")})).unwrap()
    assert res["versions"] == []
    assert len((await k.syscall("alice", "storage.history", {"path": str(shared / "s.txt")})).unwrap()["versions"]) == 1
    # root (the admin, 'others') sees all
    assert len((await k.syscall("root", "storage.history", {"path": str(shared / "s.txt")})).unwrap()["versions"]) == 1


async def test_a_forged_run_id_undoes_only_the_callers_own_changes(k):
    shared = k.tmp / "shared"
    (shared / "a.txt").write_text("a0")
    (shared / "b.txt").write_text("b0")
    await call(k, "alice", "files.write", {"path": "a.txt", "content": "a1"}, shared, f"{RUN_A}:1:x")
    await call(k, "bob", "files.write", {"path": "b.txt", "content": "b1"}, shared, f"{RUN_A}:9:forged")
    out = (await k.syscall("bob", "storage.restore", {"run": RUN_A})).unwrap()
    assert [r["path"] for r in out["restored"]] == [str(shared / "b.txt")]
    assert (shared / "a.txt").read_text() == "a1" and (shared / "b.txt").read_text() == "b0"


async def test_an_agent_without_storage_calls_is_refused(k):
    await alice_run(k)
    for name, args in (("storage.history", {"path": str(k.tmp / "shared")}), ("storage.restore", {"run": RUN_A})):
        res = await k.syscall("nostore", name, args)
        assert not res.ok and res.error.code == "permission_denied"


async def test_restore_never_writes_through_a_link_swapped_in_after_the_run(k, tmp_path):
    a = k.tmp / "alice"
    (a / "d").mkdir()
    (a / "d" / "x.txt").write_text("x0")
    await call(k, "alice", "files.delete", {"path": "d/x.txt"}, a, f"{RUN_A}:1:x")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.rmdir(a / "d")
    os.symlink(outside, a / "d")                 # planted after the run: d -> outside the roots
    res = (await k.syscall("alice", "storage.restore", {"run": RUN_A})).unwrap()
    assert res["restored"] == [] and len(res["not_restored"]) == 1
    assert list(outside.iterdir()) == []
    # a link to a folder inside the roots is refused as well (never followed)
    os.unlink(a / "d")
    (a / "elsewhere").mkdir()
    os.symlink(a / "elsewhere", a / "d")
    res = (await k.syscall("alice", "storage.restore", {"run": RUN_A})).unwrap()
    assert res["restored"] == [] and list((a / "elsewhere").iterdir()) == []


async def test_versions_of_a_hard_linked_file_are_not_kept(k, tmp_path):
    a = k.tmp / "alice"
    outside = tmp_path / "outside.txt"
    outside.write_text("not alice's")
    try:
        os.link(outside, a / "hard.txt")
    except OSError:
        pytest.skip("no hard links here")
    (a / "d").mkdir()
    os.link(outside, a / "d" / "hard2.txt")
    await call(k, "alice", "files.delete", {"path": "d", "recursive": True}, a, f"{RUN_A}:1:x")
    res = (await k.syscall("alice", "storage.restore", {"run": RUN_A})).unwrap()
    assert (a / "d").is_dir() and not (a / "d" / "hard2.txt").exists()
    assert any("hard-linked" in r["reason"] for r in res["not_restored"])
    blobs = [p.read_bytes() for p in (k.config.home / "versions" / "blobs").rglob("*") if p.is_file()]
    assert all(b"not alice's" not in b for b in blobs)
