"""What the allocator granted is enforced on a tool's child: CPU affinity, memory, GPUs."""

from __future__ import annotations

import os
import resource

import pytest

from llmos.errors import SandboxError
from llmos.executor.base import Grant
from llmos.executor.local import LocalExecutor
from llmos.tools.sandbox import Sandbox, default_sandbox, memory_limit_how

REPORT = ("import os, resource\n"
          "print(','.join(map(str, sorted(os.sched_getaffinity(0)))), resource.getrlimit(resource.RLIMIT_AS)[0],"
          " repr(os.environ.get('CUDA_VISIBLE_DEVICES')))\n")


async def _claim(pids):
    return {}


def test_grant_words_and_environment():
    g = Grant(cores=(0, 1, 2, 5), memory_bytes=256 << 20, gpus=("1",))
    assert g.describe() == "cores 0-2,5, memory 256 MiB, GPUs 1"
    assert g.env() == {"CUDA_VISIBLE_DEVICES": "1"}
    assert Grant(gpus=()).env() == {"CUDA_VISIBLE_DEVICES": ""} and Grant().env() == {}
    assert Grant().describe() == "nothing"


def test_the_executor_gives_a_granted_tool_its_own_limits():
    ex = LocalExecutor(_claim)
    base = default_sandbox().limits
    assert ex._sandbox_for(None, None) is None                      # nothing granted: the default
    box = ex._sandbox_for(None, Grant(cores=(0,), memory_bytes=128 << 20, gpus=()))
    assert (box.limits.cores, box.limits.memory_bytes, box.limits.gpus) == ((0,), 128 << 20, ())
    assert ex._sandbox_for(64 << 20, Grant(memory_bytes=128 << 20)).limits.memory_bytes == 64 << 20
    assert ex._sandbox_for(None, Grant(memory_bytes=base.memory_bytes * 4)) is None   # never looser
    assert ex._sandbox_for(None, Grant(cores=(0,))) is ex._sandbox_for(None, Grant(cores=(0,)))


def test_the_child_runs_with_what_was_granted(tmp_path):
    cpus = sorted(os.sched_getaffinity(0))
    sb = default_sandbox()
    try:
        sb.check()
    except SandboxError as exc:
        pytest.skip(f"no sandbox here: {exc}")
    want_mem = 300 << 20
    box = Sandbox(limits=sb.limits.__class__(**{**sb.limits.__dict__, "cores": (cpus[-1],),
                                                "memory_bytes": want_mem, "gpus": ("0",)}))
    res = box.run([*box.python_argv(), "-c", REPORT], workdir=tmp_path)
    assert res.exit_code == 0, res.stderr
    assert res.stdout.split() == [str(cpus[-1]), str(want_mem), "'0'"]
    # without a grant the child keeps every CPU and sees no CUDA_VISIBLE_DEVICES
    res = sb.run([*sb.python_argv(), "-c", REPORT], workdir=tmp_path)
    assert res.stdout.split() == [",".join(map(str, cpus)), str(sb.limits.memory_bytes), "None"]
    assert resource.getrlimit(resource.RLIMIT_AS)[0] != want_mem     # the kernel's own is untouched
    assert memory_limit_how().startswith(("cgroup v2", "RLIMIT_AS"))
