"""The checkpoint format: atomic, newest complete one wins, pruned (default tier, no torch)."""

from __future__ import annotations

import json

from llmos.train.checkpoint import FORMAT, JobDir, checkpoints, latest, read_progress, write_checkpoint


def _writer(payload: bytes):
    def write(folder):
        (folder / "model.pt").write_bytes(payload)
        (folder / "optim.pt").write_bytes(payload * 2)
    return write


def test_write_latest_and_prune(tmp_path):
    job = JobDir(tmp_path / "job")
    job.create({"recipe": "ddp"})
    assert latest(job) is None
    for step in (10, 20, 30):
        ck = write_checkpoint(job, step, [1.0 / (i + 1) for i in range(step)], write=_writer(b"w" * step),
                              keep=2, recipe="ddp", world_size=2)
        assert ck.path.name == f"step-{step:08d}"
    assert [c.step for c in checkpoints(job)] == [20, 30]            # keep = 2
    ck = latest(job)
    meta = json.loads((ck.path / "meta.json").read_text())
    assert meta["format"] == FORMAT and meta["step"] == 30 and len(meta["losses"]) == 30
    assert meta["files"] == {"model.pt": 30, "optim.pt": 60} and meta["world_size"] == 2
    assert ck.losses[0] == 1.0 and not list(job.ckpt.glob("*.tmp"))


def test_incomplete_checkpoints_are_never_chosen(tmp_path):
    job = JobDir(tmp_path / "job")
    job.create({})
    write_checkpoint(job, 10, [0.5] * 10, write=_writer(b"x"), keep=5)
    write_checkpoint(job, 20, [0.5] * 20, write=_writer(b"x"), keep=5)
    write_checkpoint(job, 30, [0.5] * 30, write=_writer(b"x"), keep=5)
    (job.ckpt / "step-00000040.tmp").mkdir()                          # a crash mid-write
    (job.ckpt / "step-00000030" / "optim.pt").write_bytes(b"")        # a file cut short
    (job.ckpt / "step-00000020" / "meta.json").write_text("{bad")     # meta damaged
    (job.ckpt / "step-00000050").mkdir()                              # no meta at all
    assert latest(job).step == 10
    write_checkpoint(job, 40, [0.1] * 40, write=_writer(b"y"), keep=5)   # the .tmp of a crash is replaced
    assert latest(job).step == 40


def test_progress_trim_and_last_line_wins(tmp_path):
    job = JobDir(tmp_path / "job")
    job.create({})
    with open(job.progress, "w") as f:
        for s in (1, 2, 3, 4, 5):
            f.write(json.dumps({"step": s, "loss": float(s)}) + "\n")
        f.write('{"step": 6, "lo')                                    # cut by a kill -9
    job.trim_progress(3)                                              # resumed from step 3
    with open(job.progress, "a") as f:
        f.write(json.dumps({"step": 4, "loss": 40.0}) + "\n")
    rows = read_progress(job)
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[-1]["loss"] == 40.0
    job.event("yield", step=3)
    assert job.read_events()[-1]["event"] == "yield"
