"""``llmos train SPEC``: submit a training job as a kernel process and follow it.

The spec (TOML, JSON or YAML; see ``llmos.train.spec``) is checked field by field first
(``--check`` stops there). Then the job is admitted against this machine (cores, memory,
GPUs: a job asking for more is refused, the resource named) and submitted as a ``job``
process of type ``train``: to the daemon when one serves the state directory, else to a
kernel booted in this process. Submitting the same spec again is the same job: a job
that was interrupted (Ctrl-C, ``kill -9``) resumes from its last checkpoint;
``--fresh`` starts over.

The command follows the job's progress (step, loss) until it ends; with the daemon,
``--detach`` returns at once (``llmos ps`` and ``llmos explain PID`` show it). Ctrl-C
stops following: the daemon's job keeps running; an in-process job is checkpointed and
resumes when the same command runs again.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import typer

from llmos.cli import state

__all__ = ["register", "train"]

POLL_S = 0.5


def _need_torch() -> None:
    from llmos.train.job import TrainError

    if importlib.util.find_spec("torch") is None:
        raise TrainError("training needs PyTorch, which is not installed",
                         hint="pip install 'llmos[train]' (pins torch==2.13.0)")


def _describe(spec: Any) -> str:
    return (f"{spec.name}: {spec.recipe} on {spec.workers} worker(s), {spec.model.kind} model, "
            f"{spec.dataset.kind} data, {spec.steps} steps of {spec.batch_size} rows, "
            f"priority {spec.priority}{', preemptible' if spec.preemptible else ''}")


def train(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="Training spec (.toml, .json, .yaml)."),
    check: bool = typer.Option(False, "--check", help="Check the spec and exit."),
    detach: bool = typer.Option(False, "--detach", help="With a daemon: submit and return (print the pid)."),
    fresh: bool = typer.Option(False, "--fresh", help="Start over instead of resuming the same spec's job."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the final line."),
) -> None:
    """Train a model as a kernel process: checkpointed, preemptible, resumable.

    Example: llmos train examples/mlp-ddp.toml
    """
    from llmos.train.spec import load_spec

    spec = load_spec(spec_path)
    if check:
        typer.echo(f"ok: {_describe(spec)}")
        return
    _need_torch()
    cfg = state.config()
    rc = asyncio.run(_run(cfg, spec, detach=detach, fresh=fresh, quiet=quiet))
    if rc:
        raise typer.Exit(rc)


async def _run(cfg: Any, spec: Any, *, detach: bool, fresh: bool, quiet: bool) -> int:
    from llmos.cli.daemon import find_daemon

    client = await find_daemon(cfg, notice=lambda m: typer.echo(m, err=True))
    if client is not None:
        try:
            return await _via_daemon(client, cfg, spec, detach=detach, fresh=fresh, quiet=quiet)
        finally:
            await client.aclose()
    if detach:
        from llmos.errors import InvalidArgument

        raise InvalidArgument("--detach: no daemon serves this state directory", field="--detach",
                              expected="a running daemon (llmos serve)", hint="start one with llmos serve")
    return await _in_process(cfg, spec, fresh=fresh, quiet=quiet)


async def _via_daemon(client: Any, cfg: Any, spec: Any, *, detach: bool, fresh: bool, quiet: bool) -> int:
    from llmos.hal import detect
    from llmos.train.job import admit, job_spec

    hal = await asyncio.to_thread(detect)
    try:
        admit(spec, hal.snapshot())
    finally:
        hal.close()
    body, job = job_spec(spec, cfg.home)
    key = f"train:{spec.name}:{spec.key}" + (f":{time.time_ns()}" if fresh else "")
    if fresh and job.path.exists():
        import shutil

        shutil.rmtree(job.path)
    job.create(spec.to_dict())
    proc = await client.spawn("job", body, priority=spec.priority, idempotency_key=key)
    pid = proc["pid"]
    if not quiet:
        typer.echo(f"pid {pid}: {_describe(spec)} (daemon; folder {job.path})", err=True)
    if detach:
        typer.echo(str(pid))
        return 0

    async def state_of() -> dict:
        return await client.get_process(pid)
    try:
        return await _follow(job, state_of, quiet=quiet)
    except asyncio.CancelledError:                 # Ctrl-C stops following, not the job
        typer.echo(f"stopped following: training pid {pid} goes on in the daemon "
                   f"(llmos ps; llmos kill {pid} stops it)", err=True)
        raise


async def _in_process(cfg: Any, spec: Any, *, fresh: bool, quiet: bool) -> int:
    from llmos.cli.daemon import boot_kernel
    from llmos.train.job import job_dir_for, submit

    kernel = await boot_kernel(cfg)
    job = job_dir_for(spec, cfg.home)
    pid: int | None = None
    stopped = False
    try:
        pid = await submit(kernel, spec, fresh=fresh)
        if not quiet:
            typer.echo(f"pid {pid}: {_describe(spec)} (in-process; folder {job.path})", err=True)

        async def state_of() -> dict:
            return kernel.view(kernel.procs.get(pid))
        return await _follow(job, state_of, quiet=quiet)
    except asyncio.CancelledError:                 # Ctrl-C: the ranks checkpoint as the kernel stops
        stopped = True
        raise
    finally:
        await kernel.shutdown()
        if stopped and pid is not None:
            from llmos.train.checkpoint import latest

            ck = latest(job)
            typer.echo(f"stopped: training pid {pid} checkpointed at step {ck.step if ck else 0} of "
                       f"{spec.steps}; the same command resumes it", err=True)


async def _follow(job: Any, state_of: Any, *, quiet: bool) -> int:
    """Print new progress lines until the process ends; the exit code says how it ended."""
    from llmos.train.checkpoint import read_progress

    shown = 0
    reason = ""
    while True:
        p = await state_of()
        if not quiet:
            rows = read_progress(job)
            for r in rows[shown:] if len(rows) > shown else []:
                typer.echo(f"step {r['step']:>6}  loss {r['loss']:.4f}", err=True)
            shown = len(rows)
            if p.get("reason") != reason and str(p.get("reason", "")).startswith(("yielded", "resumed")):
                typer.echo(f"  {p['reason']}", err=True)
            reason = p.get("reason") or ""
        if p.get("state") in ("succeeded", "failed", "killed"):
            break
        await asyncio.sleep(POLL_S)
    if p["state"] == "succeeded":
        res = p.get("result") or {}
        typer.echo(json.dumps({"pid": p["pid"], "state": "succeeded", **res}))
        return 0
    err = p.get("error") or {}
    msg = err.get("message") or p.get("reason") or p["state"]
    typer.secho(f"error: training pid {p['pid']} {p['state']}: {msg}", fg="red", err=True)
    if err.get("hint"):
        typer.echo(f"hint: {err['hint']}", err=True)
    return 1


def register(app: typer.Typer) -> None:
    app.command()(train)
