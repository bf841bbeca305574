"""Value types shared by every layer.

Only plain data lives here (no behaviour beyond validation helpers), so any
layer may import it without pulling in another layer.

- ``Priority``: Unix-nice-like integer, -20 (most urgent) .. 19 (least); 0 default.
- ``Risk``: ordered risk classes of a tool step; confirmation rules key off it.
- ``Message``: one chat message, OpenAI-shaped.
"""

from __future__ import annotations

import enum
from typing import Literal, TypedDict

__all__ = ["Pid", "AgentId", "Priority", "Risk", "Message", "Role", "check_priority"]

Pid = int
AgentId = str
Priority = int  # -20 (most urgent) .. 19 (least urgent); see params.PRIORITY_MIN/MAX

Role = Literal["system", "user", "assistant", "tool"]


class Message(TypedDict, total=False):
    role: Role
    content: str
    name: str


class Risk(enum.IntEnum):
    """Risk class of a tool step, ordered by how much the person must agree to."""

    READ = 0          # reads inside the workspace: never asks
    WRITE = 1         # creates new files inside the workspace: never asks
    DESTRUCTIVE = 2   # delete, overwrite, move over an existing file: asks
    EXEC = 3          # runs code (sandboxed): asks
    NETWORK = 4       # reaches the network: asks, and needs the network capability

    @property
    def needs_confirmation(self) -> bool:
        return self >= Risk.DESTRUCTIVE

    @classmethod
    def parse(cls, value: str | int | Risk) -> Risk:
        if isinstance(value, Risk):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[str(value).strip().upper()]
        except KeyError:
            names = ", ".join(r.name.lower() for r in cls)
            raise ValueError(f"unknown risk class {value!r}; expected one of {names}") from None


def check_priority(value: object, field: str = "priority") -> int:
    """Return ``value`` as a priority or raise ValueError naming the field."""
    from llmos import params

    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field}: expected an integer in "
                         f"[{params.PRIORITY_MIN}, {params.PRIORITY_MAX}], got {value!r}")
    if not params.PRIORITY_MIN <= value <= params.PRIORITY_MAX:
        raise ValueError(f"{field}: expected an integer in "
                         f"[{params.PRIORITY_MIN}, {params.PRIORITY_MAX}], got {value}")
    return value
