"""The ``embedder`` recipe: its spec, its data (the shell's library and approved plans), the
retrieval measure and the numpy adapter (default tier); the job itself trains with torch
(``-m train``): data frozen in the job folder, adapter kept in the state directory, the
held-out retrieval measured before and after, a too-small library refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmos.errors import InvalidArgument
from llmos.train import plans
from llmos.train.spec import ADAPTER_RANK, parse_spec

DATA = Path(__file__).parents[2] / "bench" / "data" / "plan_shapes.jsonl"


# ── default tier ───────────────────────────────────────────────────────────
def test_embedder_spec_defaults_and_round_trip():
    s = parse_spec({"recipe": "embedder", "dataset": {"kind": "approved"}})
    assert (s.model.kind, s.model.hidden, s.workers, s.dataset.kind) == ("adapter", ADAPTER_RANK, 1, "approved")
    assert s.to_dict()["dataset"] == {"kind": "approved"} and parse_spec(s.to_dict()) == s


@pytest.mark.parametrize(("data", "field"), [
    ({"recipe": "embedder", "dataset": {"kind": "synthetic"}}, "dataset.kind"),
    ({"recipe": "embedder", "workers": 2, "dataset": {"kind": "approved"}}, "workers"),
    ({"recipe": "embedder", "model": {"kind": "mlp"}, "dataset": {"kind": "approved"}}, "model.kind"),
    ({"recipe": "embedder", "dataset": {"kind": "approved", "path": "x.jsonl"}}, "dataset.path"),
    ({"recipe": "ddp", "dataset": {"kind": "approved"}}, "dataset.kind"),
    ({"recipe": "ddp", "model": {"kind": "adapter"}, "dataset": {"kind": "synthetic"}}, "model.kind"),
])
def test_bad_embedder_fields_are_named(data, field):
    with pytest.raises(InvalidArgument) as e:
        parse_spec(data)
    assert e.value.field == field and len(str(e.value.message).splitlines()) == 1


def test_library_and_approved_plans_are_read_as_shapes(tmp_path):
    from llmos.shell.store import ShellStore

    lib = plans.library()
    assert lib and all(e.shape and e.source == "library" for e in lib)
    assert any(e.shape == "files.read>llm" for e in lib)
    db = tmp_path / "shell.db"
    assert plans.approved(db) == []                       # no file: nothing approved yet
    store = ShellStore(db)
    for run, req, sig, bad in [("r1", "sum the totals in a.csv", "data.stat", 0),
                               ("r2", "delete everything", "files.delete", 1)]:
        store.db.execute("INSERT INTO approved (run, request, facts, plan, signature, bad, created) "
                         "VALUES (?, ?, '[]', '{}', ?, ?, 0)", (run, req, sig, bad))
    store.close()
    got = plans.approved(db)
    assert got == [plans.PlanExample("sum the totals in a.csv", "data.stat", "approved")]   # never a bad one


def test_jsonl_lines_are_checked(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"request": "a", "shape": "calc.eval"}\n\n{"request": "b"}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:3: expected a JSON object with request and shape"):
        plans.read_jsonl(f)
    assert len(plans.read_jsonl(DATA)) == 176


def test_split_is_seeded_and_by_example():
    rows = plans.read_jsonl(DATA)
    a, b = plans.split(rows, 0.3, 7)
    assert plans.split(rows, 0.3, 7) == (a, b) and plans.split(rows, 0.3, 8) != (a, b)
    assert len(b) == round(len(rows) * 0.3) and not {e.request for e in a} & {e.request for e in b}


def test_accuracy_counts_hits_and_skips_shapes_the_library_lacks():
    lib = ["x", "y", "y", "z"]
    scores = np.array([[0.9, 0.1, 0.1, 0.0],              # x: top-1 hit
                       [0.9, 0.1, 0.8, 0.0],              # y: second, a top-3 hit only
                       [0.5, 0.5, 0.5, 0.5],              # z: all tied; library order decides: miss
                       [1.0, 1.0, 1.0, 1.0]])             # w: no such shape in the library
    acc = plans.accuracy(["x", "y", "z", "w"], lib, scores)
    assert acc == {"top1": round(1 / 3, 4), "top3": round(2 / 3, 4), "top3_shapes": 1.0, "queries": 3,
                   "unanswerable": 1}
    assert plans.word_score(["sum the sales"], ["sum the sales", "plot views"]).tolist() == [[1.0, 0.0]]


def test_an_untrained_adapter_is_the_identity_and_survives_a_save(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ad = plans.Adapter(rng.standard_normal((8, 2)), np.zeros((2, 8)), {"rank": 2})
    assert np.allclose(ad.apply(x), x, atol=1e-6)
    ad.b[:] = 1.0
    path = plans.adapter_path(tmp_path)
    ad.save(path)
    back = plans.Adapter.load(path)
    assert back.meta == {"rank": 2} and np.allclose(back.apply(x), ad.apply(x))
    assert np.allclose(np.linalg.norm(back.apply(x), axis=1), 1.0, atol=1e-5)


# ── the job (torch) ────────────────────────────────────────────────────────
@pytest.mark.train
async def test_the_embedder_job_trains_measures_and_keeps_its_adapter(config):
    pytest.importorskip("torch")
    from llmos.kernel import Kernel
    from llmos.train.checkpoint import JobDir, latest
    from llmos.train.job import submit

    k = await Kernel.boot(config, hal=False)
    try:
        spec = parse_spec({"name": "plans", "recipe": "embedder", "steps": 20, "checkpoint_every": 10,
                           "seed": 3, "dataset": {"kind": "file", "path": str(DATA)}})
        pid = await submit(k, spec)
        p, _ = await k.wait(pid, timeout_s=300)
        assert p.state.name == "SUCCEEDED", p.error
        r = p.result
        job = JobDir(r["dir"])
        assert r["steps"] == 20 and latest(job).step == 20
        frozen = plans.read_jsonl(job.path / "plans.jsonl")    # the data the job saw, kept with it
        assert len(frozen) == 176 + len(plans.library())
        ev = r["eval"]
        assert ev["held_out"] == round(len(frozen) * 0.3) and ev["after"]["queries"] > 40
        for m in ("words", "before", "after"):
            assert 0.0 <= ev[m]["top1"] <= ev[m]["top3"] <= 1.0
        ad = plans.Adapter.load(plans.adapter_path(config.home))
        assert ad.meta["spec_key"] == spec.key and ad.meta["eval"]["after"] == ev["after"]
        assert float(np.abs(ad.b).max()) > 0                     # trained: no longer the identity
        assert r["final_loss"] < r["first_loss"]
    finally:
        await k.shutdown()


@pytest.mark.train
async def test_too_few_approved_plans_fail_the_job_in_one_line(config):
    pytest.importorskip("torch")
    from llmos.kernel import Kernel
    from llmos.train.job import submit

    k = await Kernel.boot(config, hal=False)                   # no shell.db: the library alone
    try:
        pid = await submit(k, parse_spec({"name": "plans", "recipe": "embedder", "steps": 5,
                                          "dataset": {"kind": "approved"}}))
        p, _ = await k.wait(pid, timeout_s=300)
        assert p.state.name == "FAILED"
        msg = p.error["message"]
        assert "too few to learn from" in msg and "approve more plans" in msg and len(msg.splitlines()) == 1
        assert json.loads((Path(p.spec["args"]["job_dir"]) / "plans.jsonl").read_text().splitlines()[0])
    finally:
        await k.shutdown()
