"""Issue 12, item 1: the state directory and the config file are out of every agent's reach.

- A path under ``$LLMOS_HOME`` (admin.token, config.toml, the journal) or the config file
  is refused by the access check to every agent, root included, even when the agent's
  roots cover it; a glob whose fixed folder holds the state directory is refused too.
- A workspace that is ``/``, the home directory itself, or a folder holding the state
  directory is refused with a hint to pick a folder (kernel, ``llmos run``, the shell).
- Tool code sees the same rule (``ToolContext.state``), so a folder scan skips them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmos.config import check_workspace, load_config
from llmos.errors import InvalidArgument, PermissionDenied
from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel
from llmos.kernel.access import Agent, Capabilities, PathRef, StateArea, may
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import ToolContext, default_registry


@pytest.fixture
def layout(tmp_path, monkeypatch):
    """A project folder whose parent also holds the state directory (as with ~ and ~/.llmos)."""
    top = tmp_path / "top"
    home = top / "state"
    ws = top / "project"
    for d in (home, ws):
        d.mkdir(parents=True)
    (home / "admin.token").write_text("secret-admin-token\n")
    (home / "config.toml").write_text('model = "smollm2-135m"\n')
    (ws / "notes.txt").write_text("hello\n")
    monkeypatch.setenv("LLMOS_HOME", str(home))
    return top, home, ws


@pytest.fixture
async def kernel(layout, clock):
    _, home, _ = layout
    cfg = load_config(env={"LLMOS_HOME": str(home)})
    k = await Kernel.boot(cfg, engines={"fake": FakeEngine("x")}, tools=default_registry(), clock=clock,
                          hal=FakeHAL(clock))
    yield k
    await k.shutdown(grace_s=0.5)


async def _agent(k: Kernel, name: str, top: Path) -> None:
    res = await k.syscall("root", "agent.create", {"name": name, "capabilities": {
        "syscalls": ["tool.*", "proc.*"], "read_roots": [str(top)], "write_roots": [str(top)]}})
    assert res.ok, res.error


async def test_an_agent_whose_roots_cover_the_state_dir_still_cannot_touch_it(kernel, layout):
    top, home, ws = layout
    await _agent(kernel, "wide", top)
    cases = [("files.read", {"path": str(home / "admin.token")}),
             ("files.read", {"path": "../state/admin.token"}),
             ("files.write", {"path": str(home / "config.toml"), "content": "[[mcp]]\n"}),
             ("files.write", {"path": str(home / "new.toml"), "content": "x"}),
             ("files.search", {"text": "secret", "path": str(top / "*" / "admin.token")}),
             ("files.list", {"path": str(home)})]
    for tool, args in cases:
        res = await kernel.syscall("wide", "tool.call", {"tool": tool, "workdir": str(ws), "args": args,
                                                         "confirmed": True})
        assert not res.ok and res.error.code == "permission_denied", (tool, args, res)
        assert "state" in res.error.message, res.error.message
    assert (home / "config.toml").read_text() == 'model = "smollm2-135m"\n'
    assert not (home / "new.toml").exists()
    # the workspace itself still works
    res = await kernel.syscall("wide", "tool.call", {"tool": "files.read", "workdir": str(ws),
                                                     "args": {"path": "notes.txt"}})
    assert res.ok, res.error


async def test_a_workspace_holding_the_state_dir_or_home_or_root_is_refused(kernel, layout):
    top, home, ws = layout
    await _agent(kernel, "wide", top)
    for wd in (str(top), "/", os.path.expanduser("~"), str(home)):
        res = await kernel.syscall("wide", "tool.call", {"tool": "files.list", "workdir": wd, "args": {}})
        assert not res.ok and res.error.code in ("invalid_argument", "permission_denied"), (wd, res)
    res = await kernel.syscall("wide", "tool.call", {"tool": "files.list", "workdir": str(top), "args": {}})
    assert res.error.code == "invalid_argument" and res.error.field == "spec.workdir"
    assert res.error.hint and "folder" in res.error.hint


def test_may_refuses_the_state_area_to_every_agent_root_included(tmp_path):
    home = tmp_path / "h"
    (home / "work" / "a").mkdir(parents=True)
    state = StateArea.of(home, tmp_path / "elsewhere.toml")
    root_like = Agent("r", Capabilities(syscalls=frozenset({"*"}), read_roots=("/",), write_roots=("/",)))
    for p, mode in ((home / "admin.token", "r"), (home / "config.toml", "w"), (home, "r"),
                    (tmp_path / "elsewhere.toml", "w"), (home / "logs" / "x", "w")):
        d = may(root_like, "tool.call", PathRef.of(str(p), mode=mode, state=state))
        assert not d and "state" in d.reason, p
    # default workspaces under $LLMOS_HOME/work stay open to their agents
    assert may(root_like, "tool.call", PathRef.of(str(home / "work" / "a" / "f"), mode="w", state=state))


def test_tool_context_refuses_the_state_area(tmp_path):
    home = tmp_path / "h"
    home.mkdir()
    (home / "admin.token").write_text("t")
    ctx = ToolContext(workdir=tmp_path / "w", read_roots=(tmp_path,), state=StateArea.of(home))
    with pytest.raises(PermissionDenied, match="state"):
        ctx.resolve(str(home / "admin.token"))


def test_cli_workspace_check_refuses_with_a_hint(layout):
    top, home, ws = layout
    cfg = load_config(env={"LLMOS_HOME": str(home)})
    assert check_workspace(cfg, ws) == ws.resolve()
    for bad in (top, Path("/"), Path.home(), home):
        with pytest.raises(InvalidArgument) as ei:
            check_workspace(cfg, bad)
        assert ei.value.field == "workdir" and "folder" in (ei.value.hint or "")


@pytest.mark.parametrize("command", ["run", "shell"])
def test_llmos_run_and_shell_refuse_a_workspace_holding_the_state_dir(layout, capsys, command):
    from llmos.cli import main

    top, _, _ = layout
    argv = [command, "--workdir", str(top)] + (["--json", "count the files"] if command == "run" else [])
    assert main(argv) != 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "state directory" in text and "folder" in text, text
