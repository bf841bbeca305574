"""The development agent on the real planner-tier model (marker ``model``): one tiny repository.

What it holds whatever the model writes: every model call is an ``llm.generate`` of the
run's own agent (a kernel process with usage), every reply is either applied to the
scratch copy or rejected with a reason, the repository is never written, and a run
that reports passing tests really passes them. Whether the 1.5B model fixes the bug is
measured by ``eval/dev/run.py``, not asserted here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from llmos.dev import DevAgent, Outcome, open_local, open_repo, scratch_copy
from llmos.errors import SandboxError
from llmos.kernel import Kernel
from llmos.shell.runner import planner_model
from llmos.tools.registry import default_registry
from llmos.tools.sandbox import default_sandbox

pytestmark = pytest.mark.model

CODE = "def largest(values):\n    best = values[0]\n    for v in values:\n        if v < best:\n            best = v\n" \
       "    return best\n"
TEST = "from pick import largest\n\nassert largest([3, 9, 2]) == 9, largest([3, 9, 2])\nprint('ok')\n"


async def test_dev_agent_on_the_planner_model(config, tmp_path):
    try:
        default_sandbox().check()
    except SandboxError as exc:
        pytest.skip(f"no sandbox here: {exc}")
    root = tmp_path / "pickrepo"
    root.mkdir()
    (root / "pick.py").write_text(CODE)
    (root / "test_pick.py").write_text(TEST)
    repo = open_repo(root, "python test_pick.py")
    scratch = scratch_copy(repo)
    k = await Kernel.boot(config, tools=default_registry())
    try:
        model, _why = planner_model(k)
        session = await open_local(k, scratch, model=model)
        res = await DevAgent(session, repo, scratch, tries=2).run("largest returns the smallest value; fix it")
        assert not res.baseline.passed and "9" in res.baseline.output
        assert 1 <= len(res.tries) <= 2 and len(session.llm_calls) == len(res.tries)
        for call in session.llm_calls:
            assert call["pid"] is not None and call["usage"]["completion_tokens"] > 0
        for t in res.tries:
            assert t.applied or t.reason
        assert (root / "pick.py").read_text() == CODE          # the repository is never written
        if res.outcome is Outcome.PASSED:                     # a pass is a real pass
            done = tmp_path / "done"
            shutil.copytree(root, done)
            for rel, text in res.changed.items():
                (done / rel).write_text(text)
            p = subprocess.run([sys.executable, "test_pick.py"], cwd=done, capture_output=True, text=True)
            assert p.returncode == 0, p.stderr
    finally:
        await k.shutdown()
        shutil.rmtree(scratch.parent, ignore_errors=True)
