"""The repository a development run works on: its files, its test command, its scratch copy.

Map:
- ``Repo``: the directory (resolved), its text files (relative POSIX paths, sorted) and
  the test command with where it came from.
- ``open_repo(path, test_cmd=None)``: read a repository once; one-line errors for a
  path that is not a directory, an empty or too large tree, or no tests to run.
- ``detect_tests(root, files)``: ``make test`` (a Makefile with a ``test`` target), the
  ``test`` script of package.json (``npm test``), pytest (its config, a conftest.py or
  test files), else None.
- ``is_test(rel)``: whether a file is one of the tests (its lines are not the model's to change).
- ``relevant(repo, texts, request, output, budget)``: the files to show the model, most
  relevant first, within ``budget`` characters.
- ``scratch_copy(repo)``: a copy of the tree in a fresh temporary directory (the run
  edits and tests only this copy, never the repository).
- ``unified(path, before, after)``: one file's unified diff (``None`` side: absent).

Files under ``SKIP_DIRS`` (VCS, caches, virtual environments, node_modules) are never
read, copied or edited; neither are files that do not decode as UTF-8.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from llmos.errors import InvalidArgument

__all__ = ["Repo", "open_repo", "detect_tests", "is_test", "relevant", "scratch_copy", "unified", "SKIP_DIRS",
           "PYTEST_CMD"]

SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".venv", "venv", "env", "node_modules",
                       ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox", ".nox", "build", "dist",
                       ".eggs", ".idea", ".vscode"})
MAX_FILES = 2000                  # text files a repository may hold
MAX_FILE_BYTES = 200_000          # larger files are not read (nor shown to the model)
MAX_TREE_BYTES = 50_000_000       # bytes copied into the scratch copy at most
PYTEST_CMD = "python -m pytest -q -p no:cacheprovider"
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")


@dataclass(frozen=True)
class Repo:
    root: Path                    # the repository, resolved; never written before approval
    files: tuple[str, ...]        # text files, relative POSIX paths, sorted
    test_cmd: str                 # the shell command that runs its tests
    test_source: str              # where test_cmd came from ("--test-cmd", "Makefile", ...)


def _walk(root: Path) -> tuple[list[str], int]:
    """(text files, bytes in the tree) under ``root``, skipping SKIP_DIRS and links."""
    out: list[str] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")
                             and not os.path.islink(os.path.join(dirpath, d)))
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                continue
            try:
                size = os.path.getsize(p)
            except OSError:
                continue
            total += size
            if size > MAX_FILE_BYTES or not _is_text(p):
                continue
            out.append(Path(os.path.relpath(p, root)).as_posix())
            if len(out) > MAX_FILES:
                raise InvalidArgument(f"--repo: {root} holds more than {MAX_FILES} text files",
                                      field="repo", expected=f"a repository of at most {MAX_FILES} files")
    return out, total


def _is_text(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            data = f.read(8192)
        data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return b"\x00" not in data


def open_repo(path: str | Path, test_cmd: str | None = None) -> Repo:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise InvalidArgument(f"--repo: {root} is not a directory", field="repo",
                              expected="an existing directory holding the project")
    root = root.resolve()
    files, total = _walk(root)
    if not files:
        raise InvalidArgument(f"--repo: {root} holds no text files", field="repo",
                              expected="a directory with the project's source files")
    if total > MAX_TREE_BYTES:
        raise InvalidArgument(f"--repo: {root} holds {total} bytes, more than {MAX_TREE_BYTES}",
                              field="repo", expected=f"a repository of at most {MAX_TREE_BYTES} bytes")
    if test_cmd is not None:
        if not test_cmd.strip() or "\x00" in test_cmd:
            raise InvalidArgument("--test-cmd: expected a shell command, got nothing", field="test_cmd",
                                  expected="a command such as 'make test'")
        return Repo(root, tuple(files), test_cmd.strip(), "--test-cmd")
    found = detect_tests(root, files)
    if found is None:
        raise InvalidArgument(f"--repo: {root} has no tests to run (no Makefile 'test' target, no "
                              "package.json test script, no pytest tests)", field="repo",
                              expected="a project with tests", hint="name the command with --test-cmd")
    return Repo(root, tuple(files), *found)


def detect_tests(root: Path, files: list[str] | tuple[str, ...]) -> tuple[str, str] | None:
    """(command, where it came from) for the project's tests, or None."""
    names = set(files)
    if "Makefile" in names:
        text = (root / "Makefile").read_text(errors="replace")
        if re.search(r"^test\s*:", text, re.M):
            return "make test", "Makefile"
    if "package.json" in names:
        try:
            scripts = json.loads((root / "package.json").read_text()).get("scripts") or {}
        except (ValueError, AttributeError):
            scripts = {}
        if isinstance(scripts, dict) and isinstance(scripts.get("test"), str):
            return "npm test", "package.json"
    if "pytest.ini" in names or "conftest.py" in names or any(f.endswith("/conftest.py") for f in files):
        return PYTEST_CMD, "pytest"
    for cfg, marker in (("pyproject.toml", "[tool.pytest"), ("setup.cfg", "[tool:pytest]"),
                        ("tox.ini", "[pytest]")):
        if cfg in names and marker in (root / cfg).read_text(errors="replace"):
            return PYTEST_CMD, "pytest"
    if any(_is_test_file(f) for f in files):
        return PYTEST_CMD, "pytest"
    return None


def _is_test_file(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def is_test(rel: str) -> bool:
    """Whether a file is one of the project's tests (by the usual names and folders)."""
    parts = rel.split("/")
    name = parts[-1]
    return (_is_test_file(rel) or any(p in ("tests", "test", "__tests__", "spec") for p in parts[:-1])
            or any(x in name for x in (".test.", ".spec.", "_test.go")))


def relevant(repo: Repo, texts: dict[str, str], request: str, output: str, budget: int) -> list[str]:
    """The files to show the model, most relevant first, their text within ``budget`` chars.

    Order: files the request or the test output names; then files sharing words with
    the request (identifiers, file stems); then the rest, smallest first. Only source-like
    files are shown beyond the named ones (no lock files or data dumps)."""
    words = {w.lower() for w in _WORD.findall(request + "\n" + output[-4000:])}
    hay = request + "\n" + output

    def score(rel: str) -> tuple:
        name = rel.rsplit("/", 1)[-1]
        stem = name.rsplit(".", 1)[0].lower()
        named = rel in hay or name in hay
        shared = len(words & {w.lower() for w in _WORD.findall(texts.get(rel, "")[:20000])})
        return (not named, stem not in words, -shared, len(texts.get(rel, "")), rel)

    chosen: list[str] = []
    used = 0
    for rel in sorted(texts, key=score):
        n = len(texts[rel])
        if used + n > budget:
            continue
        if not (rel in hay or _source_like(rel)):
            continue
        chosen.append(rel)
        used += n
    return chosen


_SOURCE_EXT = (".py", ".js", ".ts", ".mjs", ".cjs", ".jsx", ".tsx", ".go", ".rs", ".rb", ".java", ".c", ".h",
               ".cpp", ".hpp", ".sh", ".toml", ".cfg", ".ini", ".md", ".txt", ".json", ".yaml", ".yml")


def _source_like(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return name in ("Makefile", "Dockerfile") or (name.endswith(_SOURCE_EXT) and "lock" not in name)


def scratch_copy(repo: Repo) -> Path:
    """A copy of the repository's tree (SKIP_DIRS left out) in a fresh temporary directory."""
    dest = Path(tempfile.mkdtemp(prefix="llmos-dev-")) / repo.root.name
    shutil.copytree(repo.root, dest, symlinks=True,
                    ignore=lambda d, names: [n for n in names if n in SKIP_DIRS or n.endswith(".egg-info")])
    return dest


def unified(path: str, before: str | None, after: str | None) -> str:
    a = [] if before is None else before.splitlines(keepends=True)
    b = [] if after is None else after.splitlines(keepends=True)
    lines = difflib.unified_diff(a, b, "/dev/null" if before is None else f"a/{path}",
                                 "/dev/null" if after is None else f"b/{path}")
    out = []
    for line in lines:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)
