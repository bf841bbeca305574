"""Argument types shared by the syscall schemas (pydantic), so every decoder says the
same thing about a pid, a priority or a piece of text."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from llmos import params

__all__ = ["Args", "Pid", "Priority", "Key", "text"]


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


Pid = Annotated[int, Field(ge=1, le=1 << 62)]
Priority = Annotated[int, Field(ge=params.PRIORITY_MIN, le=params.PRIORITY_MAX)]
Key = text(200, 1)
