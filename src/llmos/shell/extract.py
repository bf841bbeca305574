"""Deterministic pre-pass: facts about a request and its workspace, offered to the planner.

Map:
- ``Facts``: what a small model cannot be trusted to find by itself: the files in
  the workspace (with sizes), file names and paths the request mentions (existing
  or not, inside or outside the workspace), glob patterns (".tmp files" -> *.tmp),
  quoted strings, a trailing "...: text" payload, numbers, a duration in seconds,
  CSV column names, and an arithmetic expression read from words ("17 times 23
  plus 4" -> "17 * 23 + 4"; "15 percent of 240" -> "15 / 100 * 240").
- ``extract(request, workdir) -> Facts``.

Nothing here knows any particular request: these are generic readings of English
and of the file system. The planner shows them to the model as candidates and uses
them as enums where a schema expects a path; the model still chooses.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Facts", "extract", "arithmetic", "duration_s", "order_of"]

MAX_LISTED = 40           # workspace entries shown to the planner
MAX_DEPTH = 2             # directory depth scanned
_SKIP_DIRS = {".git", "__pycache__", ".venv", "node_modules", ".llmos"}

_FILE_RE = re.compile(r"(?<![\w/.~-])((?:~|\.{1,2})?/?(?:[\w.-]+/)*[\w-]+(?:\.[A-Za-z0-9]{1,6})+)(?![\w/])")
_ABS_RE = re.compile(r"(?<![\w])((?:~|/)[\w.~/-]*[\w~])")
_EXT_RE = re.compile(r"(?<![\w])\.([A-Za-z0-9]{1,6})\b(?:\s+files?)?|\b([A-Za-z0-9]{2,5})\s+files?\b")
_QUOTED_RE = re.compile(r"'([^']{1,200})'|\"([^\"]{1,200})\"|“([^”]{1,200})”")
_NUM_RE = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w])")
_KNOWN_EXTS = {"txt", "md", "csv", "json", "py", "png", "tmp", "log", "tsv", "html", "yaml", "yml",
               "sh", "ics", "xml", "jpg", "jpeg", "svg", "pdf", "ini", "toml", "cfg", "js", "c", "bak"}


@dataclass
class Facts:
    files: list[tuple[str, int]] = field(default_factory=list)   # (relative path, bytes) in the workspace
    dirs: list[str] = field(default_factory=list)        # folders in the workspace (relative)
    mentioned: list[str] = field(default_factory=list)   # file names / paths named in the request
    outside: list[str] = field(default_factory=list)     # absolute or ~ paths named in the request
    globs: list[str] = field(default_factory=list)       # "*.tmp" from ".tmp files" / "csv files"
    quoted: list[str] = field(default_factory=list)      # 'call the dentist'
    payload: str | None = None                           # text after a final colon: "...: buy milk"
    numbers: list[str] = field(default_factory=list)
    expression: str | None = None                        # arithmetic read from words
    seconds: float | None = None                         # "in 2 minutes" -> 120.0
    delay: str | None = None                             # "in 2 minutes" -> "2 minutes"
    order: str | None = None                             # ascending | descending, when the request says
    aggregate: str | None = None                         # sum | mean | max | min | count | median
    columns: dict[str, list[str]] = field(default_factory=dict)   # csv file -> header names
    named_columns: list[str] = field(default_factory=list)         # header names the request uses

    @property
    def existing(self) -> list[str]:
        names = {f for f, _ in self.files}
        return [m for m in self.mentioned if m in names]

    @property
    def new_files(self) -> list[str]:
        names = {f for f, _ in self.files}
        return [m for m in self.mentioned if m not in names]

    def paths(self) -> list[str]:
        """Every path a step might name: mentioned first, then the workspace, then outside."""
        out: list[str] = []
        for p in [*self.mentioned, *(f for f, _ in self.files), *self.dirs, *self.outside]:
            if p not in out:
                out.append(p)
        return out

    def lines(self) -> list[str]:
        """The facts as short prompt lines (only those that are present)."""
        out = []
        if self.files:
            listed = ", ".join(f"{f} ({n} B)" for f, n in self.files[:MAX_LISTED])
            more = f" and {len(self.files) - MAX_LISTED} more" if len(self.files) > MAX_LISTED else ""
            out.append(f"Files here: {listed}{more}")
        else:
            out.append("Files here: none")
        if self.dirs:
            out.append("Folders here: " + ", ".join(self.dirs[:MAX_LISTED]))
        if self.mentioned or self.outside:
            out.append("Paths named: " + ", ".join([*self.mentioned, *self.outside]))
        for name, cols in self.columns.items():
            out.append(f"Columns of {name}: {', '.join(cols)}")
        if self.named_columns:
            out.append("Columns named: " + ", ".join(self.named_columns))
        if self.globs:
            out.append("Patterns: " + ", ".join(self.globs))
        if self.quoted:
            out.append("Quoted: " + " | ".join(self.quoted))
        if self.payload:
            out.append(f"Text: {self.payload}")
        if self.expression:
            out.append(f"Math: {self.expression}")
        if self.delay:
            out.append(f"Delay: {self.delay}")
        if self.order:
            out.append(f"Order: {self.order}")
        if self.aggregate:
            out.append(f"Aggregate: {self.aggregate}")
        return out


def _scan(workdir: Path) -> tuple[list[tuple[str, int]], list[str]]:
    out: list[tuple[str, int]] = []
    folders: list[str] = []
    base = len(workdir.parts)
    for root, dirs, files in os.walk(workdir):
        depth = len(Path(root).parts) - base
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        folders += [str((Path(root) / d).relative_to(workdir)) for d in dirs]
        if depth >= MAX_DEPTH - 1:
            dirs[:] = []
        for f in sorted(files):
            if f.startswith("."):
                continue
            p = Path(root) / f
            try:
                if p.is_symlink() or not p.is_file():
                    continue
                out.append((str(p.relative_to(workdir)), p.stat().st_size))
            except OSError:
                continue
            if len(out) >= 4 * MAX_LISTED:
                return out, folders
    return out, folders


def _header(path: Path) -> list[str]:
    try:
        with path.open(newline="", errors="replace") as f:
            return _header_text(f.read(4096))
    except OSError:
        return []


def _header_text(head: str) -> list[str]:
    try:
        dialect = csv.Sniffer().sniff(head.splitlines()[0] if head else ",", delimiters=",;\t|")
        row = next(csv.reader(io.StringIO(head), dialect))
    except (csv.Error, StopIteration):
        return []
    return [c.strip() for c in row if c.strip()][:30]


# ── arithmetic from words ───────────────────────────────────────────────────
_WORD_NUMS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
              "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "twenty": 20,
              "thirty": 30, "forty": 40, "fifty": 50, "hundred": 100, "thousand": 1000}
_OPS = [  # longest phrases first
    (r"to the power of|raised to(?: the power of)?|\^|\*\*", "^"),
    (r"multiplied by|times|\bx\b|×|\*", "*"),
    (r"divided by|over|÷|/", "/"),
    (r"plus|added to|\+", "+"),
    (r"minus|less|take away|-", "-"),
    (r"mod(?:ulo)?|remainder of .* divided by", "%"),
]


def _num(tok: str) -> str | None:
    t = tok.replace(",", "")
    if re.fullmatch(r"-?\d+(?:\.\d+)?", t):
        return t
    if t.lower() in _WORD_NUMS:
        return str(_WORD_NUMS[t.lower()])
    return None


def arithmetic(text: str) -> str | None:
    """Read an arithmetic expression from English; None when the text holds none."""
    s = " " + text.lower().replace("?", " ").replace("what's", "what is") + " "
    s = re.sub(r"(\d),(\d{3})", r"\1\2", s)
    # "X percent of Y" / "X% of Y"
    s = re.sub(r"(\d+(?:\.\d+)?)\s*(?:%|percent|per cent)\s+of\s+", r"(\1 / 100) * ", s)
    s = re.sub(r"(\d+(?:\.\d+)?)\s*(?:%|percent)", r"(\1 / 100)", s)
    s = re.sub(r"square root of\s+(\d+(?:\.\d+)?)", r"sqrt(\1)", s)
    s = re.sub(r"(\d+(?:\.\d+)?)\s+squared", r"\1 ^ 2", s)
    s = re.sub(r"(\d+(?:\.\d+)?)\s+cubed", r"\1 ^ 3", s)
    # average / sum of a list: "the average of 3, 5 and 10"
    m = re.search(r"(average|mean|sum|total) of\s+((?:-?\d+(?:\.\d+)?(?:\s*,\s*|\s+and\s+|\s+))+)", s)
    if m:
        nums = _NUM_RE.findall(m.group(2))
        if len(nums) >= 2:
            total = " + ".join(nums)
            return f"({total}) / {len(nums)}" if m.group(1) in ("average", "mean") else total
    for pat, op in _OPS:
        s = re.sub(rf"\s*(?:{pat})\s*", f" {op} ", s)
    toks = re.findall(r"sqrt\(\d+(?:\.\d+)?\)|\d+(?:\.\d+)?|[a-z]+|[-+*/%()^]", s)
    ops = ("+", "-", "*", "/", "%", "^", "(", ")")

    def weight(seq: list[str]) -> int:  # operands; a sqrt(...) alone is a whole expression
        return sum(2 if x.startswith("sqrt") else 1 for x in seq if x not in ops)

    best: list[str] = []
    cur: list[str] = []
    for t in toks + ["<end>"]:
        n = _num(t) if not t.startswith("sqrt") else t
        if n is not None or t in ops:
            cur.append(n if n is not None else t)
            continue
        if t in ("by", "the", "and", "then"):   # "multiplied by", "and then"
            continue
        if weight(cur) >= 2 and len(cur) > len(best):
            best = cur
        cur = []
    while best and best[-1] in ("+", "-", "*", "/", "%", "^", "("):
        best.pop()
    while best and best[0] in ("+", "*", "/", "%", "^", ")"):
        best.pop(0)
    if weight(best) < 2 or best.count("(") != best.count(")"):
        return None
    expr = " ".join(best).replace("( ", "(").replace(" )", ")").replace("^", "**")
    return expr if re.search(r"[-+*/%]|sqrt", expr) else None


_UNITS = {"second": 1, "sec": 1, "s": 1, "minute": 60, "min": 60, "hour": 3600, "hr": 3600,
          "h": 3600, "day": 86400}


_DUR_RE = re.compile(r"\b(?:in|after|within|for)\s+((an?|\d+(?:\.\d+)?)\s*(second|sec|minute|min|hour|hr|h|day|s)s?)\b")


def duration_s(text: str) -> float | None:
    """'in 2 seconds' / 'after 5 min' / 'in an hour' -> seconds; None when absent."""
    m = _DUR_RE.search(text.lower())
    if not m:
        return None
    n = 1.0 if m.group(2) in ("a", "an") else float(m.group(2))
    return n * _UNITS[m.group(3)]


_DESC = ("largest to smallest", "highest to lowest", "biggest to smallest", "most to least", "descending",
         "largest first", "highest first", "biggest first", "newest first", "z to a", "reverse order",
         "decreasing", "high to low", "big to small")
_ASC = ("smallest to largest", "lowest to highest", "smallest to biggest", "least to most", "ascending",
        "smallest first", "lowest first", "cheapest first", "oldest first", "a to z", "alphabetical",
        "increasing", "low to high", "small to big")


_AGG = [("mean", r"average|mean"), ("median", r"median"), ("sum", r"total|sum|add(?:ed)? up|altogether"),
        ("count", r"how many|count|number of"), ("max", r"highest|maximum|max|largest|most|biggest|top"),
        ("min", r"lowest|minimum|min|smallest|least|cheapest|fewest")]


def aggregate_of(text: str) -> str | None:
    """The first aggregation word of a request: 'total amount' -> sum, 'average' -> mean."""
    t = text.lower()
    hits = [(m.start(), name) for name, pat in _AGG for m in [re.search(rf"\b(?:{pat})\b", t)] if m]
    return min(hits)[1] if hits else None


def order_of(text: str) -> str | None:
    """'from smallest to largest' -> ascending; 'highest first' -> descending; else None."""
    t = text.lower()
    d = min((t.find(p) for p in _DESC if p in t), default=-1)
    a = min((t.find(p) for p in _ASC if p in t), default=-1)
    if d < 0 and a < 0:
        return None
    if d < 0:
        return "ascending"
    if a < 0:
        return "descending"
    return "descending" if d < a else "ascending"


def extract(request: str, workdir: str | Path | None = None, *,
            files: dict[str, str] | None = None) -> Facts:
    """Read the request and the workspace; never raises on odd input.

    ``files`` (name -> content) stands in for a workspace (used for stored examples).
    """
    wd = Path(workdir) if workdir is not None else None
    if files is not None:
        facts = Facts(files=[(n, len(c.encode())) for n, c in sorted(files.items()) if not n.endswith("/")],
                      dirs=[n.rstrip("/") for n in sorted(files) if n.endswith("/")])
    else:
        found, folders = _scan(wd) if wd is not None and wd.is_dir() else ([], [])
        facts = Facts(files=found, dirs=folders)
    names = {f for f, _ in facts.files}
    basenames = {Path(f).name: f for f, _ in facts.files}
    for m in _ABS_RE.finditer(request):
        p = m.group(1)
        if p.startswith(("/", "~")) and len(p) > 1:
            facts.outside.append(p)
    for m in _FILE_RE.finditer(request):
        p = m.group(1)
        if p.startswith(("/", "~")) or p in facts.mentioned:
            continue
        ext = p.rsplit(".", 1)[-1].lower()
        if p not in names and ext not in _KNOWN_EXTS and p not in basenames:
            continue   # "e.g", "i.e": not a file
        facts.mentioned.append(basenames.get(p, p) if p not in names else p)
    for m in _EXT_RE.finditer(request):
        ext = (m.group(1) or m.group(2) or "").lower()
        if ext in _KNOWN_EXTS and f"*.{ext}" not in facts.globs:
            facts.globs.append(f"*.{ext}")
    facts.quoted = [next(g for g in m.groups() if g) for m in _QUOTED_RE.finditer(request)]
    m = re.search(r":\s*(.+?)\s*$", request)
    if m and not re.match(r"^\d", m.group(1)) and "/" not in request[m.start() - 3:m.start()]:
        facts.payload = m.group(1).strip().strip("'\"")
    facts.numbers = _NUM_RE.findall(request)
    facts.expression = arithmetic(request)
    facts.seconds = duration_s(request)
    m = _DUR_RE.search(request.lower())
    facts.delay = m.group(1) if m else None
    facts.order = order_of(request)
    facts.aggregate = aggregate_of(request)
    for name in [*facts.existing, *(f for f, _ in facts.files)]:
        if name.lower().endswith((".csv", ".tsv")) and name not in facts.columns and len(facts.columns) < 4:
            cols = (_header_text(files.get(name, "")) if files is not None
                    else _header(wd / name) if wd is not None else [])
            if cols:
                facts.columns[name] = cols
    low = request.lower()
    hits = []
    for cols in facts.columns.values():
        for c in cols:
            variants = {c.lower(), c.lower().replace("_", " ")}
            variants |= {part for part in re.split(r"[_\s-]+", c.lower()) if len(part) >= 4}
            pos = [m.start() for v in variants for m in re.finditer(rf"(?<!\w){re.escape(v)}s?(?!\w)", low)]
            if pos and c not in [h for _, h in hits]:
                hits.append((min(pos), c))
    facts.named_columns = [c for _, c in sorted(hits)]
    return facts
