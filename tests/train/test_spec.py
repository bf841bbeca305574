"""Training specs: every field checked, a bad one named in a one-line error (default tier)."""

from __future__ import annotations

import json

import pytest

from llmos.cli import main
from llmos.errors import InvalidArgument
from llmos.train.spec import DEFAULT_PRIORITY, WORKER_MEMORY_BYTES, load_spec, parse_spec

GOOD = {"recipe": "ddp", "workers": 2, "batch_size": 32, "dataset": {"kind": "synthetic"}}


def test_defaults_and_round_trip():
    s = parse_spec(GOOD, default_name="demo")
    assert (s.name, s.recipe, s.workers, s.per_worker_batch) == ("demo", "ddp", 2, 16)
    assert s.priority == DEFAULT_PRIORITY and s.preemptible
    assert s.demand.cores == 2 and s.demand.memory_bytes == 2 * WORKER_MEMORY_BYTES and s.demand.gpus == 0
    assert parse_spec(s.to_dict()) == s
    assert parse_spec({**GOOD, "priority": 0}).key == s.key          # priority does not change the curve
    assert parse_spec({**GOOD, "seed": 1}).key != s.key


@pytest.mark.parametrize(("data", "field"), [
    ({"recipe": "ddp"}, "dataset"),
    ({"dataset": {"kind": "synthetic"}}, "recipe"),
    ({**GOOD, "recipe": "pipeline"}, "recipe"),
    ({**GOOD, "stepz": 3}, "stepz"),
    ({**GOOD, "steps": 0}, "steps"),
    ({**GOOD, "steps": "10"}, "steps"),
    ({**GOOD, "lr": -1}, "lr"),
    ({**GOOD, "lr": float("nan")}, "lr"),
    ({**GOOD, "batch_size": 33}, "batch_size"),
    ({**GOOD, "workers": 0}, "workers"),
    ({**GOOD, "device": "tpu"}, "device"),
    ({**GOOD, "priority": 30}, "priority"),
    ({**GOOD, "preemptible": "yes"}, "preemptible"),
    ({**GOOD, "name": "../etc"}, "name"),
    ({**GOOD, "model": {"kind": "cnn"}}, "model.kind"),
    ({**GOOD, "model": {"kind": "transformer", "hidden": 10, "heads": 3}}, "model.heads"),
    ({**GOOD, "model": {"width": 3}}, "model.width"),
    ({**GOOD, "dataset": {}}, "dataset.kind"),
    ({**GOOD, "dataset": "data.csv"}, "dataset"),
    ({**GOOD, "dataset": {"kind": "web"}}, "dataset.kind"),
    ({**GOOD, "dataset": {"kind": "file"}}, "dataset.path"),
    ({**GOOD, "dataset": {"kind": "file", "path": "/nonexistent/x.csv"}}, "dataset.path"),
    ({**GOOD, "dataset": {"kind": "synthetic", "samples": 1}}, "dataset.samples"),
    ({**GOOD, "demand": {"cores": 0}}, "demand.cores"),
    ({**GOOD, "demand": {"gpus": 1}}, "demand.gpus"),
    ({**GOOD, "device": "gpu", "demand": {"gpus": 0}}, "demand.gpus"),
    ({**GOOD, "demand": {"disk": 1}}, "demand.disk"),
])
def test_bad_field_is_named(data, field):
    with pytest.raises(InvalidArgument) as e:
        parse_spec(data)
    assert e.value.field == field
    assert e.value.message.startswith(f"{field}:") and "\n" not in e.value.message


def test_file_dataset_resolved_against_the_spec(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,0\n3,4,1\n")
    (tmp_path / "s.toml").write_text('recipe = "ddp"\n[dataset]\npath = "d.csv"\n')
    s = load_spec(tmp_path / "s.toml")
    assert s.name == "s" and s.dataset.kind == "file" and s.dataset.path == str((tmp_path / "d.csv").resolve())
    bad = tmp_path / "bad.csv.txt"
    bad.write_text("x")
    with pytest.raises(InvalidArgument, match="dataset.path: unknown data format"):
        parse_spec({**GOOD, "dataset": {"path": str(bad)}})


@pytest.mark.parametrize(("name", "text"), [
    ("s.toml", 'recipe = "fsdp"\nsteps = 5\n[dataset]\nkind = "synthetic"\n'),
    ("s.json", json.dumps({"recipe": "fsdp", "steps": 5, "dataset": {"kind": "synthetic"}})),
    ("s.yaml", "recipe: fsdp\nsteps: 5\ndataset:\n  kind: synthetic\n"),
])
def test_three_formats(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    s = load_spec(tmp_path / name)
    assert (s.recipe, s.steps) == ("fsdp", 5)


@pytest.mark.parametrize(("name", "text", "words"), [
    ("s.toml", "recipe = \n", "does not parse as TOML"),
    ("s.json", "{", "does not parse as JSON"),
    ("s.ini", "x", "unknown format"),
    ("s.yaml", "- 1\n- 2\n", "expected a table"),
])
def test_unreadable_specs(tmp_path, name, text, words):
    (tmp_path / name).write_text(text)
    with pytest.raises(InvalidArgument, match=words):
        load_spec(tmp_path / name)


def test_cli_check_and_one_line_errors(tmp_path, home, capsys):
    good = tmp_path / "ok.toml"
    good.write_text('recipe = "ddp"\nworkers = 2\n[dataset]\nkind = "synthetic"\n')
    assert main(["train", str(good), "--check"]) == 0
    assert "ok: ok: ddp on 2 worker(s)" in capsys.readouterr().out
    for text, field in [('recipe = "ddp"\n', "dataset"), ('recipe = "zzz"\n[dataset]\nkind="synthetic"\n', "recipe"),
                        ('recipe = "ddp"\nbogus = 1\n[dataset]\nkind="synthetic"\n', "bogus")]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        rc = main(["train", str(bad)])
        out = capsys.readouterr()
        lines = [ln for ln in out.err.splitlines() if ln.strip()]
        assert rc == 1 and "Traceback" not in out.err
        assert lines[0].startswith(f"error: {field}:"), out.err
    assert main(["train", str(tmp_path / "missing.toml")]) == 1
    assert "error: SPEC: no such file" in capsys.readouterr().err


def test_cli_without_torch_says_which_extra(tmp_path, home, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    spec = tmp_path / "ok.toml"
    spec.write_text('recipe = "ddp"\n[dataset]\nkind = "synthetic"\n')
    assert main(["train", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "error: training needs PyTorch" in err and "llmos[train]" in err
