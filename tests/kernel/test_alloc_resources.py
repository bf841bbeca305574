"""Resources from the fake HAL and the config; an allocator in the configured mode."""

from __future__ import annotations

from llmos.clock import FakeClock
from llmos.config import RemoteModel
from llmos.hal.fake import FakeGpu, FakeHAL
from llmos.kernel.alloc import Task
from llmos.kernel.alloc_resources import allocator_for, machine_resources


def test_devices_and_engines_become_resources(config):
    cfg = config.replace(remotes=(RemoteModel("big", "http://127.0.0.1:9/v1", "Qwen/Qwen2.5-7B"),),
                         alloc_mode="energy")
    hal = FakeHAL(FakeClock(), gpus=[FakeGpu(memory_total_bytes=16 << 30, memory_used_bytes=4 << 30,
                                             power_limit_w=250)])
    res = {r.name: r for r in machine_resources(hal.snapshot(), cfg)}
    assert set(res) == {"cpu", "gpu:0", "engine:embedded", "remote:big"}
    assert res["cpu"].lanes == 8 and res["cpu"].capacity["cores"] == 8
    assert res["gpu:0"].capacity["gpu_memory_bytes"] == 12 << 30 and res["gpu:0"].power_w == 250
    assert res["engine:embedded"].capacity["slots"] == cfg.engine.n_seq_max
    assert f"model:{cfg.model}" in res["engine:embedded"].provides
    assert {"model:big", "model:Qwen/Qwen2.5-7B"} <= res["remote:big"].provides
    a = allocator_for(cfg, hal, FakeClock())
    assert a.mode == "energy"
    assert a.place(Task("q", kind="llm", work=50, needs=frozenset({"model:big"}))).resource == "remote:big"
    assert a.place(Task("g", needs=frozenset({"gpu"}))).resource == "gpu:0"
