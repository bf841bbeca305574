"""Issue 12, item 11: a run's agent cannot be squatted.

An agent that creates the name a run's agent will get (``run-<run id>``) before the run
does must neither control that run nor stop it: the runner makes a fresh agent of its
own (created by the caller, holding only the workspace), never reusing one it did not make.
"""

from __future__ import annotations

import json

import pytest

from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel
from llmos.llm.fake import FakeEngine
from llmos.shell import runner as runner_mod
from llmos.shell.runner import Runner
from llmos.tools.registry import default_registry

PLAN = json.dumps({"steps": [{"tool": "files.read", "args": {"path": "a.txt"}, "why": "read it"}],
                   "answer": "Read a.txt."})


@pytest.fixture
async def kernel(config, clock):
    k = await Kernel.boot(config, engines={"fake": FakeEngine(PLAN)}, tools=default_registry(), clock=clock,
                          hal=FakeHAL(clock))
    yield k
    await k.shutdown(grace_s=0.5)


async def test_a_squatted_run_agent_name_is_not_reused_and_does_not_stop_the_run(kernel, tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.txt").write_text("hello\n")
    # a squatter holding agent.create makes the name the next run's agent will get
    res = await kernel.syscall("root", "agent.create", {"name": "squatter", "capabilities": {
        "syscalls": ["agent.create", "proc.*", "memory.*"], "read_roots": [str(ws)]}})
    assert res.ok, res.error
    res = await kernel.syscall("squatter", "agent.create", {"name": "run-rfixed000", "capabilities": {
        "syscalls": ["proc.*", "memory.*"]}})
    assert res.ok, res.error
    monkeypatch.setattr(runner_mod, "new_run_id", lambda: "rfixed000")
    result = await Runner(kernel, model="fake").run("read a.txt", workdir=ws)
    assert result.status == "succeeded", result.answer
    agent = result.record.agent
    assert agent != "run-rfixed000"
    made = kernel.agents.get(agent)
    assert made.creator == "root"
    assert made.caps.write_roots == (str(ws.resolve()),)
    # the squatted agent never acted in the run
    rows = kernel.journal.query("SELECT COUNT(*) FROM processes WHERE owner = ?", ("run-rfixed000",))
    assert rows[0][0] == 0
