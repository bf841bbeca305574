"""The model's edits: parsed from its reply, checked, applied to file texts in memory.

Map:
- ``Edit``: one change to one file: ``search`` text replaced by ``replace`` (``search``
  empty: create the file, or append to it), or the whole new text (``whole``).
- ``parse(reply) -> list[Edit]``: SEARCH/REPLACE blocks, unified diffs (each hunk becomes
  a search/replace of its old and new lines), or a path line followed by a fenced block
  that holds the whole file. A reply with none of these is rejected.
- ``apply(edits, texts) -> dict[path, new text]``: all or nothing. Rejected
  (``EditRejected``, with the reason the model is shown on its next try) when a path
  leaves the repository, an existing test's lines are changed (adding is allowed) or lies under a skipped folder, a SEARCH text is not in the file
  or is in it more than once, or a Python file no longer compiles.

NOTE (matching). A SEARCH text must match exactly once. When it does not match as
written, two looser readings are tried in order, each also only when unique: lines
compared without trailing blanks, then lines compared without any surrounding blanks
(the replacement is then re-indented by the difference the first matched line shows).
Small models copy indentation badly; they rarely invent a unique wrong line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from llmos.dev.repo import SKIP_DIRS
from llmos.errors import ToolError

__all__ = ["Edit", "EditRejected", "parse", "apply"]

MAX_EDITS = 40                    # edits one reply may hold


class EditRejected(ToolError):
    """The model's reply could not be applied; the message says why (shown to it next try)."""


@dataclass(frozen=True)
class Edit:
    path: str                     # relative POSIX path as the model wrote it (checked by apply)
    search: str = ""              # text to find ("" with whole None: create or append)
    replace: str = ""             # text to put in its place
    whole: str | None = None      # the file's whole new text (a fenced-file reply)


_BLOCK = re.compile(r"^[ \t]*<{5,9} ?SEARCH[^\n]*\n(.*?)^[ \t]*={5,9}[ \t]*\n(.*?)^[ \t]*>{5,9} ?REPLACE[^\n]*$",
                    re.M | re.S)
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
_PATHLIKE = re.compile(r"[\w./-]*[\w-]\.[A-Za-z0-9]{1,8}|[\w.-]*/[\w./-]*[\w-]|[\w./-]*(?:Makefile|Dockerfile)")


def _path_before(text: str) -> str | None:
    """The file path written on the last non-empty line of ``text`` (markup around it dropped)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if not line or line.startswith("```"):
            continue
        line = re.sub(r"^(#+|\*\*|//|File:|file:|Path:|path:|-)\s*", "", line).strip("*`:'\" ")
        m = _PATHLIKE.fullmatch(line) or _PATHLIKE.search(line.split()[-1] if line.split() else "")
        return m.group(0) if m else None
    return None


def parse(reply: str) -> list[Edit]:
    if not isinstance(reply, str) or not reply.strip():
        raise EditRejected("the reply was empty")
    edits: list[Edit] = []
    blocks = list(_BLOCK.finditer(reply))
    if blocks:
        prev = 0
        last_path: str | None = None
        for m in blocks:
            head = reply[prev:m.start()]
            path = _path_before(head) or last_path
            if path is None:
                raise EditRejected("a SEARCH/REPLACE block has no file path on the line before it")
            edits.append(Edit(path, _body(m.group(1)), _body(m.group(2))))
            last_path, prev = path, m.end()
    elif re.search(r"^@@ .* @@", reply, re.M):
        edits = _parse_unified(reply)
    else:
        for m in _FENCE.finditer(reply):
            path = _path_before(reply[:m.start()])
            if path is not None:
                edits.append(Edit(path, whole=m.group(1)))
    if not edits:
        raise EditRejected("the reply holds no SEARCH/REPLACE block, unified diff or file in a fenced "
                           "block after its path")
    if len(edits) > MAX_EDITS:
        raise EditRejected(f"the reply holds {len(edits)} edits, more than {MAX_EDITS}")
    return edits


def _body(text: str) -> str:
    """A block's text: as written, with a line end at the end when it has any text."""
    return text if not text or text.endswith("\n") else text + "\n"


def _parse_unified(reply: str) -> list[Edit]:
    edits: list[Edit] = []
    path: str | None = None
    old: list[str] = []
    new: list[str] = []
    in_hunk = False

    def flush() -> None:
        nonlocal old, new
        if path is not None and (old or new):
            created = all(x == "" for x in old) and not old
            edits.append(Edit(path, "" if created else "".join(old), "".join(new)))
        old, new = [], []

    for line in reply.splitlines(keepends=True):
        body = line.rstrip("\n")
        if body.startswith("+++ "):
            flush()
            target = body[4:].split("\t")[0].strip()
            path = None if target == "/dev/null" else re.sub(r"^[ab]/", "", target)
            in_hunk = False
        elif body.startswith("--- "):
            flush()
            in_hunk = False
        elif body.startswith("@@"):
            flush()
            in_hunk = True
        elif body.startswith("```") or body.startswith("diff ") or body.startswith("index "):
            flush()
            in_hunk = False
        elif in_hunk:
            text = line[1:] if line[:1] in " +-" else line
            text = text if text.endswith("\n") else text + "\n"
            if line.startswith("+"):
                new.append(text)
            elif line.startswith("-"):
                old.append(text)
            elif line.startswith("\\"):
                continue
            else:
                old.append(text)
                new.append(text)
    flush()
    return edits


def _check_path(path: str) -> str:
    p = path.strip()
    while p.startswith("./"):
        p = p[2:]
    pp = PurePosixPath(p)
    if not p or pp.is_absolute() or ".." in pp.parts or "\\" in p or "\x00" in p:
        raise EditRejected(f"{path}: the path must be relative and stay inside the repository")
    if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in pp.parts[:-1]):
        raise EditRejected(f"{path}: files under {pp.parts[0]}/ are not edited")
    if pp.name in ("", ".", "..") or len(p) > 300:
        raise EditRejected(f"{path}: not a file path")
    return str(pp)


def apply(edits: list[Edit], texts: dict[str, str], protected: frozenset[str] | set[str] = frozenset()
          ) -> dict[str, str]:
    """The new text of every file the edits change (``texts``: the current text of each
    file by path; ``protected``: files whose lines may not be changed, only added to).
    Nothing partial: the first edit that cannot apply rejects the reply."""
    out: dict[str, str] = {}
    for e in edits:
        path = _check_path(e.path)
        cur = out.get(path, texts.get(path))
        if path in protected and (e.whole is not None or e.search.strip()):
            raise EditRejected(f"{path} is one of the project's tests: change the code it tests, not the "
                               "test (a new test goes at the end of a file or in a new file)")
        if e.whole is not None:
            out[path] = _body(e.whole)
            continue
        if not e.search.strip():
            if cur is None:
                out[path] = e.replace
            else:
                sep = "" if not cur or cur.endswith("\n") else "\n"
                out[path] = cur + sep + ("\n" if cur.strip() and not cur.endswith("\n\n") else "") + e.replace
            continue
        if cur is None:
            raise EditRejected(f"{path}: no such file (to create one, leave SEARCH empty)")
        out[path] = _replace(path, cur, e.search, e.replace)
    for path, text in out.items():
        if texts.get(path) == text and len(out) == 1:
            raise EditRejected(f"{path}: the edit changes nothing")
        if path.endswith(".py"):
            try:
                compile(text, path, "exec")
            except SyntaxError as err:
                raise EditRejected(f"{path}: after the edit line {err.lineno} is not valid Python "
                                   f"({err.msg})") from None
    return out


def _replace(path: str, text: str, search: str, replace: str) -> str:
    n = text.count(search)
    if n == 1:
        return text.replace(search, replace, 1)
    if n > 1:
        raise EditRejected(f"{path}: the SEARCH text appears {n} times; include more lines to make it unique")
    lines = text.splitlines(keepends=True)
    want = [ln for ln in search.splitlines()]
    while want and not want[0].strip():
        want.pop(0)
    while want and not want[-1].strip():
        want.pop()
    if not want:
        raise EditRejected(f"{path}: the SEARCH text is only blank lines")
    for norm in (str.rstrip, str.strip):
        target = [norm(w) for w in want]
        hits = [i for i in range(len(lines) - len(target) + 1)
                if [norm(x) for x in lines[i:i + len(target)]] == target]
        if len(hits) == 1:
            i = hits[0]
            new = replace.splitlines(keepends=True)
            if norm is str.strip:
                new = _reindent(new, _indent(want[0]), _indent(lines[i]))
            if new and not new[-1].endswith("\n"):
                new[-1] += "\n"
            return "".join(lines[:i] + new + lines[i + len(target):])
        if len(hits) > 1:
            raise EditRejected(f"{path}: the SEARCH text appears {len(hits)} times; include more lines "
                               "to make it unique")
    first = want[0].strip()
    raise EditRejected(f"{path}: the SEARCH text is not in the file (its first line {first[:80]!r} "
                       + ("is there but the lines after it differ)" if any(first == ln.strip() for ln in lines)
                          else "is not there either)"))


def _indent(line: str) -> str:
    return line[:len(line) - len(line.lstrip())]


def _reindent(lines: list[str], was: str, now: str) -> list[str]:
    out = []
    for ln in lines:
        if ln.startswith(was) and ln.strip():
            out.append(now + ln[len(was):])
        elif ln.strip():
            out.append(now + ln.lstrip() if len(_indent(ln)) < len(was) else ln)
        else:
            out.append(ln)
    return out
