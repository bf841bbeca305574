"""Exec tools: python.run, python.run_file and shell.run, always inside the sandbox.

Risk EXEC (NETWORK when ``network`` is asked for, which also needs ``ctx.network``).
A run that exits 0 returns stdout, stderr, exit code and the workspace files it
created or changed. A non-zero exit raises ToolError; a run stopped by a limit raises
SandboxError with the reason; both carry the run as ``err.result`` (a dict). With no
sandbox available the tools refuse (SandboxError): they never run code unconfined.
The sandbox binds the workdir and write roots writable, read roots read-only, hides the
kernel's state; ``ctx.stop`` (proc.kill) kills the run; the workspace byte quota left
caps the size of any file the run writes (RLIMIT_FSIZE).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from llmos import params as P
from llmos.errors import NotFound, PermissionDenied, QuotaExceeded, SandboxError, ToolError
from llmos.tools.builtin._common import (
    PATH,
    TEXT_MAX_CHARS,
    boolean,
    integer,
    params,
    string,
    workspace_usage,
    write_text,
)
from llmos.tools.registry import Tool, ToolContext, ToolResult, overwrite_risk
from llmos.tools.sandbox import INPUTS_DIR, Sandbox, SandboxResult, default_sandbox
from llmos.tools.versioning import changing_tree
from llmos.types import Risk

TIMEOUT_MAX_S = 120            # longest timeout a call may ask for
SNAPSHOT_MAX_ENTRIES = 5000    # workspace entries compared before/after a run
CODE_MAX_CHARS = 100_000


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """path -> (mtime ns, size) for the workspace's files (links not followed, bounded)."""
    out: dict[str, tuple[int, int]] = {}
    stack = [root]
    while stack and len(out) < SNAPSHOT_MAX_ENTRIES:
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        if not e.name.startswith("."):
                            stack.append(Path(e.path))
                    elif e.is_file(follow_symlinks=False):
                        st = e.stat(follow_symlinks=False)
                        out[os.path.relpath(e.path, root)] = (st.st_mtime_ns, st.st_size)
        except OSError:
            continue
    return out


def _sandbox(ctx: ToolContext) -> Sandbox:
    return ctx.sandbox or default_sandbox()


def _execute(ctx: ToolContext, a: dict, command: list[str], what: str,
             inputs: dict[str, str] | None = None, written: list[str] | None = None) -> ToolResult:
    if a.get("network") and not ctx.network:
        raise PermissionDenied(f"{what}: agent {ctx.agent!r} has no network access",
                               reason="network was asked for without the network capability")
    sb = _sandbox(ctx)
    sb.check()
    ctx.resolve(ctx.workdir, "w", field="workdir")   # the sandbox binds the workdir writable
    limits = sb.limits
    if a.get("timeout_s"):
        limits = limits.scaled(a["timeout_s"])
    if ctx.workspace_bytes is not None:         # the quota left caps any one file the run writes
        left = ctx.workspace_bytes - workspace_usage(ctx.write_roots, ctx.workspace_bytes)
        if left <= 0:
            raise QuotaExceeded(f"{what}: the workspace holds its quota of {ctx.workspace_bytes} bytes",
                                hint="delete files the agent no longer needs, or ask for a larger quota")
        limits = replace(limits, fsize_bytes=min(limits.fsize_bytes, left))
    before = _snapshot(ctx.workdir)
    with changing_tree(ctx.workdir, "exec", max_bytes=P.VERSIONS_EXEC_MAX_BYTES):  # undo: the workdir
        res: SandboxResult = sb.run(command, workdir=ctx.workdir, network=bool(a.get("network")),
                                    limits=limits, inputs=inputs, read_roots=ctx.read_roots,
                                    write_roots=ctx.write_roots,
                                    hide=ctx.state.paths() if ctx.state else (), stop=ctx.stop)
    after = _snapshot(ctx.workdir)
    changed = sorted(set(written or []) | {p for p, v in after.items() if before.get(p) != v})
    out = {**res.to_dict(), "files": changed}
    if res.limit:
        err = SandboxError(f"{what} {res.reason}", hint="make it do less work, or raise timeout_s")
        err.result = out  # type: ignore[attr-defined]
        raise err
    if res.exit_code != 0:
        lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else (res.reason or "no error output")
        err = ToolError(f"{what} failed (exit {res.exit_code}): {last[:300]}",
                        hint="read stderr in the step's result and fix the code")
        err.result = out  # type: ignore[attr-defined]
        raise err
    first = res.stdout.strip().splitlines()
    shown = f": {first[-1][:120]}" if first else ""
    return ToolResult(out, f"{what} finished in {res.duration_s:.1f} s{shown}", changed)


def python_run(ctx: ToolContext, a: dict) -> ToolResult:
    sb = _sandbox(ctx)
    sb.check()                      # refuse before writing anything
    py = sb.python_argv()
    if ctx.stop is not None:
        ctx.stop.check("python.run")   # killed before it started: write nothing
    if a.get("save_as"):
        p = ctx.resolve(a["save_as"], "w", field="save_as")
        write_text(p, a["code"] if a["code"].endswith("\n") else a["code"] + "\n")
        return _execute(ctx, a, [*py, str(p)], "python", written=[ctx.rel(p)])
    return _execute(ctx, a, [*py, f"{INPUTS_DIR}/main.py"], "python", inputs={"main.py": a["code"]})


def python_run_file(ctx: ToolContext, a: dict) -> ToolResult:
    p = ctx.resolve(a["path"], "r")
    if not p.is_file():
        raise NotFound(f"no such file: {a['path']}")
    if not p.is_relative_to(ctx.workdir):
        raise PermissionDenied(f"{a['path']}: only scripts inside the workspace can run",
                               reason="the sandbox shows only the workspace")
    return _execute(ctx, a, [*_sandbox(ctx).python_argv(), str(p), *a["args"]], "python")


def shell_run(ctx: ToolContext, a: dict) -> ToolResult:
    return _execute(ctx, a, ["/bin/sh", "-c", a["command"]], "shell")


def _exec_risk(*paths: str):
    over = overwrite_risk(*paths) if paths else None

    def risk(args: dict, ctx: ToolContext) -> Risk:
        r = Risk.NETWORK if args.get("network") else Risk.EXEC
        return max(r, over(args, ctx)) if over else r
    return risk


_TIMEOUT = integer(f"seconds before the run is stopped (default {P.SANDBOX_TIMEOUT_S:g})", 1, TIMEOUT_MAX_S)
_NET = boolean("allow network access (needs the person's permission)")

TOOLS = [
    Tool(name="python.run", returns="{exit_code, stdout, stderr, truncated, limit, reason, duration_s, files}", kind="code", risk=Risk.EXEC, fn=python_run, idempotent=False,
         path_args={"save_as": "w"}, risk_fn=_exec_risk("save_as"),
         description="Run Python code in a sandbox and return what it prints; "
                     "save_as also keeps the code in a .py file.",
         parameters=params(["code"], code=string("the Python program", CODE_MAX_CHARS, min_length=1),
                           save_as=string("optional .py file to save the code in first", 1024),
                           timeout_s=_TIMEOUT, network=_NET)),
    Tool(name="python.run_file", returns="{exit_code, stdout, stderr, truncated, limit, reason, duration_s, files}", kind="code", risk=Risk.EXEC, fn=python_run_file, idempotent=False,
         path_args={"path": "r"}, risk_fn=_exec_risk(),
         description="Run a Python script file from the workspace in a sandbox and return what it prints.",
         parameters=params(["path"], path=PATH,
                           args={"type": "array", "items": string("argument", 1000), "maxItems": 50,
                                 "default": [], "description": "command-line arguments"},
                           timeout_s=_TIMEOUT, network=_NET)),
    Tool(name="shell.run", returns="{exit_code, stdout, stderr, truncated, limit, reason, duration_s, files}", kind="code", risk=Risk.EXEC, fn=shell_run, idempotent=False, risk_fn=_exec_risk(),
         description="Run a shell command in a sandbox inside the workspace and return its output.",
         parameters=params(["command"], command=string("the shell command line", TEXT_MAX_CHARS // 100,
                                                       min_length=1),
                           timeout_s=_TIMEOUT, network=_NET)),
]
