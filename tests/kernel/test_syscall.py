"""The syscall door: table shape, bad input as clear error values, audit, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmos.kernel import SYSCALLS, ProcState
from llmos.kernel.argtypes import Args
from llmos.kernel.table import TABLE

from .conftest import audit_rows, make_agent


def test_table_rows_are_complete():
    assert SYSCALLS is TABLE
    need = {"proc.spawn", "proc.kill", "proc.wait", "proc.nice", "proc.list", "proc.get",
            "llm.generate", "tool.list", "tool.call", "timer.set", "timer.cancel", "timer.list",
            "agent.create", "agent.list", "memory.put", "memory.get", "memory.search"}
    assert need <= set(TABLE)
    for name, row in TABLE.items():
        assert row.name == name and issubclass(row.args, Args) and row.capability and row.doc
        assert row.args.model_config["extra"] == "forbid"


async def test_bad_input_is_a_clear_error_value_audited_and_harmless(kernel, workdir):
    await make_agent(kernel, "alice", syscalls=["proc.*", "tool.call", "llm.generate"],
                     read_roots=[str(workdir)], write_roots=[str(workdir)],
                     quotas={"max_procs": 2})
    await make_agent(kernel, "bob", syscalls=["proc.*"])
    run = (await kernel.syscall("bob", "proc.spawn", {"kind": "run", "spec": {"title": "bob's"}})).value["pid"]
    cases = [
        ("alice", "proc.frobnicate", {}, "unknown_syscall", "proc.frobnicate"),
        ("alice", "proc.spawn", {"kind": "daemon"}, "invalid_argument", "kind"),
        ("alice", "proc.spawn", {"kind": "llm", "spec": {"prompt": "x"}, "extra": 1},
         "invalid_argument", "extra"),
        ("alice", "proc.get", {"pid": "seven"}, "invalid_argument", "pid"),
        ("alice", "proc.get", {"pid": 999}, "not_found", "999"),
        ("alice", "proc.kill", {"pid": run}, "permission_denied", "belongs to agent 'bob'"),
        ("alice", "proc.get", {"pid": run}, "permission_denied", "lacks the 'others' capability"),
        ("alice", "proc.nice", {"pid": run, "priority": -21}, "invalid_argument", "priority"),
        ("alice", "proc.nice", {"pid": run, "priority": True}, "invalid_argument", "priority"),
        ("alice", "timer.set", {"in_s": 5, "message": "x"}, "permission_denied", "may not call timer.set"),
        ("alice", "tool.call", {"tool": "test.read", "args": {"path": "/etc/shadow"},
                                "workdir": str(workdir)}, "permission_denied", "/etc/shadow"),
        ("mallory", "proc.list", {}, "permission_denied", "unknown agent"),
        ("alice", "proc.list", [1, 2], "invalid_argument", "expected an object"),
    ]
    for agent, name, args, code, text in cases:
        res = await kernel.syscall(agent, name, args)
        assert not res.ok, (name, args)
        d = res.to_dict()["error"]
        assert d["error"] == code, (name, d)
        assert text in d["message"] or text in str(d.get("field")) or text in str(d.get("reason")), (name, d)
    # quota: two live processes allowed, the third is refused
    for _ in range(2):
        assert (await kernel.syscall("alice", "proc.spawn", {"kind": "run"})).ok
    res = await kernel.syscall("alice", "proc.spawn", {"kind": "run"})
    assert res.error.code == "quota_exceeded" and "max_procs=2" in res.error.message
    # every call above is in the audit log, denials with their reason
    rows = audit_rows(kernel)
    assert len([r for r in rows if r[0] in ("alice", "mallory")]) == len(cases) + 3
    denied = [r for r in rows if not r[3]]
    assert any(r[1] == "proc.kill" and "belongs to agent 'bob'" in r[4] for r in denied)
    assert any(r[1] == "tool.call" and "/etc/shadow" in r[2] for r in denied)
    assert any(r[5] == "quota_exceeded" for r in denied)
    assert any(r[0] == "mallory" for r in denied)
    # bob's process was not touched by any of it
    assert kernel.procs.get(run).state == ProcState.WAITING and kernel.procs.get(run).priority == 0


async def test_allowed_calls_are_audited_with_resources(kernel):
    pid = (await kernel.syscall("root", "proc.spawn", {"kind": "run"})).value["pid"]
    await kernel.syscall("root", "proc.get", {"pid": pid})
    row = audit_rows(kernel)[-1]
    assert row[:2] == ("root", "proc.get") and row[3] == 1 and f"pid {pid}" in row[2]


def test_syscall_result_shape():
    from llmos.errors import NotFound
    from llmos.kernel import SyscallResult

    ok = SyscallResult.success({"a": 1}, "x")
    assert ok.to_dict() == {"ok": True, "value": {"a": 1}} and ok.unwrap() == {"a": 1}
    bad = SyscallResult.failure(NotFound("no pid 3"), "x")
    assert bad.to_dict() == {"ok": False, "error": {"error": "not_found", "message": "no pid 3"}}
    with pytest.raises(NotFound):
        bad.unwrap()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)
names = st.sampled_from(sorted(TABLE)) | st.text(max_size=20)
arg_dicts = st.dictionaries(
    st.sampled_from(["pid", "kind", "spec", "priority", "parent", "timeout_s", "prompt", "messages",
                     "max_tokens", "tool", "args", "workdir", "key", "value", "query", "in_s", "at",
                     "message", "id", "name", "capabilities", "state", "limit", "stream", "confirmed",
                     "idempotency_key", "temperature", "stop", "owner"]) | st.text(max_size=8),
    json_values, max_size=5)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(agent=st.sampled_from(["root", "nobody", ""]) | st.text(max_size=5), name=names,
       args=arg_dicts | json_values)
async def test_fuzz_dispatch_never_raises(kernel, agent, name, args):
    if name in ("proc.wait", "llm.generate", "tool.call") and isinstance(args, dict):
        args = {**args, "timeout_s": 0} if name == "proc.wait" else args
    res = await kernel.syscall(agent, name, args)
    if not res.ok:
        d = res.to_dict()["error"]
        assert d["error"] != "error", d          # a known error code, never a bare mapped crash
        assert d["message"] and "\n" not in d["message"]


def test_syscall_and_the_decoders_sit_below_the_facade():
    """No import cycle through the table: ``syscall`` and the ``sys_*`` decoders never
    import ``core`` (not even for types: they use ``syscall.KernelView``), and ``syscall``
    imports no decoder (``table`` does)."""
    import ast
    from pathlib import Path

    import llmos.kernel

    root = Path(llmos.kernel.__file__).parent
    for path in [root / "syscall.py", *sorted(root.glob("sys_*.py"))]:
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
        assert "llmos.kernel.core" not in names, path.name
        if path.name == "syscall.py":
            assert not any(n.startswith("llmos.kernel.sys_") or n == "llmos.kernel.table" for n in names)
