"""Recipes: the training loop one worker (rank) runs; imports torch (the ``train`` extra).

Map:
- ``load_data(spec)``: the dataset as numpy arrays (x, y); synthetic data is a function of
  ``dataset.seed`` only, so every rank builds the same rows without talking.
- ``batch_indices(spec, step, n)``: the rows of global step ``step``: epoch-wise
  permutations seeded by ``(seed, epoch)``; a resumed job sees the same order.
- ``build_model(spec, x, classes)``: a tiny MLP or transformer encoder, initialized from
  ``spec.seed`` (identical on every rank).
- ``wrap(model, spec, ...)``: ``ddp`` -> ``DistributedDataParallel`` (gradients averaged);
  ``fsdp`` -> FSDP2 ``fully_shard`` on each block and the root (parameters sharded
  across ranks, gathered per layer for compute).
- ``train(spec, job, rank, world, stop)``: resume from the newest checkpoint, then step;
  each step all-reduces (loss × rows, rows, stop flag), so every rank agrees on the
  global loss and on when to stop; checkpoints every ``checkpoint_every`` steps, at the
  end, and when any rank was asked to stop. Returns ``EXIT_DONE`` or ``EXIT_PREEMPTED``.

NOTE (determinism). The loss curve is a function of the spec: init from ``seed``, data
order from ``(seed, epoch)``, no dropout, deterministic algorithms, the same per-rank
split of each global batch (``rows[rank::world]``) and the optimizer's state saved with
the weights. So a job killed at step 47 and resumed from its step-40 checkpoint runs
steps 41..47 again and gets the losses the uninterrupted run got.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from llmos.train.checkpoint import JobDir, latest, write_checkpoint
from llmos.train.spec import TrainSpec

__all__ = ["load_data", "batch_indices", "build_model", "wrap", "train", "pick_device", "EXIT_DONE",
           "EXIT_PREEMPTED", "EXIT_ORPHANED"]

EXIT_DONE = 0
EXIT_PREEMPTED = 75            # EX_TEMPFAIL: stopped at a step boundary, checkpoint saved
EXIT_ORPHANED = 70             # the launcher died: stop at once, write nothing


# ── data ───────────────────────────────────────────────────────────────────
def load_data(spec: TrainSpec) -> tuple[np.ndarray, np.ndarray, int]:
    """(x, y, classes). x: float32 [n, features] (mlp) or int64 [n, seq] (transformer)."""
    d = spec.dataset
    if d.kind == "synthetic":
        rng = np.random.default_rng(d.seed)
        if spec.model.kind == "transformer":
            x = rng.integers(0, spec.model.vocab, size=(d.samples, d.features), dtype=np.int64)
            y = (x[:, 0] + x[:, -1]) % d.classes                   # the first and last tokens decide
            return x, y.astype(np.int64), d.classes
        x = rng.standard_normal((d.samples, d.features)).astype(np.float32)
        w = rng.standard_normal((d.features, d.classes)).astype(np.float32)
        y = np.argmax(x @ w + 0.1 * rng.standard_normal((d.samples, d.classes)), axis=1)
        return x, y.astype(np.int64), d.classes
    return _read_file(Path(d.path or ""))


def _read_file(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path) as z:
            x, y = z["x"], z["y"]
    elif suffix == ".csv":
        rows = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2,
                          skiprows=1 if _has_header(path) else 0)
        x, y = rows[:, :-1], rows[:, -1]
    else:                                                          # .jsonl: {"x": [...], "y": int}
        xs, ys = [], []
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                xs.append(r["x"])
                ys.append(r["y"])
        x, y = np.asarray(xs), np.asarray(ys)
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y).astype(np.int64)
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y) or len(x) < 2 or y.min() < 0:
        raise ValueError(f"{path.name}: expected rows of numbers with a label >= 0 "
                         f"(got x {x.shape}, y {y.shape})")
    return x, y, int(y.max()) + 1


def _has_header(path: Path) -> bool:
    with open(path) as f:
        first = f.readline()
    try:
        [float(c) for c in first.strip().split(",")]
        return False
    except ValueError:
        return True


def batch_indices(spec: TrainSpec, step: int, n: int) -> np.ndarray:
    """Rows of global step ``step`` (0-based): positions step*B .. step*B+B-1 of the stream
    of epoch permutations."""
    b = spec.batch_size
    pos = np.arange(step * b, step * b + b)
    out = np.empty(b, dtype=np.int64)
    for epoch in np.unique(pos // n):
        perm = np.random.default_rng([spec.seed, int(epoch)]).permutation(n)
        sel = pos // n == epoch
        out[sel] = perm[pos[sel] % n]
    return out


# ── models ─────────────────────────────────────────────────────────────────
class TinyTransformer(nn.Module):
    def __init__(self, vocab: int, seq: int, d: int, heads: int, layers: int, classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(seq, d))
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(d, heads, dim_feedforward=2 * d, dropout=0.0, batch_first=True)
            for _ in range(layers))
        self.head = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:          # x: [B, seq] int64
        h = self.embed(x) + self.pos                              # [B, seq, d]
        for blk in self.blocks:
            h = blk(h)
        return self.head(h.mean(dim=1))                           # [B, classes]


def build_model(spec: TrainSpec, features: int, classes: int) -> nn.Module:
    torch.manual_seed(spec.seed)
    m = spec.model
    if m.kind == "transformer":
        return TinyTransformer(m.vocab, features, m.hidden, m.heads, m.layers, classes)
    layers: list[nn.Module] = []
    width = features
    for _ in range(m.layers):
        layers += [nn.Linear(width, m.hidden), nn.ReLU()]
        width = m.hidden
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


def wrap(model: nn.Module, spec: TrainSpec, device: torch.device, world: int) -> nn.Module:
    model.to(device)
    if spec.recipe == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (world,))
    blocks = model.blocks if isinstance(model, TinyTransformer) else [
        mod for mod in model if isinstance(mod, nn.Linear)]
    for blk in blocks:
        fully_shard(blk, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


# ── the loop ───────────────────────────────────────────────────────────────
def train(spec: TrainSpec, job: JobDir, rank: int, world: int, stop: Callable[[], bool],
          device: torch.device, orphaned: Callable[[], bool] = lambda: False) -> int:
    """Run steps until ``spec.steps`` (EXIT_DONE) or an agreed stop (EXIT_PREEMPTED)."""
    if spec.recipe == "embedder":                  # one process, its own loop (train.embedder)
        from llmos.train import embedder

        return embedder.train(spec, job, rank, world, stop, device, orphaned=orphaned)
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    torch.use_deterministic_algorithms(True, warn_only=True)
    x_all, y_all, classes = load_data(spec)
    n = len(x_all)
    model = wrap(build_model(spec, x_all.shape[1], classes), spec, device, world)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr)
    full = StateDictOptions(full_state_dict=True, cpu_offload=True)
    ck = latest(job)
    start, losses = 0, []
    if ck is not None:
        sd = torch.load(ck.file("model.pt"), map_location="cpu", weights_only=True)
        osd = torch.load(ck.file("optim.pt"), map_location="cpu", weights_only=True)
        set_model_state_dict(model, sd, options=StateDictOptions(full_state_dict=True))
        set_optimizer_state_dict(model, opt, osd, options=StateDictOptions(full_state_dict=True))
        start, losses = ck.step, list(ck.losses)
    local = sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in model.parameters())
    if rank == 0:
        job.trim_progress(start)
        job.event("workers", step=start, world_size=world, resumed=ck is not None, recipe=spec.recipe,
                  params_local=local)                             # FSDP: this rank's shard only

    def save(step: int) -> None:
        t0 = time.perf_counter()
        sd = get_model_state_dict(model, options=full)             # collective for FSDP
        osd = get_optimizer_state_dict(model, opt, options=full)
        if rank == 0:
            def write(folder: Path) -> None:
                torch.save(sd, folder / "model.pt")
                torch.save(osd, folder / "optim.pt")
            write_checkpoint(job, step, losses, write=write, keep=spec.keep_checkpoints,
                             recipe=spec.recipe, world_size=world, spec_key=spec.key)
        dist.barrier()
        if rank == 0:                                              # gathered, written, fsynced, renamed
            job.event("checkpoint", step=step, seconds=round(time.perf_counter() - t0, 4))

    loss_fn = nn.CrossEntropyLoss()
    t_start = time.perf_counter()
    for step in range(start, spec.steps):
        if orphaned():
            return EXIT_ORPHANED
        rows = batch_indices(spec, step, n)[rank::world]
        xb = torch.from_numpy(x_all[rows]).to(device)
        yb = torch.from_numpy(y_all[rows]).to(device)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        agree = torch.tensor([loss.item() * len(rows), float(len(rows)), 1.0 if stop() else 0.0],
                             dtype=torch.float64, device=device)
        dist.all_reduce(agree)
        g = float(agree[0] / agree[1])
        losses.append(g)
        done = step + 1
        if rank == 0:
            with open(job.progress, "a") as f:
                f.write(json.dumps({"step": done, "loss": g, "t": round(time.perf_counter() - t_start, 4),
                                    "pid": os.getpid()}) + "\n")
        stopping = float(agree[2]) > 0 and done < spec.steps
        if done % spec.checkpoint_every == 0 or done == spec.steps or stopping:
            save(done)
        if stopping:
            return EXIT_PREEMPTED
    return EXIT_DONE


def pick_device(spec: TrainSpec, local_rank: int) -> torch.device:
    if spec.device == "gpu":
        if not torch.cuda.is_available():
            raise RuntimeError("device = gpu, but torch sees no CUDA device")
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")

