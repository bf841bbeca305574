"""Text tools for line-oriented workflows: sort, unique, numbers (sum/mean/min/max), replace,
extract (email addresses, links, numbers, dates, phone numbers or a pattern).

Each reads one text file and, when ``save_to`` is given, writes the result there (WRITE,
or DESTRUCTIVE onto an existing file); without it the tool only reads. Numbers are
parsed exactly (Decimal), so sums of 0.1 + 0.2 come out as 0.3.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from llmos.errors import InvalidArgument
from llmos.tools.builtin._common import (
    PATH,
    SAVE_TO,
    TEXT_MAX_CHARS,
    boolean,
    enum,
    params,
    read_text,
    string,
    write_text,
)
from llmos.tools.registry import Tool, ToolContext, ToolResult, overwrite_risk
from llmos.types import Risk

LINES_OUT_MAX = 2000     # most lines returned in a tool's output (the saved file has all)
TEXT_FILE_MAX_BYTES = 16 << 20
_NUM = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d[\d_]*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")


def _lines(ctx: ToolContext, path: str) -> list[str]:
    text, _ = read_text(ctx.resolve(path, "r"), TEXT_FILE_MAX_BYTES)
    return text.splitlines()


def _number(s: str) -> Decimal | None:
    try:
        return Decimal(s.strip().replace(",", "").replace("_", ""))
    except (InvalidOperation, ValueError):
        return None


def _json_num(d: Decimal) -> int | float:
    return int(d) if d == d.to_integral_value() else float(d)


def _finish(ctx: ToolContext, a: dict, lines: list[str], out: dict, summary: str) -> ToolResult:
    out["lines"] = lines[:LINES_OUT_MAX]
    out["truncated"] = len(lines) > LINES_OUT_MAX
    files = []
    if a.get("save_to"):
        p = ctx.resolve(a["save_to"], "w", field="save_to")
        write_text(p, "".join(line + "\n" for line in lines))
        files.append(ctx.rel(p))
        out["saved_to"] = ctx.rel(p)
        summary += f"; saved to {ctx.rel(p)}"
    return ToolResult(out, summary, files)


def sort_lines(ctx: ToolContext, a: dict) -> ToolResult:
    lines = [ln for ln in _lines(ctx, a["path"]) if ln.strip()]
    nums = [_number(ln) for ln in lines]
    numeric = a["by"] == "number" or (a["by"] == "auto" and lines and all(n is not None for n in nums))
    if numeric:
        if any(n is None for n in nums):
            bad = next(ln for ln, n in zip(lines, nums, strict=True) if n is None)
            raise InvalidArgument(f"line {bad[:40]!r} is not a number", field="by",
                                  expected="'text' for files with words")
        pairs = sorted(zip(nums, lines, strict=True), key=lambda t: t[0], reverse=a["descending"])
        lines = [ln.strip() for _, ln in pairs]
    else:
        lines = sorted(lines, key=lambda s: (s.casefold(), s), reverse=a["descending"])
    if a["unique"]:
        lines = list(dict.fromkeys(lines))
    order = "largest first" if a["descending"] else "smallest first"
    out = {"count": len(lines), "numeric": numeric}
    return _finish(ctx, a, lines, out, f"sorted {len(lines)} lines "
                   + (f"as numbers, {order}" if numeric else "alphabetically"))


def unique_lines(ctx: ToolContext, a: dict) -> ToolResult:
    lines = _lines(ctx, a["path"])
    kept, keys = [], set()
    for ln in lines:
        k = ln.strip().casefold() if a["ignore_case"] else ln
        if k not in keys:
            keys.add(k)
            kept.append(ln)
    out = {"count": len(kept), "removed": len(lines) - len(kept)}
    return _finish(ctx, a, kept, out, f"{len(kept)} distinct lines ({out['removed']} repeats removed)")


def numbers(ctx: ToolContext, a: dict) -> ToolResult:
    found: list[Decimal] = []
    for ln in _lines(ctx, a["path"]):
        for m in _NUM.findall(ln):
            d = _number(m)
            if d is not None:
                found.append(d)
    if not found:
        return ToolResult({"count": 0, "numbers": []}, "no numbers found")
    total = sum(found, Decimal(0))
    out = {"count": len(found), "sum": _json_num(total), "mean": _json_num(total / len(found)),
           "min": _json_num(min(found)), "max": _json_num(max(found)),
           "numbers": [_json_num(d) for d in found[:LINES_OUT_MAX]]}
    return ToolResult(out, f"{len(found)} numbers: sum {out['sum']}, mean {out['mean']:g}, "
                           f"min {out['min']}, max {out['max']}")


def replace_text(ctx: ToolContext, a: dict) -> ToolResult:
    if not a["find"]:
        raise InvalidArgument("find: expected the text to replace", field="find", expected="non-empty text")
    src = ctx.resolve(a["path"], "r")
    text, cut = read_text(src, TEXT_FILE_MAX_BYTES)
    if cut:
        raise InvalidArgument(f"{a['path']} is larger than {TEXT_FILE_MAX_BYTES} bytes", field="path",
                              expected="a smaller text file")
    n = text.count(a["find"])
    new = text.replace(a["find"], a["replace"])
    dest = ctx.resolve(a.get("save_to") or a["path"], "w", field="save_to")
    write_text(dest, new)
    return ToolResult({"replacements": n, "path": ctx.rel(dest)},
                      f"replaced {n} occurrences of {a['find']!r} in {ctx.rel(dest)}", [ctx.rel(dest)])


# what text.extract finds: well-known shapes of text, matched by the formats' own grammar
_EXTRACT = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}",
    "url": r"\b(?:https?|ftp)://[^\s<>\"')\]]+[^\s<>\"')\].,;:!?]",
    "number": _NUM.pattern,
    "date": r"\b(?:\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4}|\d{1,2}\.\d{1,2}\.\d{4})\b",
    "phone": r"(?<![\w+])\+?\d[\d ()./-]{6,}\d\b",
    "ip": r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b",
}
EXTRACT_KINDS = [*_EXTRACT, "pattern"]


def extract(ctx: ToolContext, a: dict) -> ToolResult:
    kind = a["what"]
    if kind == "pattern":
        if not a.get("pattern"):
            raise InvalidArgument("pattern: expected a regular expression when what is 'pattern'",
                                  field="pattern", expected="a regular expression like [A-Z]{3}-\\d+")
        try:
            rx = re.compile(a["pattern"], re.IGNORECASE if a.get("ignore_case") else 0)
        except re.error as e:
            raise InvalidArgument(f"pattern: not a regular expression ({e})", field="pattern",
                                  expected="a Python regular expression") from None
    else:
        rx = re.compile(_EXTRACT[kind])
    text, _ = read_text(ctx.resolve(a["path"], "r"), TEXT_FILE_MAX_BYTES)
    found: list[str] = []
    seen: set[str] = set()
    for m in rx.finditer(text):
        item = m.group(0).strip()
        if kind == "email":
            item = item.rstrip(".")
        if kind == "phone" and (sum(ch.isdigit() for ch in item) < 7 or re.search(_EXTRACT["date"], item)):
            continue
        key = item.lower() if kind in ("email", "url") or a.get("ignore_case") else item
        if not item or (a["unique"] and key in seen):
            continue
        seen.add(key)
        found.append(item)
    what = {"pattern": "matches of the pattern", "ip": "IP addresses", "email": "email addresses",
            "phone": "phone numbers", "url": "links"}.get(kind, f"{kind}s")
    summary = f"{len(found)} {'different ' if a['unique'] else ''}{what} in {a['path']}"
    return _finish(ctx, a, found, {"what": kind, "items": found[:LINES_OUT_MAX], "count": len(found)}, summary)


def _replace_risk(args: dict, ctx: ToolContext) -> Risk:
    return overwrite_risk("save_to")(args, ctx) if args.get("save_to") else Risk.DESTRUCTIVE


TOOLS = [
    Tool(name="text.sort", returns="{count, numeric, lines, truncated}", kind="text", risk=Risk.READ, fn=sort_lines, risk_fn=overwrite_risk("save_to"),
         path_args={"path": "r", "save_to": "w"},
         description="Sort the lines of a text file, as numbers or alphabetically, and optionally save them.",
         parameters=params(["path"], path=PATH,
                           by=enum("compare as number or text; auto picks number when every line is one",
                                   ["auto", "number", "text"], default="auto"),
                           descending=boolean("largest or last first"),
                           unique=boolean("drop repeated lines"), save_to=SAVE_TO)),
    Tool(name="text.unique", returns="{count, removed, lines, truncated}", kind="text", risk=Risk.READ, fn=unique_lines, risk_fn=overwrite_risk("save_to"),
         path_args={"path": "r", "save_to": "w"},
         description="Remove repeated lines from a text file, keeping the first of each, and optionally save.",
         parameters=params(["path"], path=PATH, ignore_case=boolean("treat Apple and apple as the same"),
                           save_to=SAVE_TO)),
    Tool(name="text.numbers", returns="{count, sum, mean, min, max, numbers}", kind="text", risk=Risk.READ, fn=numbers, path_args={"path": "r"},
         description="Add up (sum) the numbers written in a text file, and give their mean, min, max and how many there are.",
         parameters=params(["path"], path=PATH)),
    Tool(name="text.extract", returns="{what, items, count, lines, truncated}", kind="text", risk=Risk.READ, fn=extract,
         risk_fn=overwrite_risk("save_to"), path_args={"path": "r", "save_to": "w"},
         description="Pull every email address, link (url), number, date, phone number, IP address or "
                     "regular-expression match out of a text file, in order, optionally saved one per line.",
         parameters=params(["path", "what"], path=PATH,
                           what=enum("what to pull out", EXTRACT_KINDS),
                           pattern=string("for what=pattern: a regular expression", 300),
                           unique=boolean("keep each item once (default true)", default=True),
                           ignore_case=boolean("for what=pattern: match upper and lower case alike"),
                           save_to=SAVE_TO)),
    Tool(name="text.replace", returns="{replacements, path}", kind="text", risk=Risk.WRITE, fn=replace_text, risk_fn=_replace_risk,
         path_args={"path": "w", "save_to": "w"}, idempotent=False,
         description="Replace every occurrence of a text in a file (in place, or into save_to).",
         parameters=params(["path", "find", "replace"], path=PATH,
                           find=string("the text to find", 1000, min_length=1),
                           replace=string("the new text", TEXT_MAX_CHARS), save_to=SAVE_TO)),
]
