"""Argument types shared by the syscall schemas (pydantic), so every decoder says the
same thing about a pid, a priority, a name, a page size or a piece of text.

Map:
- ``Args``: the base of every syscall's argument model (unknown fields refused, no coercion).
- ``text(max_length, min_length)``: bounded, storable (valid UTF-8) text.
- ``Id`` (a journal row: memory, version, process), ``Pid``, ``Priority``, ``Name`` (an
  agent, a model, a key, a stop string), ``Key``.
- sampling: ``MaxTokens``, ``Temperature``, ``TopP``.
- ``upto(default, most)``: a count the caller may ask for, from 1 to ``most``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from llmos import params

__all__ = ["Args", "Id", "Pid", "Priority", "Name", "Key", "MaxTokens", "Temperature", "TopP", "text", "upto"]


class Args(BaseModel):
    """Base of every syscall argument model: unknown fields are errors, no coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _utf8(v: str) -> str:
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("valid Unicode text (no lone surrogates)") from None
    return v


def text(max_length: int, min_length: int = 0) -> type[str]:
    """A string of bounded length that can be stored (valid UTF-8)."""
    return Annotated[str, Field(min_length=min_length, max_length=max_length),  # type: ignore[return-value]
                     AfterValidator(_utf8)]


def upto(default: int, most: int) -> Any:
    """A count the caller may ask for (a page, a result list): 1 to ``most``, ``default``
    when it asks for none. Use as ``limit: int = upto(50, 500)``."""
    return Field(default=default, ge=1, le=most)


Id = Annotated[int, Field(ge=1, le=1 << 62)]
Pid = Id
Priority = Annotated[int, Field(ge=params.PRIORITY_MIN, le=params.PRIORITY_MAX)]
Name = text(200, 1)
Key = Name
MaxTokens = Annotated[int, Field(ge=1, le=1 << 20)]
Temperature = Annotated[float, Field(ge=0, le=5)]
TopP = Annotated[float, Field(gt=0, le=1)]
