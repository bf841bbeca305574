"""Training jobs: models trained as kernel processes (data and model parallel).

Map:
- ``spec``: the training spec (TOML/JSON/YAML) and its field-by-field checks.
- ``checkpoint``: the job folder and the atomic checkpoint format it resumes from.
- ``job``: the ``train`` job type the kernel runs (register, admit, submit, the runner
  that launches ranks, yields to urgent work and relaunches from the checkpoint).
- ``launcher``: one worker process per rank on this machine (torchrun-style env).
- ``ray_launcher``: the same calls over Ray Train's ``TorchTrainer`` workers, chosen when
  the kernel drives a Ray cluster (imports Ray; checkpoints still go to the job folder).
- ``worker`` / ``recipes``: what each rank runs: DDP (gloo on CPU, NCCL on GPU) or FSDP
  (sharded parameters). Only these two import torch (the ``train`` extra).
"""

from __future__ import annotations

from llmos.train.checkpoint import Checkpoint, JobDir, latest, read_progress
from llmos.train.job import JOB_TYPE, TrainError, admit, job_spec, register, submit
from llmos.train.spec import TrainSpec, load_spec, parse_spec

__all__ = ["TrainSpec", "load_spec", "parse_spec", "JobDir", "Checkpoint", "latest", "read_progress",
           "JOB_TYPE", "TrainError", "admit", "job_spec", "register", "submit"]
