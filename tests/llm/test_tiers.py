"""The planner tier rule on fake machines (FakeHAL): big, small, GPU, explicit, missing file."""

import pytest
from gguf import GGUFWriter

from llmos.clock import FakeClock
from llmos.config import load_config
from llmos.errors import ModelNotFound, ModelPackageMissing
from llmos.hal.fake import FakeGpu, FakeHAL, FakePsutil
from llmos.llm.tiers import TIERS, choose_planner, fits, tier_rows

GiB = 1 << 30


def machine(*, cores=8, avail=24 * GiB, gpus=()):
    clock = FakeClock()
    ps = FakePsutil(clock, logical=cores, physical=max(1, cores // 2), memory_total_bytes=max(avail, 32 * GiB),
                    memory_available_bytes=avail)
    return FakeHAL(clock, psutil=ps, gpus=list(gpus)).snapshot()


@pytest.fixture(scope="module")
def planner_file(tmp_path_factory):
    """A stand-in for the installed 1.5B GGUF: a tiny file with a real qwen2 header."""
    path = tmp_path_factory.mktemp("planner") / "planner.gguf"
    w = GGUFWriter(str(path), "qwen2")
    w.add_context_length(32768)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def cfg(home, **env):
    return load_config(env={"LLMOS_HOME": str(home), **env})


def test_the_rule_is_data_in_order():
    assert [t.model for t in TIERS] == ["qwen2.5-coder-1.5b", "smollm2-135m"]
    assert TIERS[0].min_available_bytes == 3 * GiB and TIERS[0].min_cores == 2
    assert TIERS[0].min_gpu_free_bytes == 2 * GiB and TIERS[-1].requirement == "none (any machine)"


def test_big_machine_gets_the_1_5b(home, planner_file):
    choice = choose_planner(machine(cores=8, avail=24 * GiB), cfg(home, LLMOS_PLANNER_GGUF=str(planner_file)))
    model, reason = choice                       # a plain (model, reason) tuple too
    assert model.name == "qwen2.5-coder-1.5b" and model.kind == "packaged"
    assert model.path == planner_file and model.architecture == "qwen2" and model.context_length == 32768
    assert reason.startswith("qwen2.5-coder-1.5b: this machine fits its tier") and "24 GiB available" in reason


@pytest.mark.parametrize("cores, avail", [(1, 24 * GiB), (8, 2 * GiB), (2, 512 << 20)])
def test_small_machine_gets_the_135m(home, planner_file, cores, avail):
    model, reason = choose_planner(machine(cores=cores, avail=avail, gpus=[]),
                                   cfg(home, LLMOS_PLANNER_GGUF=str(planner_file)))
    assert model.name == "smollm2-135m" and model.kind == "embedded"
    assert "qwen2.5-coder-1.5b needs >= 3 GiB available memory and >= 2 cores" in reason
    assert f"{cores} cores" in reason


def test_gpu_counts_when_layers_are_offloaded(home, planner_file):
    snap = machine(cores=1, avail=1 * GiB, gpus=[FakeGpu(memory_total_bytes=16 * GiB, memory_used_bytes=10 * GiB)])
    offload = cfg(home, LLMOS_PLANNER_GGUF=str(planner_file)).replace(
        engine=cfg(home).engine.__class__(n_gpu_layers=-1))
    model, reason = choose_planner(snap, offload)
    assert model.name == "qwen2.5-coder-1.5b" and "GPU 0" in reason and "6 GiB free" in reason
    # the same GPU with nothing offloaded: the weights would sit in the 1 GiB of RAM
    model, reason = choose_planner(snap, cfg(home, LLMOS_PLANNER_GGUF=str(planner_file)))
    assert model.name == "smollm2-135m" and "n_gpu_layers = 0" in reason
    # a GPU with too little free memory does not count
    full = machine(cores=1, avail=1 * GiB, gpus=[FakeGpu(memory_total_bytes=4 * GiB, memory_used_bytes=3 * GiB)])
    assert not fits(TIERS[0], full, offload)[0]


def test_missing_file_falls_back_with_how_to_install(home, tmp_path):
    model, reason = choose_planner(machine(), cfg(home, LLMOS_PLANNER_GGUF=str(tmp_path / "absent.gguf")))
    assert model.name == "smollm2-135m"
    assert "qwen2.5-coder-1.5b fits" in reason and "not installed" in reason
    assert "python -m llmos.llm.install_model qwen2.5-coder-1.5b" in reason
    rows = tier_rows(machine(), cfg(home, LLMOS_PLANNER_GGUF=str(tmp_path / "absent.gguf")))
    assert [(r.tier.model, r.installed, r.fits) for r in rows] == [
        ("qwen2.5-coder-1.5b", False, True), ("smollm2-135m", True, True)]
    assert rows[0].size_bytes == 1_117_320_768      # the packaged size, before it is installed


def test_explicit_choice_wins(home, planner_file, tmp_path):
    big = machine()
    model, reason = choose_planner(big, cfg(home, LLMOS_PLANNER_MODEL="smollm2-135m",
                                            LLMOS_PLANNER_GGUF=str(planner_file)))
    assert model.name == "smollm2-135m" and "chosen by planner_model" in reason
    # any local GGUF path
    model, _ = choose_planner(machine(cores=1, avail=GiB), cfg(home, LLMOS_PLANNER_MODEL=str(planner_file)))
    assert model.kind == "gguf" and model.name == "planner"
    # a [[remote]] model, from the config file
    (home / "config.toml").write_text('planner_model = "big"\n[[remote]]\nname = "big"\n'
                                      'base_url = "http://127.0.0.1:9/v1"\nmodel = "qwen-72b"\n')
    model, _ = choose_planner(machine(cores=1, avail=GiB), cfg(home))
    assert model.kind == "remote" and model.remote_model == "qwen-72b"


def test_explicit_choice_that_cannot_be_served_says_how(home, tmp_path):
    with pytest.raises(ModelPackageMissing) as ei:
        choose_planner(machine(), cfg(home, LLMOS_PLANNER_MODEL="qwen2.5-coder-1.5b",
                                      LLMOS_PLANNER_GGUF=str(tmp_path / "absent.gguf")))
    assert "not installed" in str(ei.value) and "install_model" in ei.value.hint
    with pytest.raises(ModelNotFound):
        choose_planner(machine(), cfg(home, LLMOS_PLANNER_MODEL=str(tmp_path / "gone.gguf")))


def test_no_snapshot_reads_this_machine(home, planner_file):
    model, reason = choose_planner(None, cfg(home, LLMOS_PLANNER_GGUF=str(planner_file)))
    assert model.name in {t.model for t in TIERS} and reason.startswith(model.name + ": ")


def test_an_unreadable_planner_file_falls_back(home, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf" * 10)
    model, reason = choose_planner(machine(), cfg(home, LLMOS_PLANNER_GGUF=str(bad)))
    assert model.name == "smollm2-135m" and "not a readable GGUF" in reason
