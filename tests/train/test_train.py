"""Training for real (``-m train``: needs torch, the ``train`` extra): DDP on 2 workers
through the kernel, FSDP's sharded parameters, ``kill -9`` and resume with the same loss
curve, preemption by more urgent work. Tiny MLP on synthetic data, gloo on the CPU."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("torch")

from llmos.kernel import Kernel  # noqa: E402
from llmos.train.checkpoint import JobDir, latest, read_progress  # noqa: E402
from llmos.train.launcher import LocalLauncher  # noqa: E402
from llmos.train.spec import parse_spec  # noqa: E402

pytestmark = pytest.mark.train

# about 50 ms a step on 2 shared cores: slow enough to kill or preempt it between checkpoints
SPEC = {"name": "tiny", "recipe": "ddp", "workers": 2, "steps": 60, "batch_size": 256, "checkpoint_every": 10,
        "lr": 0.01, "dataset": {"kind": "synthetic", "samples": 2048, "features": 64}, "model": {"hidden": 512}}
STEPS = SPEC["steps"]


async def _launch(job: JobDir, spec, *, until_step: int | None = None) -> list[int] | None:
    """Run ranks to the end, or SIGKILL them (no checkpoint) once ``until_step`` is logged."""
    job.create(spec.to_dict())
    lau = LocalLauncher(job, spec.workers)
    await lau.start()
    while True:
        codes = await lau.wait(0.02)
        if codes is not None:
            return codes
        if until_step is not None and len(read_progress(job)) >= until_step:
            lau.kill()
            await lau.wait()
            return None


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[float]:
    """The uninterrupted DDP curve every other run must reproduce."""
    job = JobDir(tmp_path_factory.mktemp("ref") / "job")
    assert asyncio.run(_launch(job, parse_spec(SPEC))) == [0, 0]
    losses = latest(job).losses
    assert len(losses) == STEPS and losses[-1] < losses[0] * 0.7
    return losses


def _gone(pid: int) -> bool:
    """Exited (a zombie waiting for init to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _same(curve: list[float], ref: list[float]) -> None:
    assert len(curve) == len(ref)
    assert max(abs(a - b) for a, b in zip(curve, ref, strict=True)) < 1e-6, (curve, ref)


async def test_ddp_two_workers_as_a_kernel_process(config, reference):
    from llmos.train.job import submit

    k = await Kernel.boot(config)                       # this machine's HAL: energy is metered
    try:
        pid = await submit(k, parse_spec(SPEC))
        p, _ = await k.wait(pid, timeout_s=180)
        assert p.state.name == "SUCCEEDED", p.error
        r = p.result
        assert (r["steps"], r["workers"], r["recipe"], r["resumed_from"]) == (STEPS, 2, "ddp", 0)
        assert p.placed_on == "cpu" and p.joules is not None and p.joules > 0
        _same(latest(JobDir(r["dir"])).losses, reference)
        assert [row["step"] for row in read_progress(JobDir(r["dir"]))] == list(range(1, STEPS + 1))
    finally:
        await k.shutdown()


def test_fsdp_shards_parameters_and_follows_the_ddp_curve(tmp_path, reference):
    job = JobDir(tmp_path / "job")
    spec = parse_spec({**SPEC, "recipe": "fsdp"})
    assert asyncio.run(_launch(job, spec)) == [0, 0]
    ck = latest(job)
    assert ck.meta["recipe"] == "fsdp" and ck.meta["world_size"] == 2
    import torch

    full = sum(t.numel() for t in torch.load(ck.file("model.pt"), weights_only=True).values())
    local = next(e for e in job.read_events() if e["event"] == "workers")["params_local"]
    assert local < 0.6 * full                          # each rank holds about half
    assert max(abs(a - b) for a, b in zip(ck.losses, reference, strict=True)) < 1e-4


def test_kill_9_of_the_ranks_resumes_with_the_same_curve(tmp_path, reference):
    job = JobDir(tmp_path / "job")
    spec = parse_spec(SPEC)
    assert asyncio.run(_launch(job, spec, until_step=15)) is None     # killed past the step-10 checkpoint
    at = latest(job).step
    assert 10 <= at < STEPS and len(read_progress(job)) > at          # steps after it were lost
    assert asyncio.run(_launch(job, spec)) == [0, 0]
    ev = [e for e in job.read_events() if e["event"] == "workers"]
    assert ev[-1]["resumed"] and ev[-1]["step"] == at
    _same(latest(job).losses, reference)


def test_kill_9_of_the_kernel_process_then_the_same_command_resumes(tmp_path, home, reference):
    spec_file = tmp_path / "tiny.json"
    spec_file.write_text(json.dumps(SPEC))
    env = {**os.environ, "LLMOS_HOME": str(home)}
    cmd = [sys.executable, "-m", "llmos.cli", "train", str(spec_file)]
    child = subprocess.Popen([sys.executable, "-c", "from llmos.cli import entry; entry()", *cmd[3:]],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    job = JobDir(home / "train" / f"tiny-{parse_spec(SPEC).key}")
    deadline = time.monotonic() + 120
    while len(read_progress(job)) < 15:
        assert child.poll() is None and time.monotonic() < deadline, child.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    ranks = {r["pid"] for r in read_progress(job)}
    os.kill(child.pid, signal.SIGKILL)                 # the kernel dies without a word
    child.wait()
    time.sleep(1.0)
    for pid in ranks:                                  # its ranks died with it (PDEATHSIG)
        assert _gone(pid), f"rank pid {pid} outlived its kernel"
    out = subprocess.run([sys.executable, "-c", "from llmos.cli import entry; entry()", *cmd[3:], "-q"],
                         env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["state"] == "succeeded" and 10 <= res["resumed_from"] < STEPS and res["steps"] == STEPS
    _same(latest(job).losses, reference)


async def test_more_urgent_work_preempts_training_at_a_step_boundary(config, reference):
    from llmos.train.job import submit

    k = await Kernel.boot(config, hal=False)
    try:
        spec = parse_spec(SPEC)
        pid = await submit(k, spec)
        job = JobDir(k.procs.get(pid).spec["args"]["job_dir"])
        deadline = time.monotonic() + 120
        while len(read_progress(job)) < 3:
            assert time.monotonic() < deadline and not k.procs.get(pid).finished
            await asyncio.sleep(0.1)
        urgent = await k.add_task(time.sleep, 4.0, name="urgent", priority=0)
        while "yield" not in {e["event"] for e in job.read_events()}:
            assert time.monotonic() < deadline and not k.procs.get(pid).finished
            await asyncio.sleep(0.1)
        assert k.procs.get(pid).reason.startswith("yielded: checkpointed at step")
        yielded_at = len(read_progress(job))
        await asyncio.sleep(1.0)
        assert len(read_progress(job)) == yielded_at   # no steps while the urgent task runs
        await urgent
        p, _ = await k.wait(pid, timeout_s=180)
        assert p.state.name == "SUCCEEDED", p.error
        assert p.result["yields"] >= 1 and p.result["launches"] >= 2
        _same(latest(job).losses, reference)
    finally:
        await k.shutdown()


def test_kill_9_of_the_daemon_then_it_resumes_training_after_restart(tmp_path, config, reference, capsys):
    from llmos.cli import main
    from llmos.cli.daemon import ChildDaemon
    from llmos.sdk.discover import discover

    spec_file = tmp_path / "tiny.json"
    spec_file.write_text(json.dumps(SPEC))
    job = JobDir(config.home / "train" / f"tiny-{parse_spec(SPEC).key}")
    d = ChildDaemon.start(config, port=0)
    try:
        capsys.readouterr()
        assert main(["--home", str(config.home), "train", str(spec_file), "--detach", "-q"]) == 0
        pid = int(capsys.readouterr().out.strip().splitlines()[-1])
        deadline = time.monotonic() + 120
        while len(read_progress(job)) < 15:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ranks = {r["pid"] for r in read_progress(job)}
        os.kill(d.pid, signal.SIGKILL)
        d.proc.wait()
    finally:
        d.stop()
    time.sleep(1.0)
    assert all(_gone(r) for r in ranks)
    d = ChildDaemon.start(config, port=0)              # recovery re-queues the idempotent job
    try:
        client = discover(config)
        deadline = time.monotonic() + 180
        while (p := client.get_process(pid))["state"] not in ("succeeded", "failed", "killed"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        client.close()
        assert p["state"] == "succeeded", p
        assert 10 <= p["result"]["resumed_from"] < STEPS and p["result"]["steps"] == STEPS
        _same(latest(job).losses, reference)
    finally:
        d.stop()


async def test_a_rank_that_fails_fails_the_job_with_its_one_line_reason(config, tmp_path):
    from llmos.train.job import submit

    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,0\n3,4,-1\n")                  # a negative label
    k = await Kernel.boot(config, hal=False)
    try:
        pid = await submit(k, parse_spec({**SPEC, "name": "bad", "dataset": {"path": str(bad)}}))
        p, _ = await k.wait(pid, timeout_s=120)
        assert p.state.name == "FAILED"
        assert p.error["error"] == "train" and "train worker" in p.error["message"]
        assert "label >= 0" in p.error["message"] and "rank" in p.error["hint"]
    finally:
        await k.shutdown()
