"""LLM syscalls: ``llm.generate`` (thin decoder).

A generation is an ``llm`` process owned by the calling agent: it is journaled,
scheduled (token-level, under the kernel's step policy) and accounted like any other.
With ``stream: true`` (through ``Kernel.syscall_stream``) chunks flow to the caller
while it runs, after a ``started`` event naming the process (so a caller that goes
away can kill it); the final value is the same either way.

``prefix_messages`` (with ``messages``) / ``prefix_chars`` (with ``prompt``) mark the
first k messages / characters as a fixed prefix many calls repeat (a planner's system
prompt and examples): a hint, never a change of meaning; the embedded engine keeps that
prefix's KV in memory and on disk, so later calls, in this process or a fresh one,
evaluate only the rest.

``timeout_s`` bounds the call on the kernel clock: a generation still queued or running
when it passes is killed (the engine drops its sequence, so it stops using the CPU) and
the call fails with ``TimedOut`` naming the limit.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from llmos.errors import Busy, InvalidArgument, TimedOut
from llmos.kernel.argtypes import Args, Pid, Priority, text
from llmos.kernel.syscall import Call, KernelView, Syscall

__all__ = ["ROWS", "GenerateArgs"]


class GenerateArgs(Args):
    messages: list[dict[str, Any]] | None = Field(default=None, max_length=1000)
    prompt: text(1 << 20, 1) | None = None           # type: ignore[valid-type]
    max_tokens: int | None = Field(default=None, ge=1, le=1 << 20)
    temperature: float | None = Field(default=None, ge=0, le=5)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    seed: int | None = None
    stop: list[text(200, 1)] | text(200, 1) | None = None   # type: ignore[valid-type]
    json_schema: dict[str, Any] | None = None
    grammar: text(1 << 16, 1) | None = None           # type: ignore[valid-type]
    model: text(200, 1) | None = None                 # type: ignore[valid-type]
    prefix_messages: int | None = Field(default=None, ge=0, le=1000)   # messages: first k are fixed
    prefix_chars: int | None = Field(default=None, ge=0, le=1 << 20)   # prompt: first k chars fixed
    priority: Priority = 0
    stream: bool = False
    parent: Pid | None = None
    timeout_s: float | None = Field(default=None, gt=0, le=86400)   # seconds on the kernel clock


_SPEC_FIELDS = ("messages", "prompt", "max_tokens", "temperature", "top_p", "top_k", "seed",
                "stop", "json_schema", "grammar", "model", "prefix_messages", "prefix_chars")


def check_prefix(a: GenerateArgs) -> None:
    """The marked prefix lies inside what it marks (raises InvalidArgument naming the field)."""
    for name, of, n in (("prefix_messages", "messages", len(a.messages or ())),
                        ("prefix_chars", "prompt", len(a.prompt or ""))):
        k = getattr(a, name)
        if k is None:
            continue
        if getattr(a, of) is None:
            raise InvalidArgument(f"llm.generate: {name}: only with {of}", field=name,
                                  expected=f"omitted, or given with {of}")
        if k > n:
            raise InvalidArgument(f"llm.generate: {name}: expected at most {n} (the length of {of}), "
                                  f"got {k}", field=name, expected=f"integer in [0, {n}]")


async def generate(k: KernelView, call: Call, a: GenerateArgs) -> dict:
    check_prefix(a)
    spec = {f: getattr(a, f) for f in _SPEC_FIELDS if getattr(a, f) is not None}
    p, _ = await k.spawn(call, "llm", spec, priority=a.priority, parent=a.parent,
                         sink=call.sink if a.stream else None)
    if call.started is not None:
        call.started(p.pid)
    try:
        value = await k.result(p.pid, timeout_s=a.timeout_s)
    except Busy:                     # still queued or generating when timeout_s passed
        if k.procs.get(p.pid).state.finished:
            raise
        await k.kill(call, p.pid, f"timed out: llm.generate ran past timeout_s={a.timeout_s:g}")
        raise TimedOut(f"llm.generate: no answer within {a.timeout_s:g} s (timeout_s); generation "
                       f"{p.pid} was stopped", hint="raise timeout_s, lower max_tokens or use a faster "
                       "model") from None
    return {**value, "pid": p.pid}


ROWS = [
    Syscall("llm.generate", GenerateArgs, "llm.generate", generate,
            "generate text (messages or prompt) as an llm process; optional streaming"),
]
