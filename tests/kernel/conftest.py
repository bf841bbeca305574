"""Kernel fixtures: a booted kernel (the shared ``boot_kernel``) on a temp state dir with a
FakeEngine, a FakeClock, a FakeHAL and a small tool registry (echo, append, delete, fetch,
fail, block)."""

from __future__ import annotations

import os
import threading

import pytest

from llmos.errors import ToolError
from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel
from llmos.tools.registry import Tool, ToolRegistry, ToolResult
from llmos.types import Risk


def _schema(**props: dict) -> dict:
    return {"type": "object", "additionalProperties": False, "properties": props,
            "required": list(props)}


STR = {"type": "string", "maxLength": 400}


def make_registry(gate: threading.Event | None = None) -> ToolRegistry:
    gate = gate or threading.Event()

    def echo(ctx, args):
        return ToolResult(output=args["text"], summary="echoed")

    def append(ctx, args):
        p = ctx.resolve(args["path"], "w")
        with open(p, "a") as f:
            f.write(args["line"] + "\n")
            f.flush()
            os.fsync(f.fileno())
        return ToolResult(output={"appended": args["line"]}, summary="appended", files=[ctx.rel(p)])

    def delete(ctx, args):
        p = ctx.resolve(args["path"], "w")
        p.unlink()
        return ToolResult(output=None, summary="deleted")

    def fetch(ctx, args):
        return ToolResult(output="<html>", summary="fetched")

    def fail(ctx, args):
        raise ToolError("this tool always fails")

    def block(ctx, args):
        gate.wait(10)
        return ToolResult(output="released", summary="released")

    def read(ctx, args):
        return ToolResult(output=ctx.resolve(args["path"], "r").read_text(), summary="read")

    return ToolRegistry([
        Tool(name="test.echo", description="echo", parameters=_schema(text=STR), risk=Risk.READ,
             fn=echo, kind="text"),
        Tool(name="test.append", description="append a line", parameters=_schema(path=STR, line=STR),
             risk=Risk.WRITE, fn=append, kind="files", idempotent=False, path_args={"path": "w"}),
        Tool(name="test.read", description="read", parameters=_schema(path=STR), risk=Risk.READ,
             fn=read, kind="files", path_args={"path": "r"}),
        Tool(name="test.delete", description="delete", parameters=_schema(path=STR),
             risk=Risk.DESTRUCTIVE, fn=delete, kind="files", idempotent=False, path_args={"path": "w"}),
        Tool(name="test.fetch", description="fetch", parameters=_schema(url=STR), risk=Risk.NETWORK,
             fn=fetch, kind="net"),
        Tool(name="test.fail", description="fail", parameters=_schema(), risk=Risk.READ, fn=fail,
             kind="text"),
        Tool(name="test.block", description="block", parameters=_schema(), risk=Risk.READ, fn=block,
             kind="text"),
    ])


@pytest.fixture
def gate():
    g = threading.Event()
    yield g
    g.set()


@pytest.fixture
def registry(gate):
    return make_registry(gate)


@pytest.fixture
def workdir(tmp_path):
    wd = tmp_path / "ws"
    wd.mkdir()
    return wd


@pytest.fixture
async def kernel(boot_kernel, clock, registry):
    """``boot_kernel``'s kernel on the fake clock, the fake HAL and this directory's tools."""
    k = await boot_kernel("the answer is 42", tools=registry, clock=clock, hal=FakeHAL(clock))
    yield k
    await k.shutdown(grace_s=0.5)         # a blocked test tool is not waited for long


async def make_agent(k: Kernel, name: str, **caps) -> str:
    res = await k.syscall("root", "agent.create", {"name": name, "capabilities": caps})
    assert res.ok, res.error
    return name


def audit_rows(k: Kernel, agent: str | None = None) -> list[tuple]:
    k.journal.flush()
    sql = "SELECT agent, call, resource, allowed, reason, error FROM audit"
    if agent:
        return k.journal.query(sql + " WHERE agent = ? ORDER BY id", (agent,))
    return k.journal.query(sql + " ORDER BY id")
