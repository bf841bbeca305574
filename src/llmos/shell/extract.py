"""Deterministic pre-pass: facts about a request and its workspace, offered to the planner.

Map:
- ``Facts``: what a small model cannot be trusted to find by itself: the files in
  the workspace (with sizes), file names and paths the request mentions (existing
  or not, inside or outside the workspace), glob patterns (".tmp files" -> *.tmp),
  quoted strings, a trailing "...: text" payload, numbers, a duration in seconds,
  CSV column names, and an arithmetic expression read from words ("17 times 23
  plus 4" -> "17 * 23 + 4"; "15 percent of 240" -> "15 / 100 * 240").
- ``extract(request, workdir) -> Facts``. Also read: folders the request names, the
  search term ("mentions the word invoice" -> invoice), table cells the request names
  (``product = apples``), which columns hold numbers, and the extreme it asks for
  (highest -> max, cheapest -> min).
- ``spans(request)``: the request's word spans that could be a free-text argument
  (a reminder's message, an event's title), for the planner to offer as choices.

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

from llmos.shell.arith import arithmetic

__all__ = ["Facts", "extract", "arithmetic", "duration_s", "order_of", "spans", "extreme_of"]

MAX_LISTED = 40           # workspace entries shown to the planner
MAX_DEPTH = 2             # directory depth scanned
_SKIP_DIRS = {".git", "__pycache__", ".venv", "node_modules", ".llmos"}

_FILE_RE = re.compile(r"(?<![\w/.~-])((?:~|\.{1,2})?/?(?:[\w.-]+/)*[\w-]+(?:\.[A-Za-z0-9]{1,6})+)(?![\w/])")
_ABS_RE = re.compile(r"(?<![\w.])(~/?[\w.~/-]*|/[\w.~-][\w.~/-]*)")
_EXT_RE = re.compile(r"(?<![\w])\.([A-Za-z0-9]{1,6})\b(?:\s+files?)?|\b([A-Za-z0-9]{2,5})\s+files?\b")
_QUOTED_RE = re.compile(r"'([^']{1,200})'|\"([^\"]{1,200})\"|“([^”]{1,200})”")
_NUM_RE = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w])")
_KNOWN_EXTS = {"txt", "md", "csv", "json", "py", "png", "tmp", "log", "tsv", "html", "yaml", "yml",
               "sh", "ics", "xml", "jpg", "jpeg", "svg", "pdf", "ini", "toml", "cfg", "js", "c", "bak",
               "jsonl", "ndjson", "dat", "cache", "old", "orig", "out", "err", "gif", "webp", "bmp",
               "mp3", "wav", "mp4", "zip", "gz", "tar", "xlsx", "xls", "docx", "doc", "odt", "rtf",
               "css", "ts", "rs", "go", "java", "cpp", "h", "rb", "php", "sql", "db", "sqlite", "conf",
               "env", "lock", "rst", "tex", "bin", "swp"}
MAX_CELLS_SCANNED = 2000   # table cells read per file when matching named values
MAX_SPAN_WORDS = 8         # longest word span offered as a free-text argument


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
    extreme: str | None = None                           # max | min: "highest" / "cheapest" ...
    columns: dict[str, list[str]] = field(default_factory=dict)   # csv file -> header names
    named_columns: list[str] = field(default_factory=list)         # header names the request uses
    numeric: dict[str, list[str]] = field(default_factory=dict)   # csv file -> columns holding numbers
    values: list[tuple[str, str]] = field(default_factory=list)   # (column, cell) the request names
    terms: list[str] = field(default_factory=list)       # "mentions the word invoice" -> invoice
    target: str | None = None                            # the column asked for: "which store" -> store
    question: bool = False                               # asks about something, changes nothing
    request: str = ""                                    # the request itself (for spans)

    @property
    def numeric_columns(self) -> set[str]:
        return {c for cols in self.numeric.values() for c in cols}

    @property
    def named_values(self) -> list[str]:
        return [v for _, v in self.values]

    @property
    def value_columns(self) -> list[str]:
        return list(dict.fromkeys(c for c, _ in self.values))

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
        if self.values:
            out.append("Values named: " + ", ".join(f"{c} = {v}" for c, v in self.values))
        if self.terms:
            out.append("Search for: " + ", ".join(self.terms))
        if self.target:
            out.append(f"Answer names: {self.target}")
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


def _head(path: Path, n: int = 16384) -> str:
    try:
        with path.open(newline="", errors="replace") as f:
            return f.read(n)
    except OSError:
        return ""


def _table(head: str) -> tuple[list[str], list[list[str]]]:
    """Header and the first rows of a delimited text (as much as ``head`` holds)."""
    cols = _header_text(head)
    if not cols:
        return [], []
    try:
        dialect = csv.Sniffer().sniff(head.splitlines()[0], delimiters=",;\t|")
        rows = list(csv.reader(io.StringIO(head), dialect))[1:]
    except (csv.Error, IndexError):
        return cols, []
    if rows and not head.endswith("\n"):
        rows = rows[:-1]          # the last row may be cut
    return cols, [r for r in rows if r]


def _is_num(v: str) -> bool:
    try:
        float(v.strip().replace(",", ""))
        return True
    except ValueError:
        return False


def _numeric(cols: list[str], rows: list[list[str]]) -> list[str]:
    out = []
    for i, c in enumerate(cols):
        vals = [r[i] for r in rows if i < len(r) and r[i].strip()]
        if vals and all(_is_num(v) for v in vals):
            out.append(c)
    return out


def _cells_named(request: str, cols: list[str], rows: list[list[str]], numeric: list[str]) -> list[tuple[str, str]]:
    """Text cells that the request names as a word ("apples", "new york"), with their column."""
    low = " " + re.sub(r"[^\w\s-]", " ", request.lower()) + " "
    out: list[tuple[str, str]] = []
    seen = 0
    for i, c in enumerate(cols):
        if c in numeric:
            continue
        for r in rows:
            seen += 1
            if seen > MAX_CELLS_SCANNED:
                return out
            if i >= len(r):
                continue
            v = r[i].strip()
            if not v or len(v) > 40 or _is_num(v) or (c, v) in out:
                continue
            lv = v.lower()
            forms = {lv, lv + "s", lv + "es", lv[:-1] if lv.endswith("s") and len(lv) > 3 else lv}
            if any(f" {f} " in low for f in forms) and lv not in _CELL_STOP:
                out.append((c, v))
    return out


_CELL_STOP = {"a", "an", "the", "is", "of", "in", "to", "and", "or", "yes", "no", "it", "on", "at", "by",
              "for", "me", "my", "i", "total", "all", "per", "each", "file", "row", "rows", "data"}


def _header_text(head: str) -> list[str]:
    try:
        dialect = csv.Sniffer().sniff(head.splitlines()[0] if head else ",", delimiters=",;\t|")
        row = next(csv.reader(io.StringIO(head), dialect))
    except (csv.Error, StopIteration):
        return []
    return [c.strip() for c in row if c.strip()][:30]


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
    """The statistic a request asks for: 'total amount' -> sum, 'average' -> mean; a
    total, mean or count wins over an extreme ('the lowest total' -> sum, and the
    extreme is ``extreme_of``'s); else 'highest' -> max, 'cheapest' -> min."""
    t = _BOUND_RE.sub(" ", text.lower())
    hits = [(m.start(), name) for name, pat in _AGG for m in [re.search(rf"\b(?:{pat})\b", t)] if m]
    if not hits:
        return None
    whole = [h for h in hits if h[1] in ("mean", "median", "sum", "count")]
    first = min(whole or hits)[1]
    if first == "count" and re.search(r"\b(?:in total|in all|altogether|total)\b", t) and not re.search(
            r"\b(?:rows?|lines?|files?|records?|entries|items?)\b", t):
        return "sum"          # "how many apples were sold in total": a quantity, not a row count
    return first


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


_FOLDER_RE = re.compile(r"\b(?:folder|directory|dir)\s+(?:called|named)\s+['\"]?([\w-]+)"
                        r"|\b(?:a|the|new)\s+([\w-]+)\s+(?:folder|directory)\b"
                        r"|\b(?:folder|directory)\s+['\"]([\w-]+)['\"]")
_NOT_FOLDER = {"new", "same", "current", "this", "that", "the", "a", "my", "your", "whole", "parent", "home",
               "work", "working", "main", "other", "top", "root", "empty", "output"}


def _folders_named(request: str, dirs: list[str]) -> list[str]:
    """Folders the request names: existing ones by name, new ones as "a folder called X"."""
    out = []
    low = request.lower()
    for d in dirs:
        if re.search(rf"(?<![\w./-]){re.escape(d.lower())}/?(?![\w.-])", low):
            out.append(d)
    for m in _FOLDER_RE.finditer(request):
        name = next(g for g in m.groups() if g)
        if name.lower() not in _NOT_FOLDER and name not in out:
            out.append(name)
    return out


_TERM_RE = re.compile(
    r"\b(?:the (?:word|words|text|phrase|string|term|name)|mentions?|mentioning|contains?|containing|"
    r"about|includes?|including|says?|with the word|search(?:es|ing)? for|look(?:s|ing)? for|grep)"
    r"\s+['\"“]?((?:[\w@#.+-]+\s?){1,4})")
_TERM_STOP = {"the", "a", "an", "word", "words", "text", "phrase", "line", "lines", "it", "them", "this", "that",
              "in", "of", "what", "which", "any", "every", "all", "my", "file", "files", "string", "term"}


def _terms(request: str) -> list[str]:
    """What a search looks for: quoted text, or the word after "mentions", "the word", ..."""
    out: list[str] = []
    for m in _TERM_RE.finditer(request):
        words = m.group(1).split()
        while words and words[0].lower() in _TERM_STOP:
            words.pop(0)
        if not words:
            continue
        first = words[0].strip(".,;:!?'\"”")
        if first and first.lower() not in _TERM_STOP and not _FILE_RE.fullmatch(first) and first not in out:
            out.append(first)
    return out


_MAX_WORDS = ("highest", "most", "largest", "biggest", "maximum", "max", "top", "best", "longest",
              "greatest", "higher", "oldest", "heaviest", "fastest", "tallest", "bigger", "larger")
_MIN_WORDS = ("lowest", "least", "smallest", "fewest", "minimum", "min", "cheapest", "worst", "shortest",
              "lower", "youngest", "lightest", "slowest", "cheaper", "smaller")
_BOUND_RE = re.compile(r"\b(?:at (?:least|most)|no (?:more|less|fewer) than|not more than|up to)\b")


def extreme_of(text: str) -> str | None:
    """Which end the request asks for: 'highest', 'most' -> max; 'lowest', 'cheapest' -> min."""
    t = _BOUND_RE.sub(" ", text.lower())      # "at least 128 GB" is a bound, not the end asked for
    hi = min((m.start() for w in _MAX_WORDS for m in [re.search(rf"\b{w}\b", t)] if m), default=-1)
    lo = min((m.start() for w in _MIN_WORDS for m in [re.search(rf"\b{w}\b", t)] if m), default=-1)
    if hi < 0 and lo < 0:
        return None
    if hi < 0 or (0 <= lo < hi):
        return "min"
    return "max"


_ASKS_RE = re.compile(r"^\s*(?:what|what's|which|who|how|where|when|is|are|does|do|did|show|list|tell|give|"
                      r"display|print|can you tell)\b", re.I)
_CHANGES_RE = re.compile(
    r"\b(?:save|saved|write|create|make|add|put|append|insert|move|rename|copy|duplicate|delete|remove|erase|"
    r"set|remind|schedule|mark|sort|replace|plot|draw|chart|graph|run|execute|store|record|convert|turn|"
    r"mkdir|download|fetch|send)\b", re.I)


def is_question(request: str) -> bool:
    """A question that changes nothing ("what is on my list?", "which file is largest?")."""
    return bool(_ASKS_RE.search(request)) and not _CHANGES_RE.search(request)


_SPAN_EDGE_STOP = {"a", "an", "the", "to", "on", "at", "in", "of", "for", "and", "or", "my", "me", "i", "is",
                   "with", "by", "from", "it", "that", "this", "please", "as", "into", "called", "named"}


def spans(request: str) -> list[str]:
    """Word spans of the request (up to ``MAX_SPAN_WORDS`` words, as written, commas kept)
    that could be a free-text argument: no edge stop words, no file names; longest first."""
    toks = list(re.finditer(r"[\w'@#&:+-]+(?:\.[\w]+)*", request))
    out: list[str] = []
    for n in range(min(MAX_SPAN_WORDS, len(toks)), 0, -1):
        for i in range(len(toks) - n + 1):
            chunk = toks[i:i + n]
            words = [t.group(0) for t in chunk]
            if words[0].lower() in _SPAN_EDGE_STOP or words[-1].lower() in _SPAN_EDGE_STOP:
                continue
            if any(_FILE_RE.fullmatch(w) for w in words):
                continue
            text = request[chunk[0].start():chunk[-1].end()].strip("'\"")
            if re.search(r"[.;!?]\s", text):
                continue          # a span stays inside one sentence
            if text and text not in out:
                out.append(text)
    return out


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
        p = m.group(1).rstrip(".,;:!?")
        if p == "~" or len(p) > 1:
            facts.outside.append(p)
    for m in _FILE_RE.finditer(request):
        p = m.group(1)
        if p.startswith(("/", "~")) or p in facts.mentioned:
            continue
        ext = p.rsplit(".", 1)[-1].lower()
        if p not in names and ext not in _KNOWN_EXTS and p not in basenames:
            continue   # "e.g", "i.e": not a file
        facts.mentioned.append(basenames.get(p, p) if p not in names else p)
    for p in list(facts.mentioned):
        if p.startswith("../") and p not in facts.outside:
            facts.outside.append(p)             # leaves the workspace: checked as an outside path
    for d in _folders_named(request, facts.dirs):
        if d not in facts.mentioned:
            facts.mentioned.append(d)
    facts.terms = _terms(request)
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
    facts.extreme = extreme_of(request)
    facts.request = request
    facts.question = is_question(request)
    for name in [*facts.existing, *(f for f, _ in facts.files)]:
        if name.lower().endswith((".csv", ".tsv")) and name not in facts.columns and len(facts.columns) < 4:
            head = (files.get(name, "") if files is not None
                    else _head(wd / name) if wd is not None else "")
            cols, rows = _table(head)
            if cols:
                facts.columns[name] = cols
                facts.numeric[name] = _numeric(cols, rows)
                if name in facts.mentioned or len(facts.columns) == 1:
                    for cv in _cells_named(request, cols, rows, facts.numeric[name]):
                        if cv not in facts.values:
                            facts.values.append(cv)
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
    facts.target = _target(low, sorted(hits), facts)
    return facts


def _target(low: str, hits: list[tuple[int, str]], facts: Facts) -> str | None:
    """The column whose value answers the question: 'which store ...' -> store (a named
    column of text right after which/what); 'who ...' -> the table's first text column."""
    numeric = facts.numeric_columns
    for pos, c in hits:
        if c in numeric:
            continue
        before = low[max(0, pos - 24):pos]
        if re.search(r"\b(?:which|what)\s+(?:(?:one|ones|kind|type)\s+(?:of\s+)?(?:the\s+)?)?$", before):
            return c
    if re.search(r"\bwho\b", low):
        for cols in facts.columns.values():
            text = [c for c in cols if c not in numeric]
            if text:
                return text[0]
    return None
