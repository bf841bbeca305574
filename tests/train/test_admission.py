"""Admission: a job asking for more than the machine has is refused, the resource named;
the kernel knows the ``train`` job type from boot (default tier: no torch, no ranks run)."""

from __future__ import annotations

import pytest

from llmos.errors import AllocError
from llmos.hal.base import DeviceInfo, HardwareSnapshot
from llmos.kernel import Kernel
from llmos.train.job import JOB_TYPE, admit, job_dir_for, job_spec, submit
from llmos.train.spec import parse_spec

BASE = {"recipe": "ddp", "dataset": {"kind": "synthetic"}}


def _snap(cores=2, mem=8 << 30, gpus=0) -> HardwareSnapshot:
    devs = [DeviceInfo("cpu", 0, "cpu", cores=cores, memory_total_bytes=mem, memory_available_bytes=mem)]
    devs += [DeviceInfo("gpu", i, "gpu", memory_total_bytes=16 << 30) for i in range(gpus)]
    return HardwareSnapshot(devices=tuple(devs), energy=())


@pytest.mark.parametrize(("extra", "words"), [
    ({"workers": 4, "batch_size": 64}, "demand.cores: the job asks for 4 cores, this machine has 2"),
    ({"demand": {"memory_bytes": 64 << 30}}, "demand.memory_bytes: the job asks for 64.0 GiB"),
    ({"device": "gpu"}, "demand.gpus: the job asks for 1 GPUs, this machine has 0"),
])
def test_admit_names_the_resource(extra, words):
    with pytest.raises(AllocError) as e:
        admit(parse_spec({**BASE, **extra}), _snap())
    assert words in e.value.message


def test_admit_fits():
    admit(parse_spec({**BASE, "workers": 2}), _snap())
    admit(parse_spec({**BASE, "device": "gpu", "workers": 2}), _snap(gpus=2))


def test_job_spec_carries_device_demand_and_args(tmp_path):
    s = parse_spec({**BASE, "workers": 2, "name": "demo"})
    body, job = job_spec(s, tmp_path)
    assert body["type"] == JOB_TYPE and body["device"] == "cpu"
    assert body["demand"] == {"cores": 2.0, "memory_bytes": float(s.demand.memory_bytes)}
    assert body["args"]["job_dir"] == str(job.path) == str(job_dir_for(s, tmp_path).path)
    assert job.path.parent == tmp_path / "train" and job.path.name == f"demo-{s.key}"
    assert parse_spec(body["args"]["spec"]) == s


async def test_kernel_admits_the_train_job_type(config, clock):
    k = await Kernel.boot(config, clock=clock, hal=False, run_loop=False)
    try:
        assert JOB_TYPE in k.job_types and k.job_types[JOB_TYPE].idempotent
        s = parse_spec({**BASE, "name": "adm"})
        pid = await submit(k, s)
        p = k.procs.get(pid)
        assert p.kind == "job" and p.priority == 10 and p.spec["type"] == JOB_TYPE and p.spec["idempotent"]
        assert await submit(k, s) == pid                       # the same spec is the same job
        assert await submit(k, s, fresh=True) != pid
        assert (config.home / "train" / f"adm-{s.key}" / "spec.json").is_file()
        with pytest.raises(AllocError, match="cores"):
            await submit(k, parse_spec({**BASE, "demand": {"cores": 10_000}}))
    finally:
        await k.shutdown()
