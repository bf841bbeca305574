"""Output shapes: what a tool's ``returns`` line says it gives, and whether a reference
into it names a field that exists.

Map:
- ``parse(returns) -> Shape | None``: the registry's one-line output shape, e.g.
  ``{entries: [{name, size}], count}``, as data. ``{…}`` is a record, ``[x]`` a list of
  ``x``, a bare word a value of any kind; a key in CAPITALS (``{KEY, VALUE}``) stands
  for names known only at run time, so that record is open. A line that is not a
  record (free text, like the ``llm`` tool's) parses to None: nothing is checked.
- ``check_ref(shape, path, each=False) -> (key, why) | None``: why ``$stepN.output.<path>``
  cannot exist (None when it can). Follows ``plan._walk``: a field of a record, an index
  or ``count``/``length`` of a list, a field projected over a list of records, and one
  short suffix after a plain value (``$item.stem.csv``). ``each``: the step ran once per
  element, so its output is a list of the tool's output.
- ``item_of(shape, path) -> Shape``: the element an ``each`` over that list gives.
- ``providers(shapes, field)``: the tools whose output has that field (for the reason).

Used by ``planner.check_plan``: a plan whose reference names a field its step's tool
never returns is sent back to the model with the fields that tool does return.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Shape", "ANY", "parse", "check_ref", "item_of", "describe", "providers"]


@dataclass(frozen=True)
class Shape:
    kind: str                                   # "record" | "list" | "any"
    fields: tuple[tuple[str, Shape], ...] = ()  # record: (name, shape), in order
    open: bool = False                          # record: names known only at run time
    item: Shape | None = None                   # list: the element

    def field(self, name: str) -> Shape | None:
        for k, v in self.fields:
            if k == name:
                return v
        return None


ANY = Shape("any")


class _Bad(Exception):
    pass


def parse(returns: str | None) -> Shape | None:
    """The shape a ``returns`` line states, or None when it states no record."""
    text = (returns or "").strip()
    if not text.startswith("{"):
        return None
    try:
        shape, rest = _value(text, 0)
    except (_Bad, IndexError):
        return None
    return shape if not text[rest:].strip() else None


def _skip(s: str, i: int) -> int:
    while i < len(s) and s[i] == " ":
        i += 1
    return i


def _value(s: str, i: int) -> tuple[Shape, int]:
    i = _skip(s, i)
    if s[i] == "{":
        return _record(s, i + 1)
    if s[i] == "[":
        item, i = _value(s, i + 1)
        i = _skip(s, i)
        if s[i] != "]":
            raise _Bad(i)
        return Shape("list", item=item), i + 1
    j = i
    while j < len(s) and (s[j].isalnum() or s[j] in "_-"):
        j += 1
    if j == i:
        raise _Bad(i)
    return ANY, j


def _record(s: str, i: int) -> tuple[Shape, int]:
    fields: list[tuple[str, Shape]] = []
    is_open = False
    while True:
        i = _skip(s, i)
        if s[i] == "}":
            return Shape("record", tuple(fields), is_open), i + 1
        j = i
        while j < len(s) and (s[j].isalnum() or s[j] == "_"):
            j += 1
        name = s[i:j]
        if not name:
            raise _Bad(i)
        i = _skip(s, j)
        value = ANY
        if s[i] == ":":
            value, i = _value(s, i + 1)
            i = _skip(s, i)
        if name.isupper():
            is_open = True
        else:
            fields.append((name, value))
        if s[i] == ",":
            i += 1
        elif s[i] != "}":
            raise _Bad(i)


def describe(shape: Shape) -> str:
    if shape.kind == "list":
        return f"[{describe(shape.item or ANY)}]"
    if shape.kind == "record":
        parts = [k if v is ANY else f"{k}: {describe(v)}" for k, v in shape.fields]
        return "{" + ", ".join(parts + (["…"] if shape.open else [])) + "}"
    return "value"


def _walk(shape: Shape, path: list[str]) -> tuple[Shape | None, int]:
    """How far ``path`` gets into ``shape``: (shape reached, keys used) — the shape is
    None when a key cannot be there."""
    cur = shape
    for n, key in enumerate(path):
        if cur.kind == "any":
            return ANY, len(path)
        if cur.kind == "record":
            nxt = cur.field(key)
            if nxt is None:
                if cur.open:
                    return ANY, len(path)
                return None, n
            cur = nxt
            continue
        # a list
        item = cur.item or ANY
        if key.isdigit():
            cur = item
        elif key in ("count", "length"):
            cur = ANY
        elif item.kind == "record" and (item.field(key) is not None or item.open):
            inner = item.field(key) or ANY
            cur = Shape("list", item=inner)
        elif item.kind == "any":
            return ANY, len(path)
        else:
            return None, n
    return cur, len(path)


def _base(shape: Shape, each: bool) -> Shape:
    """An each-step's output: one ``{item, output}`` per element (``plan._walk`` looks
    through ``output``, so the tool's own fields project too)."""
    if not each:
        return shape
    fields = (("item", ANY), ("output", shape))
    if shape.kind == "record":
        fields = fields + tuple(f for f in shape.fields if f[0] not in ("item", "output"))
    return Shape("list", item=Shape("record", fields, shape.open or shape.kind != "record"))


def check_ref(shape: Shape, path: list[str], each: bool = False) -> tuple[str, str] | None:
    """None when ``path`` can name something in an output of ``shape``; else (the key
    that cannot, why in words). ``each``: the output is one ``shape`` per element."""
    base = _base(shape, each)
    reached, used = _walk(base, path)
    if reached is not None:
        return None
    # a suffix after a plain value: $item.stem.csv
    if used == len(path) - 1 and used > 0:
        before, _ = _walk(base, path[:used])
        last = path[-1]
        if before is not None and before.kind == "any" and len(last) <= 5 and last.isalnum():
            return None
    missing = path[used]
    at = _walk(base, path[:used])[0] or base
    if at.kind == "list" and at.item is not None and at.item.kind == "record":
        return missing, f"has no field {missing!r}; its elements have {describe(at.item)}"
    return missing, f"has no field {missing!r}; it has {describe(at)}"


def item_of(shape: Shape, path: list[str], each: bool = False) -> Shape:
    """The element shape of the list that ``path`` names (``ANY`` when unknown)."""
    reached, _ = _walk(_base(shape, each), path)
    if reached is not None and reached.kind == "list":
        return reached.item or ANY
    return ANY


def providers(shapes: dict[str, Any], name: str) -> list[str]:
    """Tools whose output has a field ``name`` at its top level or in its list elements."""
    out = []
    for tool, shape in shapes.items():
        if shape is None:
            continue
        if shape.field(name) is not None:
            out.append(tool)
            continue
        for _, v in shape.fields:
            if v.kind == "list" and v.item is not None and v.item.field(name) is not None:
                out.append(tool)
                break
    return out
