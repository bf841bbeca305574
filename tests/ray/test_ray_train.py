"""Training on Ray Train (opt-in: ``-m ray``, needs the ``ray`` and ``train`` extras): a kernel
that drives a Ray cluster (a local head it starts) runs a job's ranks as ``TorchTrainer``
workers; the checkpoints stay in the job folder, so a yield, a failed rank and a ``kill -9``
of the kernel behave as with local ranks, and the loss curve is the local launcher's.

One Ray head at a time: each test's kernel starts its own and stops it by its PIDs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.train]
pytest.importorskip("torch")
pytest.importorskip("ray.train.torch")
psutil = pytest.importorskip("psutil")

from llmos.kernel import Kernel  # noqa: E402
from llmos.train.checkpoint import JobDir, latest, read_progress  # noqa: E402
from llmos.train.launcher import LocalLauncher  # noqa: E402
from llmos.train.spec import parse_spec  # noqa: E402

# about 40 ms a step on 2 shared cores (Ray Train's workers take ~30 s to start here): 200 steps
# leave a loaded machine time to kill or preempt it between checkpoints
SPEC = {"name": "tiny", "recipe": "ddp", "workers": 2, "steps": 200, "batch_size": 256, "checkpoint_every": 20,
        "lr": 0.01, "dataset": {"kind": "synthetic", "samples": 2048, "features": 64}, "model": {"hidden": 512}}
STEPS = SPEC["steps"]


@pytest.fixture(autouse=True)
def no_other_head():
    os.environ.pop("RAY_ADDRESS", None)
    yield


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[float]:
    """The uninterrupted curve of local ranks (LocalLauncher) that Ray's ranks must reproduce."""
    job = JobDir(tmp_path_factory.mktemp("ref") / "job")
    spec = parse_spec(SPEC)
    job.create(spec.to_dict())

    async def run() -> list[int] | None:
        lau = LocalLauncher(job, spec.workers)
        await lau.start()
        return await lau.wait(120)
    assert asyncio.run(run()) == [0, 0]
    return latest(job).losses


def _same(curve: list[float], ref: list[float], tol: float = 1e-6) -> None:
    assert len(curve) == len(ref)
    assert max(abs(a - b) for a, b in zip(curve, ref, strict=True)) < tol, (curve, ref)


async def _ray_kernel(config):
    k = await Kernel.boot(config.replace(ray="auto"), hal=False)
    assert k.executor.connection.started_head
    return k


def _heads_gone(conn) -> bool:
    return not [p for p in conn.pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]


async def test_ddp_on_ray_train_yields_to_urgent_work_and_follows_the_local_curve(config, reference):
    from llmos.train.job import submit

    k = await _ray_kernel(config)
    conn = k.executor.connection
    try:
        pid = await submit(k, parse_spec(SPEC))
        job = JobDir(k.procs.get(pid).spec["args"]["job_dir"])
        deadline = time.monotonic() + 180
        while len(read_progress(job)) < 3:
            assert time.monotonic() < deadline and not k.procs.get(pid).finished, k.procs.get(pid).error
            await asyncio.sleep(0.1)
        ranks = {r["pid"] for r in read_progress(job)}
        assert os.getpid() not in ranks and all(psutil.Process(r).name().startswith("ray::") for r in ranks)
        urgent = await k.add_task(time.sleep, 3.0, name="urgent", priority=0)
        while "yield" not in {e["event"] for e in job.read_events()}:
            assert time.monotonic() < deadline and not k.procs.get(pid).finished
            await asyncio.sleep(0.1)
        assert k.procs.get(pid).reason.startswith("yielded: checkpointed at step")
        await urgent
        p, _ = await k.wait(pid, timeout_s=240)
        assert p.state.name == "SUCCEEDED", p.error
        r = p.result
        assert (r["launcher"], r["steps"], r["workers"], r["resumed_from"]) == ("ray", STEPS, 2, 0)
        assert r["yields"] >= 1 and r["launches"] >= 2
        starts = [e for e in job.read_events() if e["event"] == "workers"]
        assert starts[-1]["resumed"] and starts[-1]["step"] == next(
            e["step"] for e in job.read_events() if e["event"] == "yield")
        _same(latest(job).losses, reference)
        assert not (job.path / "ray").exists()            # Ray Train's own run folder is removed
    finally:
        await k.shutdown()
    assert _heads_gone(conn)


async def test_fsdp_on_ray_train_shards_parameters(config, reference):
    import torch

    from llmos.train.job import submit

    k = await _ray_kernel(config)
    try:
        pid = await submit(k, parse_spec({**SPEC, "recipe": "fsdp"}))
        p, _ = await k.wait(pid, timeout_s=240)
        assert p.state.name == "SUCCEEDED", p.error
        job = JobDir(p.result["dir"])
        ck = latest(job)
        assert ck.meta["recipe"] == "fsdp" and ck.meta["world_size"] == 2 and p.result["launcher"] == "ray"
        full = sum(t.numel() for t in torch.load(ck.file("model.pt"), weights_only=True).values())
        local = next(e for e in job.read_events() if e["event"] == "workers")["params_local"]
        assert local < 0.6 * full                          # each rank holds about half
        _same(ck.losses, reference, tol=1e-4)
    finally:
        await k.shutdown()


async def test_a_rank_that_raises_fails_the_job_with_its_one_line_reason(config, tmp_path):
    from llmos.train.job import submit

    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,0\n3,4,-1\n")                  # a negative label
    k = await _ray_kernel(config)
    try:
        pid = await submit(k, parse_spec({**SPEC, "name": "bad", "dataset": {"path": str(bad)}}))
        p, _ = await k.wait(pid, timeout_s=240)
        assert p.state.name == "FAILED"
        assert p.error["error"] == "train" and "train worker" in p.error["message"], p.error
        assert "label >= 0" in p.error["message"] and "rank" in p.error["hint"]
        assert len(p.error["message"].splitlines()) == 1
    finally:
        await k.shutdown()


def test_kill_9_of_the_kernel_on_ray_then_the_same_command_resumes(tmp_path, home, reference):
    spec_file = tmp_path / "tiny.json"
    spec_file.write_text(json.dumps(SPEC))
    env = {**os.environ, "LLMOS_HOME": str(home), "LLMOS_RAY": "auto"}
    argv = [sys.executable, "-c", "from llmos.cli import entry; entry()", "train", str(spec_file)]
    child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    job = JobDir(home / "train" / f"tiny-{parse_spec(SPEC).key}")
    kept: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 180
        while not read_progress(job):                  # the ranks run: note the kernel's tree
            assert child.poll() is None and time.monotonic() < deadline, child.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        kept = psutil.Process(child.pid).children(recursive=True)   # its Ray head, workers, ranks
        while len(read_progress(job)) < 30:
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)             # the kernel dies without a word
        ranks = {r["pid"] for r in read_progress(job)}
        assert ranks <= {p.pid for p in kept}
        core = [p for p in kept if p.pid in ranks or p.name() in ("gcs_server", "raylet")]
        child.wait()
        _, alive = psutil.wait_procs(core, timeout=15)  # its ranks and its head die with it
        assert not alive, f"outlived their kernel: {[(p.pid, p.name()) for p in alive]}"
        out = subprocess.run([*argv, "-q"], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        res = json.loads(out.stdout.strip().splitlines()[-1])
        assert res["state"] == "succeeded" and 20 <= res["resumed_from"] < STEPS and res["steps"] == STEPS
        _same(latest(job).losses, reference)
        _, alive = psutil.wait_procs(kept, timeout=60)  # Ray's agents notice their raylet is gone
        assert not alive, f"outlived their kernel: {[(p.pid, p.name()) for p in alive]}"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for p in kept:                                 # what a failed assertion left: by PID
            try:
                p.kill()
            except psutil.Error:
                pass
