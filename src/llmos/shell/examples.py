"""The example library: curated plans per kind of request, plus plans the person approved.

Map:
- ``Example``: id, kind, request, the fact lines a planner would see for it, the plan
  (planner JSON shape), and its tool signature (``files.read>calc``).
- ``load_library()``: the curated examples shipped in ``shell/examples/*.json`` (one
  file per kind: a generic request, the files it starts from, and the plan).
- ``Retriever(examples)``: BM25 over normalized request words; ``top(request, k)``
  returns the most similar examples, best first. Normalization is generic: file
  names become ``FILE`` plus their kind (table, code, image, text), numbers ``NUM``, a few stems/synonyms
  fold together, so "how many lines in poem.txt" meets "count the lines of notes.md";
  the words of columns and cells a request names become COLUMN and CELL (``masks``).

Approved plans (``store.approved()``) join the curated ones; plans rated bad are never
among them (the store filters them).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from llmos.shell.extract import Facts, extract

__all__ = ["Example", "load_library", "Retriever", "words", "masks", "fact_tokens"]


@dataclass
class Example:
    id: str
    kind: str
    request: str
    plan: dict[str, Any]
    facts: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    _facts: Facts | None = field(default=None, repr=False)

    @property
    def fact_obj(self) -> Facts:
        """The example's facts (computed once from its request and files)."""
        if self._facts is None:
            self._facts = extract(self.request, files=self.files)
        return self._facts

    @property
    def signature(self) -> str:
        """The plan's skeleton: each step's tool and the arguments it sets (``data.sort(by,path)``
        and ``data.sort(by,path,save_to)`` are different choices for the model)."""
        return ">".join(("each:" if s.get("each") else "") + s["tool"] + "(" + ",".join(sorted(s.get("args", {})))
                        + ")" for s in self.plan["steps"])

    @property
    def tools(self) -> list[str]:
        return [s["tool"] for s in self.plan["steps"]]


_STOP = {"a", "an", "the", "is", "are", "of", "in", "to", "me", "my", "and", "it", "this", "that",
         "for", "on", "with", "what", "please", "i", "you", "can", "do", "does", "from", "by", "be",
         "here", "there", "into", "as", "at", "its", "these", "those", "all", "then", "them", "tell",
         "show", "give", "get", "will", "would", "could", "should", "called", "named"}
_SYN = {  # fold near-synonyms onto one word
    "directory": "folder", "dir": "folder", "remove": "delete", "erase": "delete", "rm": "delete", "del": "delete",
    "rename": "move", "mv": "move", "biggest": "largest", "smallest": "least", "tiniest": "least", "bigger": "largest",
    "sum": "total", "add": "append", "plus": "add_op", "times": "mul_op", "multiplied": "mul_op",
    "minus": "sub_op", "divided": "div_op", "percent": "pct", "percentage": "pct",
    "chart": "plot", "graph": "plot", "draw": "plot", "visualize": "plot", "visualise": "plot",
    "average": "mean", "avg": "mean", "script": "program", "code": "program",
    "todo": "todo", "to-do": "todo", "task": "todo", "tasks": "todo", "alarm": "remind",
    "reminder": "remind", "notify": "remind", "cheapest": "lowest", "highest": "most",
    "longest": "most", "maximum": "most", "max": "most", "min": "lowest", "minimum": "lowest",
    "higher": "most", "largest": "most", "greatest": "most", "top": "most", "best": "most",
    "lower": "lowest", "fewest": "lowest", "least": "lowest", "worst": "lowest",
    "order": "sort", "arrange": "sort", "store": "save", "every": "each",
    "mention": "contain", "include": "contain", "collect": "find", "search": "find", "grep": "find",
    "schedule": "calendar", "appointment": "calendar", "agenda": "calendar", "diary": "calendar",
    "convert": "convert", "turn": "convert", "transform": "convert", "export": "convert",
    "count": "count", "number": "number_", "many": "count", "make": "create", "new": "create",
    "lines": "line", "rows": "row", "files": "file", "words": "word", "numbers": "number_",
}
_FILE_RE = re.compile(r"[\w~/.-]*[\w-]\.([A-Za-z0-9]{1,6})\b")


def masks(f: Facts | None) -> dict[str, str]:
    """Words that stand for a table's own names: a named column's words -> COLUMN, a named
    cell's words -> CELL, a searched word -> TERM (which column a request names, or which
    word it looks for, says nothing about its plan)."""
    out: dict[str, str] = {}
    if f is None:
        return out
    for c in f.named_columns:
        for w in re.split(r"[_\s-]+", c.lower()):
            if w:
                out[w] = "COLUMN"
    for v in f.named_values:
        for w in re.split(r"[_\s-]+", v.lower()):
            if w:
                out.setdefault(w, "CELL")
    for t in f.terms:
        out.setdefault(t.lower(), "TERM")
    return out


_PHRASES = [  # multi-word phrases that mean one thing, folded before tokens are read
    (r"\b(?:add(?:ed|ing)?|sum(?:med|ming)?) (?:it |them |these |those |everything |all )?(?:up|together)\b",
     " total "),
    (r"\bto[- ]do\b", " todo "), (r"\bnumber of\b", " count "), (r"\bget rid of\b", " delete "),
    (r"\bthrow away\b", " delete "), (r"\bhow much\b", " total "),
]


def _stem(w: str) -> str:
    """A light suffix fold, the same for examples and requests: sorted/sorting -> sort,
    names/name -> nam, alphabetically -> alphabetic."""
    if len(w) <= 3 or w.endswith("_"):
        return w
    for suf, rep in (("ically", "ic"), ("ical", "ic"), ("ingly", ""), ("ing", ""), ("ied", "y"),
                     ("ies", "y"), ("edly", ""), ("ed", ""), ("ly", ""), ("es", ""), ("s", "")):
        if w.endswith(suf) and len(w) - len(suf) >= 3 and not (suf == "s" and w.endswith("ss")):
            w = w[: len(w) - len(suf)] + rep
            if suf in ("ing", "ed") and len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
                w = w[:-1]          # plotting -> plot
            break
    return w[:-1] if len(w) > 3 and w.endswith("e") else w


_SYN_STEMS = {_stem(k): v for k, v in _SYN.items()}   # "removing" finds "remove" -> delete


_EXT_CLASSES = {"table": {"csv", "tsv", "xlsx", "xls", "json", "jsonl", "ndjson"},
                "code": {"py", "js", "sh", "ts", "c", "cpp", "h", "go", "rs", "java", "rb", "php"},
                "image": {"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp"}}


def _ext_class(ext: str) -> str:
    """A file's kind for retrieval: table, code, image or text (.md and .txt are alike)."""
    e = ext.lower()
    return next((k for k, v in _EXT_CLASSES.items() if e in v), "text")


def fact_tokens(f: Facts | None) -> list[str]:
    """Tokens for what the pre-pass found, so plans that need the same facts meet: a new
    file to write, a path outside the workspace, a pattern, arithmetic, a delay."""
    if f is None:
        return []
    names = {n for n, _ in f.files} | set(f.dirs)
    out = []
    if any(m not in names and m not in f.outside for m in f.mentioned):
        out.append("NEWPATH")
    for flag, tok in ((f.outside, "OUTSIDE"), (f.globs, "GLOB"), (f.expression, "MATH"), (f.delay, "DELAY")):
        if flag:
            out.append(tok)
    return out


def words(text: str, mask: dict[str, str] | None = None) -> list[str]:
    """Normalized tokens of a request (see the module map)."""
    t = text.lower()
    for pat, rep in _PHRASES:
        t = re.sub(pat, rep, t)
    t = re.sub(r"(?:^|\s)(?:/|~/)[\w./-]+", " ABSPATH ", t)
    t = _FILE_RE.sub(lambda m: f" FILE {_ext_class(m.group(1))} ", t)
    t = re.sub(r"\b\d{1,2}:\d{2}\b", " CLOCK ", t)
    t = re.sub(r"\d+(?:\.\d+)?", " NUM ", t)
    t = re.sub(r"\b(?:seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?)\b", " TIMEUNIT ", t)
    t = re.sub(r"'[^']*'|\"[^\"]*\"", " QUOTED ", t)
    out = []
    for w in re.findall(r"[A-Za-z_]+", t):
        if w in ("FILE", "NUM", "QUOTED", "ABSPATH", "CLOCK", "TIMEUNIT"):
            out.append(w)
            continue
        if mask:
            m = mask.get(w) or (mask.get(w[:-1]) if w.endswith("s") else None)
            if m:
                out.append(m)
                continue
        if w in _STOP:
            continue
        out.append(_norm(w))
    return out


def _norm(w: str) -> str:
    """A word's synonym (looked up as written, then by its stem), stemmed."""
    v = _SYN.get(w) or _SYN_STEMS.get(_stem(w)) or w
    v = _SYN.get(v, v)          # second hop: smallest -> least -> lowest
    return _stem(v)


def load_library() -> list[Example]:
    """The curated examples shipped with the package (validated shape, facts computed)."""
    out: list[Example] = []
    root = resources.files("llmos.shell") / "examples"
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".json"):
            continue
        data = json.loads(entry.read_text())
        for i, ex in enumerate(data["examples"]):
            files = ex.get("files", {})
            facts = extract(ex["request"], files=files).lines()
            out.append(Example(ex.get("id", f"{data['kind']}-{i}"), data["kind"], ex["request"],
                               ex["plan"], facts, files))
    return out


class Retriever:
    """BM25 (k1=1.2, b=0.75) over normalized request words."""

    def __init__(self, examples: list[Example]) -> None:
        self.examples = examples
        self._docs = [Counter(words(e.request, masks(e.fact_obj)) + fact_tokens(e.fact_obj)) for e in examples]
        n = max(1, len(self._docs))
        self._avg = sum(sum(d.values()) for d in self._docs) / n if self._docs else 1.0
        df: Counter = Counter()
        for d in self._docs:
            df.update(d.keys())
        self._idf = {w: math.log(1 + (n - c + 0.5) / (c + 0.5)) for w, c in df.items()}

    def scores(self, request: str, facts: Facts | None = None) -> list[float]:
        q = words(request, masks(facts)) + fact_tokens(facts)
        out = []
        for d in self._docs:
            length = sum(d.values()) or 1
            s = 0.0
            for w in set(q):
                tf = d.get(w, 0)
                if tf:
                    s += self._idf.get(w, 0.0) * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / self._avg))
            out.append(s)
        return out

    def top(self, request: str, k: int = 3, *, exclude: set[str] | None = None,
            facts: Facts | None = None) -> list[tuple[Example, float]]:
        """The k most similar examples, best first (ties: the library's order)."""
        ranked = sorted(zip(self.examples, self.scores(request, facts), strict=True), key=lambda p: -p[1])
        return [(e, s) for e, s in ranked if not exclude or e.id not in exclude][:k]
