"""The ``embedder`` recipe: a small adapter on the MiniLM embeddings, trained on the person's
approved plans so that retrieval finds the plans of the same shape; imports torch.

Map:
- ``examples(spec, job)``: the job's data, frozen in ``plans.jsonl`` in the job folder at
  its first start (a resumed job trains on the same rows): the shell's example library,
  plus the approved plans in ``$LLMOS_HOME/shell.db`` (``dataset.kind = approved``) or the
  ``{"request", "shape"}`` lines of ``dataset.path``.
- ``train(spec, job, rank, world, stop, device)``: split by example (``HOLDOUT`` held out,
  seeded by ``spec.seed``), embed every request once, then step: ``batch_size`` anchors
  from the library split against all of it, a supervised contrastive loss (positives:
  requests whose plans have the same tool sequence); checkpoints as the other recipes;
  at the end, top-1 / top-3 same-shape retrieval of the held-out requests before (plain
  MiniLM, and the shell's shared words) and after, in ``eval.json``, and the adapter in
  ``$LLMOS_HOME/embedder/plans-adapter.npz`` (numpy; the shell needs no torch to use it).

NOTE (why an adapter on the embedder, not a LoRA on the planner). A LoRA for the GGUF
planner (Qwen2.5-Coder 1.5B) would need the unquantized weights and hours of CPU here;
what the person's approvals can teach cheaply is which past plan fits a new request.
The adapter is ``normalize(x + x A B)`` with A [384, r], B [r, 384], B = 0 at the start,
so an untrained adapter is plain MiniLM. The library is small (tens to hundreds of
requests): a low rank, few steps and weight decay keep it from learning the requests by
heart.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmos.train import plans
from llmos.train.checkpoint import JobDir, latest, write_checkpoint
from llmos.train.spec import TrainSpec

__all__ = ["train", "examples", "home_of", "HOLDOUT", "TEMPERATURE", "WEIGHT_DECAY", "MIN_SHAPES"]

HOLDOUT = 0.3              # share of the examples held out to measure retrieval
TEMPERATURE = 0.05         # of the contrastive softmax over cosine similarities
WEIGHT_DECAY = 0.01        # AdamW's, on A and B
MIN_SHAPES = 2             # shapes with two or more library requests needed to train at all
EXIT_DONE, EXIT_PREEMPTED, EXIT_ORPHANED = 0, 75, 70


def home_of(job: JobDir) -> Path:
    """The state directory a job folder lives in (``$LLMOS_HOME/train/<name>-<key>``)."""
    return job.path.parent.parent


def examples(spec: TrainSpec, job: JobDir) -> list[plans.PlanExample]:
    frozen = job.path / "plans.jsonl"
    if frozen.is_file():
        return plans.load_snapshot(frozen)
    rows = plans.library()
    if spec.dataset.kind == "approved":
        rows += plans.approved(home_of(job) / "shell.db")
    else:
        rows += plans.read_jsonl(spec.dataset.path or "")
    seen: set[str] = set()
    out = []
    for e in rows:                      # one row per request (the latest approval of it wins)
        if e.request not in seen:
            seen.add(e.request)
            out.append(e)
    plans.snapshot(frozen, out)
    return out


class _Adapter(torch.nn.Module):
    def __init__(self, dim: int, rank: int, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.a = torch.nn.Parameter(torch.randn(dim, rank, generator=g) * 0.01)   # [dim, r]
        self.b = torch.nn.Parameter(torch.zeros(rank, dim))                       # [r, dim]

    def forward(self, x: torch.Tensor) -> torch.Tensor:                          # x: [n, dim]
        y = x + (x @ self.a) @ self.b
        return y / y.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _loss(f: torch.Tensor, anchors: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Supervised contrastive loss of ``anchors`` (rows of f) against every library row."""
    logits = f[anchors] @ f.T / TEMPERATURE                              # [b, n]
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[torch.arange(len(anchors)), anchors] = True
    logits = logits.masked_fill(self_mask, -1e9)
    logp = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = same[anchors] & ~self_mask
    has = pos.any(dim=1)
    if not bool(has.any()):
        return (f.sum() * 0.0)
    return -(logp.masked_fill(~pos, 0.0).sum(dim=1)[has] / pos.sum(dim=1)[has]).mean()


def train(spec: TrainSpec, job: JobDir, rank: int, world: int, stop: Callable[[], bool],
          device: torch.device, orphaned: Callable[[], bool] = lambda: False) -> int:
    from llmos.llm.embed import default_embedder
    from llmos.train.recipes import batch_indices

    rows = examples(spec, job)
    lib, held = plans.split(rows, HOLDOUT, spec.seed)
    shapes = [e.shape for e in lib]
    counts = {s: shapes.count(s) for s in set(shapes)}
    if sum(1 for c in counts.values() if c >= 2) < MIN_SHAPES:
        raise ValueError(f"{len(rows)} plans, too few to learn from: the library part needs {MIN_SHAPES} "
                         "shapes (tool sequences) with two requests or more; approve more plans")
    embedder = default_embedder()
    x_lib = embedder.embed([e.request for e in lib])                     # [n, 384] unit rows
    x_held = embedder.embed([e.request for e in held]) if held else np.zeros((0, x_lib.shape[1]), np.float32)
    lab = np.asarray(shapes)
    same = torch.from_numpy(lab[:, None] == lab[None, :])                # [n, n]
    xt = torch.from_numpy(x_lib)
    model = _Adapter(x_lib.shape[1], spec.model.hidden, spec.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=WEIGHT_DECAY)
    ck = latest(job)
    start, losses = 0, []
    if ck is not None:
        model.load_state_dict(torch.load(ck.file("model.pt"), map_location="cpu", weights_only=True))
        opt.load_state_dict(torch.load(ck.file("optim.pt"), map_location="cpu", weights_only=True))
        start, losses = ck.step, list(ck.losses)
    job.trim_progress(start)
    job.event("workers", step=start, world_size=1, resumed=ck is not None, recipe=spec.recipe,
              params_local=sum(p.numel() for p in model.parameters()), examples=len(rows),
              library=len(lib), held_out=len(held))

    def save(step: int) -> None:
        t0 = time.perf_counter()

        def write(folder: Path) -> None:
            torch.save(model.state_dict(), folder / "model.pt")
            torch.save(opt.state_dict(), folder / "optim.pt")
        write_checkpoint(job, step, losses, write=write, keep=spec.keep_checkpoints, recipe=spec.recipe,
                         world_size=1, spec_key=spec.key)
        job.event("checkpoint", step=step, seconds=round(time.perf_counter() - t0, 4))

    t_start = time.perf_counter()
    batch = min(spec.batch_size, len(lib))
    for step in range(start, spec.steps):
        if orphaned():
            return EXIT_ORPHANED
        anchors = torch.from_numpy(batch_indices(spec, step, len(lib))[:batch])
        loss = _loss(model(xt), anchors, same)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss))
        done = step + 1
        with open(job.progress, "a") as f:
            f.write(json.dumps({"step": done, "loss": losses[-1], "t": round(time.perf_counter() - t_start, 4),
                                "pid": os.getpid()}) + "\n")
        stopping = stop() and done < spec.steps
        if done % spec.checkpoint_every == 0 or done == spec.steps or stopping:
            save(done)
        if stopping:
            return EXIT_PREEMPTED
    _finish(spec, job, model, lib, held, x_lib, x_held, embedder.name)
    return EXIT_DONE


def _finish(spec: TrainSpec, job: JobDir, model: _Adapter, lib: list, held: list, x_lib: np.ndarray,
            x_held: np.ndarray, embedder_name: str) -> dict[str, Any]:
    """Measure retrieval of the held-out requests before and after; keep the adapter."""
    adapter = plans.Adapter(model.a.detach().numpy(), model.b.detach().numpy())
    qs, ls = [e.shape for e in held], [e.shape for e in lib]
    result = {
        "words": plans.accuracy(qs, ls, plans.word_score([e.request for e in held], [e.request for e in lib])),
        "before": plans.accuracy(qs, ls, plans.cosine(x_held, x_lib)),
        "after": plans.accuracy(qs, ls, plans.cosine(adapter.apply(x_held), adapter.apply(x_lib))),
        "library": len(lib), "held_out": len(held), "shapes": len(set(ls)), "seed": spec.seed,
    }
    adapter.meta = {"job": str(job.path), "spec_key": spec.key, "embedder": embedder_name,
                    "rank": spec.model.hidden, "trained_on": len(lib), "eval": result, "saved_s": time.time()}
    path = plans.adapter_path(home_of(job))
    adapter.save(path)
    result["adapter"] = str(path)
    tmp = job.path / "eval.json.tmp"
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(job.path / "eval.json")
    job.event("eval", **{k: result[k] for k in ("words", "before", "after")})
    return result
