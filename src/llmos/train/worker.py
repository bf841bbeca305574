"""One training worker (rank): ``python -m llmos.train.worker``, started by a launcher.

Reads the torchrun-style environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) plus ``LLMOS_TRAIN_DIR`` (the job folder, whose
``spec.json`` it trains) and ``LLMOS_TRAIN_PARENT`` (the launcher's pid), joins the process
group (gloo on CPU, NCCL on GPU) and runs ``recipes.train``.

SIGTERM asks for a stop at the next step boundary: every rank learns of it through the
step's all-reduce, the checkpoint is written, and the worker exits with
``EXIT_PREEMPTED`` (75). A worker whose launcher died (its parent pid changed) stops at
once without writing (``EXIT_ORPHANED``), so a killed daemon never leaves ranks training
beside the ones its successor starts. Any other failure exits 1 with one line on stderr.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import sys


def main() -> int:
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    parent = int(os.environ.get("LLMOS_TRAIN_PARENT", "0") or 0)
    stop = {"asked": False}

    def on_term(signum: int, frame: object) -> None:
        stop["asked"] = True
    signal.signal(signal.SIGTERM, on_term)

    import torch
    import torch.distributed as dist

    from llmos.train import recipes
    from llmos.train.checkpoint import JobDir
    from llmos.train.spec import parse_spec

    job = JobDir(os.environ["LLMOS_TRAIN_DIR"])
    spec = parse_spec(json.loads(job.spec_file.read_text()))
    torch.set_num_threads(max(1, int(spec.demand.cores // spec.workers) or 1))
    device = recipes.pick_device(spec, local_rank)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    try:
        return recipes.train(spec, job, rank, world, lambda: stop["asked"], device,
                             orphaned=lambda: bool(parent) and os.getppid() != parent)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:   # one line for the launcher (it keeps the log's tail)
        print(f"train worker {os.environ.get('RANK', '?')}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
