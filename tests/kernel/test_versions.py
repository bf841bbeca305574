"""Versioned files and undo (issue 13, item 4): every write, overwrite, move and delete
a tool call makes keeps the previous bytes; ``storage.restore(run=)`` puts them back
byte-identical, newest first, and reports (does not clobber) a path changed since;
``storage.history`` lists a path's versions; the store prunes by age and by quota."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel
from llmos.kernel.versions import VersionStore, run_of
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import default_registry

RUN = "r0123abcd"


@pytest.fixture
async def k(config, clock, tmp_path):
    kernel = await Kernel.boot(config, engines={"fake": FakeEngine("x")}, tools=default_registry(),
                               clock=clock, hal=FakeHAL(clock))
    ws = tmp_path / "ws"
    ws.mkdir()
    res = await kernel.syscall("root", "agent.create", {"name": "alice", "capabilities": {
        "syscalls": ["tool.*", "storage.*", "may.risky"], "write_roots": [str(ws)]}})
    assert res.ok, res.error
    kernel.ws = ws
    yield kernel
    await kernel.shutdown(grace_s=0.5)


async def tool(k, name: str, args: dict, run: str = RUN, step: int = 1, agent: str = "alice") -> dict:
    res = await k.syscall(agent, "tool.call", {"tool": name, "args": args, "workdir": str(k.ws),
                                               "confirmed": True,
                                               "idempotency_key": f"{run}:{step}:{name}:{sorted(args.items())}"})
    assert res.ok, res.error
    return res.value


def tree(root) -> dict[str, bytes | str]:
    """Every entry under ``root``: file bytes, link targets, folders (with their modes)."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            p = os.path.join(dirpath, d)
            out[os.path.relpath(p, root)] = "link:" + os.readlink(p) if os.path.islink(p) else "dir"
        for f in files:
            p = os.path.join(dirpath, f)
            rel = os.path.relpath(p, root)
            out[rel] = ("link:" + os.readlink(p)) if os.path.islink(p) else Path(p).read_bytes()
            out[rel + "@mode"] = oct(os.lstat(p).st_mode & 0o777)
    return out


def seed(ws) -> None:
    (ws / "notes.txt").write_bytes(b"first\x00\xff line\n")
    (ws / "keep").mkdir()
    (ws / "keep" / "a.bin").write_bytes(os.urandom(5000))
    os.chmod(ws / "keep" / "a.bin", 0o640)
    (ws / "keep" / "sub").mkdir()
    (ws / "keep" / "sub" / "b.txt").write_bytes(b"bee")
    os.symlink("../notes.txt", ws / "keep" / "link")


async def test_undo_restores_write_overwrite_move_and_delete_byte_identical(k):
    ws = k.ws
    seed(ws)
    before = tree(ws)
    await tool(k, "files.write", {"path": "new.txt", "content": "brand new"}, step=1)
    await tool(k, "files.write", {"path": "notes.txt", "content": "overwritten"}, step=2)
    await tool(k, "files.append", {"path": "notes.txt", "content": "more"}, step=3)
    await tool(k, "files.move", {"source": "keep/sub", "destination": "moved/sub2"}, step=4)
    await tool(k, "files.delete", {"path": "keep", "recursive": True}, step=5)
    await tool(k, "files.write", {"path": "deep/er/x.txt", "content": "x"}, step=6)
    assert not (ws / "keep").exists() and (ws / "moved" / "sub2" / "b.txt").exists()
    res = await k.syscall("root", "storage.restore", {"run": RUN})
    assert res.ok, res.error
    assert res.value["not_restored"] == [], res.value
    assert tree(ws) == before
    # undone twice: nothing to do, said so
    again = (await k.syscall("root", "storage.restore", {"run": RUN})).value
    assert again["restored"] == again["not_restored"] == [] and len(again["already_undone"]) >= 6


async def test_the_owner_undoes_its_own_run_and_an_undo_can_be_undone(k):
    ws = k.ws
    (ws / "f.txt").write_text("v1")
    await tool(k, "files.write", {"path": "f.txt", "content": "v2"})
    res = await k.syscall("alice", "storage.restore", {"run": RUN})
    assert res.ok, res.error
    assert (ws / "f.txt").read_text() == "v1"
    res = await k.syscall("alice", "storage.restore", {"run": f"undo-{RUN}"})
    assert res.ok, res.error
    assert (ws / "f.txt").read_text() == "v2"


async def test_a_path_changed_since_is_reported_not_clobbered(k):
    ws = k.ws
    (ws / "a.txt").write_text("original a")
    (ws / "b.txt").write_text("original b")
    await tool(k, "files.write", {"path": "a.txt", "content": "run a"}, step=1)
    await tool(k, "files.write", {"path": "b.txt", "content": "run b"}, step=2)
    (ws / "a.txt").write_text("the person edited a afterwards")
    res = (await k.syscall("root", "storage.restore", {"run": RUN})).unwrap()
    assert (ws / "a.txt").read_text() == "the person edited a afterwards"
    assert (ws / "b.txt").read_text() == "original b"
    [refused] = res["not_restored"]
    assert refused["path"] == str(ws / "a.txt") and "changed since" in refused["reason"]
    # --force puts it back; the edit is kept as a version of its own
    forced = (await k.syscall("root", "storage.restore", {"run": RUN, "force": True})).unwrap()
    assert (ws / "a.txt").read_text() == "original a", forced
    hist = (await k.syscall("root", "storage.history", {"path": str(ws / "a.txt")})).unwrap()
    assert hist["versions"][0]["op"] == "restore"
    back = (await k.syscall("root", "storage.restore", {"version": hist["versions"][0]["version"]})).unwrap()
    assert back["restored"] and (ws / "a.txt").read_text() == "the person edited a afterwards"


async def test_history_lists_versions_of_a_path_and_of_files_in_a_deleted_folder(k):
    ws = k.ws
    (ws / "d").mkdir()
    (ws / "d" / "x.txt").write_text("x0")
    await tool(k, "files.write", {"path": "d/x.txt", "content": "x1"}, step=1)
    await tool(k, "files.write", {"path": "d/x.txt", "content": "x2"}, step=2)
    await tool(k, "files.delete", {"path": "d", "recursive": True}, step=3)
    res = (await k.syscall("alice", "storage.history", {"path": "d/x.txt"})).unwrap()
    ops = [v["op"] for v in res["versions"]]
    assert ops == ["delete", "write", "write"]
    assert all(v["run"] == RUN and v["agent"] == "alice" for v in res["versions"])
    first = res["versions"][-1]
    assert first["before"]["kind"] == "file" and first["after"]["kind"] == "file"
    # one version restored by id: the file as it was before that write
    (ws / "d").mkdir()
    (ws / "d" / "x.txt").write_text("later")
    out = (await k.syscall("alice", "storage.restore", {"version": first["version"]})).unwrap()
    assert out["restored"] and (ws / "d" / "x.txt").read_text() == "x0"


async def test_a_tool_call_outside_a_shell_run_is_its_own_run(k):
    ws = k.ws
    res = await k.syscall("alice", "tool.call", {"tool": "files.write", "workdir": str(ws),
                                                 "args": {"path": "solo.txt", "content": "s"}})
    assert res.ok, res.error
    pid = res.value["pid"]
    out = (await k.syscall("alice", "storage.restore", {"run": str(pid)})).unwrap()
    assert out["restored"] and not (ws / "solo.txt").exists()


def test_run_of_takes_the_shell_run_id_else_the_pid():
    assert run_of("r0123abcd:3:deadbeef", 7) == "r0123abcd"
    assert run_of("alice:7", 7) == "7"
    assert run_of("rXYZ:1", 8) == "8"
    assert run_of(None, 9) == "9"


@pytest.mark.parametrize("args, field", [
    ({}, "run"),
    ({"run": RUN, "version": 1}, "run"),
    ({"run": ""}, "run"),
    ({"version": 0}, "version"),
    ({"version": "one"}, "version"),
    ({"run": RUN, "force": "yes"}, "force"),
    ({"run": RUN, "extra": 1}, "extra"),
])
async def test_bad_restore_arguments_name_the_field(k, args, field):
    res = await k.syscall("alice", "storage.restore", args)
    assert not res.ok and res.error.code == "invalid_argument", res.error
    assert res.error.to_dict().get("field") == field


async def test_unknown_run_and_version_and_a_path_outside_the_roots_are_clear_errors(k, tmp_path):
    res = await k.syscall("alice", "storage.restore", {"run": "r99999999"})
    assert not res.ok and res.error.code == "not_found" and "r99999999" in res.error.message
    res = await k.syscall("alice", "storage.restore", {"version": 123456})
    assert not res.ok and res.error.code == "not_found" and "123456" in res.error.message
    res = await k.syscall("alice", "storage.history", {"path": str(tmp_path / "elsewhere.txt")})
    assert not res.ok and res.error.code == "permission_denied" and "outside" in res.error.message
    res = await k.syscall("alice", "storage.history", {"path": ""})
    assert not res.ok and res.error.to_dict().get("field") == "path"
    res = await k.syscall("root", "storage.history", {"path": str(k.config.home / "versions" / "versions.db")})
    assert not res.ok and res.error.code == "permission_denied"


def test_store_prunes_oldest_first_over_the_quota_and_old_changes_by_age(tmp_path, caplog):
    now = [1000.0]
    store = VersionStore(tmp_path, quota_bytes=10_000, max_age_s=100.0, clock=lambda: now[0])
    from llmos.kernel.versions import ABSENT, State

    ids = []
    for i in range(5):
        h, _ = store.put_bytes(bytes([i]) * 3000)
        ids.append(store.record(agent="a", run="r", pid=1, op="write", path=f"/w/{i}",
                                before=State("file", h, 0o644), after=ABSENT, blobs=[h]))
        store.release([h])
        now[0] += 10
    assert store.usage()["bytes"] <= 10_000
    left = [r["id"] for r in store.run_changes("r", None)]
    assert left == ids[-3:]                                 # the two oldest went first
    assert "quota" in caplog.text
    gone = [p for p in (tmp_path / "versions" / "blobs").rglob("*") if p.is_file()]
    assert len(gone) == 3                                   # their blobs were deleted
    now[0] += 1000
    store.prune()
    assert store.run_changes("r", None) == [] and store.usage()["bytes"] == 0
    # a change larger than the whole quota is recorded without its bytes
    h, _ = store.put_bytes(b"z" * 20_000)
    vid = store.record(agent="a", run="r2", pid=1, op="delete", path="/w/big",
                       before=State("file", h, 0o644), after=ABSENT, blobs=[h])
    store.release([h])
    store.prune()
    assert store.version(vid, "a")["kept"] == 0 and store.usage()["bytes"] == 0
    store.close()


async def test_version_database_and_blobs_are_private(k):
    ws = k.ws
    (ws / "f.txt").write_text("secret")
    await tool(k, "files.delete", {"path": "f.txt"})
    root = k.config.home / "versions"
    assert os.stat(root).st_mode & 0o777 == 0o700
    assert os.stat(root / "versions.db").st_mode & 0o777 == 0o600
    blobs = [p for p in (root / "blobs").rglob("*") if p.is_file()]
    assert blobs and all(os.stat(p).st_mode & 0o077 == 0 for p in blobs)


def test_config_sets_the_quota_and_age_and_names_a_bad_key(tmp_path):
    from llmos.config import load_config
    from llmos.errors import ConfigError

    cfg = tmp_path / "c.toml"
    cfg.write_text("[versions]\nquota_bytes = 5000\nmax_age_days = 2\n")
    c = load_config(cfg, env={"LLMOS_HOME": str(tmp_path / "h")})
    assert (c.versions.quota_bytes, c.versions.max_age_days) == (5000, 2.0)
    assert load_config(env={"LLMOS_HOME": str(tmp_path / "h")}).versions.quota_bytes == 1 << 30
    for text, words in (("quota_bytes = -1", "versions.quota_bytes"), ("max_age_days = 'soon'", "versions.max_age_days"),
                        ("size = 3", "unknown key(s) size")):
        cfg.write_text(f"[versions]\n{text}\n")
        with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
            load_config(cfg, env={"LLMOS_HOME": str(tmp_path / "h")})


async def test_the_kernel_uses_the_configured_quota(config, clock):
    import dataclasses

    from llmos.config import VersionsConfig

    cfg = dataclasses.replace(config, versions=VersionsConfig(quota_bytes=1234, max_age_days=1))
    kernel = await Kernel.boot(cfg, engines={"fake": FakeEngine("x")}, tools=default_registry(), clock=clock,
                               hal=FakeHAL(clock))
    try:
        assert kernel.versions.quota_bytes == 1234 and kernel.versions.max_age_s == 86400
    finally:
        await kernel.shutdown(grace_s=0.5)


async def test_undo_removes_what_a_run_created_copied_or_made(k):
    ws = k.ws
    seed(ws)
    before = tree(ws)
    await tool(k, "files.copy", {"source": "keep", "destination": "copy-of-keep"}, step=1)
    await tool(k, "files.mkdir", {"path": "made/inner"}, step=2)
    await tool(k, "files.copy", {"source": "notes.txt", "destination": "made/inner/n.txt"}, step=3)
    assert (ws / "copy-of-keep" / "sub" / "b.txt").read_bytes() == b"bee"
    hist = (await k.syscall("alice", "storage.history", {"path": "copy-of-keep"})).unwrap()
    assert [v["op"] for v in hist["versions"]] == ["copy"]          # one version for the tree
    out = (await k.syscall("alice", "storage.restore", {"run": RUN})).unwrap()
    assert out["not_restored"] == [], out
    assert tree(ws) == before


async def test_undo_puts_back_what_a_program_changed_in_its_workdir(k):
    ws = k.ws
    seed(ws)
    before = tree(ws)
    code = ("import os, shutil\n"
            "open('notes.txt', 'w').write('rewritten by code')\n"
            "shutil.rmtree('keep/sub')\n"
            "os.makedirs('out/deep')\n"
            "open('out/deep/r.csv', 'w').write('a,b')\n"
            "os.remove('keep/a.bin')\n")
    res = await k.syscall("alice", "tool.call", {"tool": "python.run", "args": {"code": code}, "workdir": str(ws),
                                                 "confirmed": True, "idempotency_key": f"{RUN}:1:code"})
    if not res.ok and res.error.code == "sandbox_error":
        pytest.skip(f"no sandbox here: {res.error.message}")
    assert res.ok, res.error
    hist = (await k.syscall("alice", "storage.history", {"path": "keep/sub/b.txt"})).unwrap()
    assert [v["op"] for v in hist["versions"]] == ["exec"]
    out = (await k.syscall("alice", "storage.restore", {"run": RUN})).unwrap()
    assert out["not_restored"] == [], out
    assert tree(ws) == before
