from __future__ import annotations

import os

from llmos.kernel.access import (
    ROOT,
    Agent,
    Capabilities,
    CapsRef,
    NetRef,
    PathRef,
    ProcRef,
    Quotas,
    UsageRef,
    is_under,
    may,
    resolve_path,
)


def agent(**kw) -> Agent:
    return Agent("a", Capabilities(**kw))


def test_syscall_patterns():
    a = agent(syscalls=frozenset({"proc.*", "llm.generate"}))
    assert may(a, "proc.kill") and may(a, "llm.generate")
    d = may(a, "tool.call")
    assert not d and "may not call tool.call" in d.reason
    assert may(ROOT, "anything.at_all")
    assert not may(agent(), "proc.list")


def test_other_agents_processes_need_the_others_capability():
    a = agent(syscalls=frozenset({"*"}))
    assert may(a, "proc.kill", ProcRef(3, "a")).reason == "own process"
    d = may(a, "proc.kill", ProcRef(3, "b"))
    assert not d and "belongs to agent 'b'" in d.reason and "'others'" in d.reason
    assert may(agent(syscalls=frozenset({"*"}), others=True), "proc.kill", ProcRef(3, "b"))


def test_paths_resolve_dotdot_and_symlinks(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (tmp_path / "secret").write_text("x")
    os.symlink(tmp_path / "secret", ws / "link")
    a = agent(syscalls=frozenset({"*"}), read_roots=(resolve_path(ws),), write_roots=())
    assert may(a, "tool.call", PathRef.of("notes.txt", str(ws), "r"))
    assert not may(a, "tool.call", PathRef.of("../secret", str(ws), "r"))
    d = may(a, "tool.call", PathRef.of("link", str(ws), "r"))          # symlink out of the workspace
    assert not d and str(tmp_path / "secret") in d.reason
    assert not may(a, "tool.call", PathRef.of("notes.txt", str(ws), "w"))   # read-only agent
    assert not may(a, "tool.call", PathRef.of("/etc/shadow", str(ws), "r"))


def test_write_roots_imply_read_and_prefixes_are_not_confused(tmp_path):
    ws = resolve_path(tmp_path / "ws")
    a = agent(syscalls=frozenset({"*"}), write_roots=(ws,))
    assert may(a, "x.y", PathRef(ws + "/f", "r")) and may(a, "x.y", PathRef(ws + "/f", "w"))
    assert not may(a, "x.y", PathRef(ws + "2/f", "r"))      # /ws2 is not inside /ws
    assert is_under("/anything", "/") and is_under(ws, ws)


def test_network_and_quotas():
    a = agent(syscalls=frozenset({"*"}), quotas=Quotas(tokens_per_min=100, max_procs=2, cpu_s=5))
    assert not may(a, "tool.call", NetRef("web.get"))
    assert "web.get" in may(a, "tool.call", NetRef("web.get")).reason
    assert may(agent(syscalls=frozenset({"*"}), network=True), "tool.call", NetRef())
    assert may(a, "proc.spawn", UsageRef(live_procs=1, new_procs=1))
    d = may(a, "proc.spawn", UsageRef(live_procs=2, new_procs=1))
    assert not d and d.quota and "max_procs=2" in d.reason
    assert may(a, "proc.spawn", UsageRef(tokens_last_min=100)).quota
    assert may(a, "proc.spawn", UsageRef(cpu_s=5.0)).quota


def test_capabilities_can_only_be_narrowed(tmp_path):
    parent = Capabilities(syscalls=frozenset({"proc.*", "llm.generate"}),
                          read_roots=(str(tmp_path),), write_roots=(str(tmp_path / "w"),),
                          quotas=Quotas(tokens_per_min=1000))
    p = agent(syscalls=frozenset({"agent.create"}) | parent.syscalls, read_roots=parent.read_roots,
              write_roots=parent.write_roots, quotas=parent.quotas)
    ok = Capabilities(syscalls=frozenset({"proc.list"}), read_roots=(str(tmp_path / "w" / "x"),),
                      quotas=Quotas(tokens_per_min=10))
    assert may(p, "agent.create", CapsRef(ok))
    for bad, why in [
        (Capabilities(syscalls=frozenset({"*"})), "syscall '*'"),
        (Capabilities(syscalls=frozenset({"tool.*"})), "syscall 'tool.*'"),
        (Capabilities(write_roots=(str(tmp_path),)), "write root"),
        (Capabilities(read_roots=("/",)), "read root"),
        (Capabilities(network=True), "network"),
        (Capabilities(others=True), "others"),
        (Capabilities(quotas=Quotas()), "tokens_per_min=unlimited"),
    ]:
        d = may(p, "agent.create", CapsRef(bad))
        assert not d and why in d.reason, (why, d.reason)


def test_caps_round_trip():
    c = Capabilities(syscalls=frozenset({"proc.*"}), read_roots=("/tmp",), network=True,
                     quotas=Quotas(max_procs=3))
    assert Capabilities.from_dict(c.to_dict()) == Capabilities(
        syscalls=frozenset({"proc.*"}), read_roots=(resolve_path("/tmp"),), network=True,
        quotas=Quotas(max_procs=3))


def test_alloc_mode_is_a_preference_kept_with_the_capabilities():
    caps = Capabilities(syscalls=frozenset({"llm.*"}), alloc_mode="energy")
    assert Capabilities.from_dict(caps.to_dict()) == caps
    assert Capabilities.from_dict({"syscalls": ["llm.*"]}).alloc_mode is None        # older rows
    assert caps.within(Capabilities(syscalls=frozenset({"*"}))) is None              # not a privilege
