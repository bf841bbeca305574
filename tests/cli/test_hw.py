"""`llmos hw` and `llmos alloc` on an app built with register() (fake HAL)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

import llmos.hal
from llmos.cli.hw import register
from llmos.clock import FakeClock
from llmos.errors import AllocError, InvalidArgument, NotFound
from llmos.hal.fake import FakeGpu, FakeHAL

runner = CliRunner()


@pytest.fixture
def app():
    a = typer.Typer()
    register(a)
    return a


@pytest.fixture
def fake_detect(monkeypatch):
    hal = FakeHAL(FakeClock(), gpus=[FakeGpu(name="NVIDIA Test GPU", power_w=75.0)])
    monkeypatch.setattr(llmos.hal, "detect", lambda *a, **k: hal)
    return hal


def test_hw_json_shows_devices_and_labelled_energy(app, fake_detect):
    r = runner.invoke(app, ["hw", "--json", "--interval", "0"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    kinds = [(d["kind"], d["name"]) for d in rep["devices"]]
    assert kinds == [("cpu", "Fake CPU"), ("gpu", "NVIDIA Test GPU")]
    assert rep["devices"][0]["cores"] == 8 and rep["devices"][1]["power_w"] == 75.0
    labels = {e["domain"]: e["label"] for e in rep["energy"]}
    assert labels == {"model:cpu": "modelled", "nvml:gpu:0": "measured"}


def test_hw_table(app, fake_detect):
    r = runner.invoke(app, ["hw", "--interval", "0"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "NVIDIA Test GPU" in r.output and "modelled" in r.output and "measured" in r.output


def test_hw_on_this_machine(app):
    r = runner.invoke(app, ["hw", "--json", "--interval", "0.05"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["devices"][0]["kind"] == "cpu" and rep["energy"]


def test_alloc_example_seed(app):
    r = runner.invoke(app, ["alloc", "--example", "seed", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["seed_totals"]["cost"] == 9
    assert any("not cost-optimal" in s for s in rep["summary"])
    assert any("per-task" in s for s in rep["interpretation"])
    free_cost = next(c for c in rep["cases"] if c["objective"] == "cost"
                     and c["assumption"] == "no capacity limits")
    assert free_cost["solution"]["value"] == 6


def test_alloc_example_seed_table(app):
    r = runner.invoke(app, ["alloc", "--example", "seed"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "the unique optimum" in r.output and "Findings" in r.output and "per-task" in r.output


def test_alloc_yaml_file(app, tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("""
objective: cost
resources:
  - {name: R1, capacity: {tasks: 1}}
  - {name: R2}
tasks:
  - {name: T1, demand: {tasks: 1}, cost: {R1: 1, R2: 2}}
  - {name: T2, demand: {tasks: 1}, cost: {R1: 3, R2: 5}}
""")
    r = runner.invoke(app, ["alloc", str(f), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["assignment"] == {"T1": "R2", "T2": "R1"} and out["value"] == 5
    assert out["binding"][0]["resource"] == "R1"
    r = runner.invoke(app, ["alloc", str(f)], env={"COLUMNS": "200"})
    assert "R1 capacity tasks: 1 of 1" in r.output


def test_alloc_json_file_objective_override(app, tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"resources": [{"name": "a", "speed": 2}, {"name": "b", "speed": 1}],
                             "tasks": [{"name": "x", "work": 4}]}))
    r = runner.invoke(app, ["alloc", str(f), "-o", "latency", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["assignment"] == {"x": "a"}


def test_alloc_errors_are_project_errors(app, tmp_path):
    r = runner.invoke(app, ["alloc", str(tmp_path / "nope.yaml")])
    assert isinstance(r.exception, NotFound)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = runner.invoke(app, ["alloc", str(bad)])
    assert isinstance(r.exception, InvalidArgument) and "not valid JSON" in str(r.exception)
    r = runner.invoke(app, ["alloc", "--example", "other"])
    assert isinstance(r.exception, InvalidArgument)
    r = runner.invoke(app, ["alloc"])
    assert isinstance(r.exception, InvalidArgument)
    over = tmp_path / "over.json"
    over.write_text(json.dumps({"objective": "cost", "resources": [{"name": "R1", "capacity": {"s": 1}}],
                                "tasks": [{"name": f"T{i}", "demand": {"s": 1}, "cost": {"R1": 1}}
                                          for i in range(2)]}))
    r = runner.invoke(app, ["alloc", str(over)])
    assert isinstance(r.exception, AllocError) and "R1" in str(r.exception)
    noobj = tmp_path / "noobj.json"
    noobj.write_text(json.dumps({"resources": [{"name": "R1"}], "tasks": [{"name": "T"}]}))
    r = runner.invoke(app, ["alloc", str(noobj)])
    assert isinstance(r.exception, InvalidArgument) and r.exception.field == "objective"
