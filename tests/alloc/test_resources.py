"""Resources from the fake HAL and the config; an allocator in the configured mode."""

from __future__ import annotations

from llmos.alloc import Task
from llmos.alloc.resources import (
    DEFAULT_LABEL,
    allocator_for,
    device_resources,
    engine_resources,
    machine_resources,
)
from llmos.clock import FakeClock
from llmos.config import RemoteModel
from llmos.hal.fake import FakeGpu, FakeHAL
from llmos.llm.fake import FakeEngine


def test_devices_and_engines_become_resources(config):
    cfg = config.replace(remotes=(RemoteModel("big", "http://127.0.0.1:9/v1", "Qwen/Qwen2.5-7B"),),
                         alloc_mode="energy", models=(("tiny", "/models/tiny.gguf"),))
    hal = FakeHAL(FakeClock(), gpus=[FakeGpu(memory_total_bytes=16 << 30, memory_used_bytes=4 << 30,
                                             power_limit_w=250)])
    res = {r.name: r for r in machine_resources(hal.snapshot(), cfg)}
    assert set(res) == {"cpu", "gpu:0", f"engine:{cfg.model}", "engine:tiny", "remote:big"}
    assert res["cpu"].lanes == 8 and res["cpu"].capacity["cores"] == 8
    assert res["gpu:0"].capacity["gpu_memory_bytes"] == 12 << 30 and res["gpu:0"].power_w == 250
    assert res[f"engine:{cfg.model}"].lanes == cfg.engine.n_seq_max
    assert {f"model:{cfg.model}", DEFAULT_LABEL} <= res[f"engine:{cfg.model}"].provides
    assert DEFAULT_LABEL not in res["engine:tiny"].provides and "model:tiny" in res["engine:tiny"].provides
    assert {"model:big", "model:Qwen/Qwen2.5-7B"} <= res["remote:big"].provides
    assert res["remote:big"].cost_per_unit is None and res["engine:tiny"].cost_per_unit == 0.0
    a = allocator_for(cfg, hal, FakeClock())
    assert a.mode == "energy"
    assert a.place(Task("q", kind="llm", work=50, needs=frozenset({"model:big"}))).resource == "remote:big"
    assert a.place(Task("g", needs=frozenset({"gpu"}))).resource == "gpu:0"


def test_given_engines_are_the_default_and_shadow_registry_names(config):
    fake = FakeEngine(max_active=3, model="fake-model")
    cfg = config.replace(remotes=(RemoteModel("big", "https://api.example.com/v1", "m"),))
    engines = {e.resource.name: e for e in engine_resources(cfg, {"fake": fake, cfg.model: FakeEngine()})}
    assert set(engines) == {"engine:fake", f"engine:{cfg.model}", "remote:big"}
    assert engines["engine:fake"].resource.lanes == 3 and engines["engine:fake"].engine == "fake"
    assert {"model:fake", "model:fake-model", DEFAULT_LABEL} <= engines["engine:fake"].resource.provides
    assert engines["engine:fake"].devices == ("cpu",)
    assert DEFAULT_LABEL not in engines["remote:big"].resource.provides      # given engines are the default
    assert engines["remote:big"].devices == () and engines["remote:big"].engine == "big"


def test_gpu_offload_meters_the_gpu_and_no_hal_still_has_a_cpu(config):
    hal = FakeHAL(FakeClock(), gpus=[FakeGpu(power_limit_w=200)])
    cfg = config.replace(engine=config.engine.__class__(n_gpu_layers=-1))
    (local,) = engine_resources(cfg, None, hal.snapshot())
    assert local.devices == ("cpu", "gpu:0")
    assert local.resource.power_w > engine_resources(config, None, hal.snapshot())[0].resource.power_w
    (cpu,) = device_resources(None)
    assert cpu.name == "cpu" and cpu.lanes >= 1 and "tool" in cpu.provides


def test_energy_devices_of_engines():
    from types import SimpleNamespace

    from llmos.alloc.resources import engine_devices, is_loopback

    assert is_loopback("http://127.0.0.1:8000/v1") and is_loopback("http://localhost/v1")
    assert is_loopback("http://[::1]:9/v1") and not is_loopback("https://api.example.com/v1")
    assert engine_devices(FakeEngine()) == ("cpu",)                                   # in this process
    assert engine_devices(SimpleNamespace(base_url="https://api.example.com/v1")) == ()
    assert engine_devices(SimpleNamespace(base_url="http://127.0.0.1:8080/v1")) == ("cpu",)
    assert engine_devices(SimpleNamespace(devices=("gpu:1",), base_url="https://x/v1")) == ("gpu:1",)


def test_remote_endpoints_on_this_machine_are_metered_on_the_cpu(config):
    cfg = config.replace(remotes=(RemoteModel("far", "https://api.example.com/v1", "m"),
                                  RemoteModel("near", "http://127.0.0.1:8000/v1", "m")))
    devs = {e.resource.name: e.devices for e in engine_resources(cfg)}
    assert devs["remote:far"] == () and devs["remote:near"] == ("cpu",)
