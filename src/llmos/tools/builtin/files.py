"""File tools: list, read, write, append, move, copy, delete, mkdir, search, count.

Move and copy also take a pattern (``*.md``): every match goes into the destination
folder, which is made when missing.

Every path goes through ``ToolContext.resolve`` (workspace roots, symlinks and ``..``
resolved). Writes never follow a symlink at the target; delete and move act on a link
itself. Risk: reads READ; new files WRITE; overwrite, move/copy onto an existing file
and every delete DESTRUCTIVE (one step, even for a pattern that names many files).
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from llmos import params as P
from llmos.errors import InvalidArgument, NotFound, PermissionDenied
from llmos.tools.builtin._common import (
    PATH,
    SAVE_TO,
    TEXT_MAX_CHARS,
    boolean,
    copy_bytes,
    enum,
    expand,
    forbid_root,
    has_magic,
    human_size,
    integer,
    lexical,
    make_dirs,
    move_path,
    open_read,
    params,
    read_text,
    remove_path,
    string,
    walk,
    write_text,
)
from llmos.tools.registry import Tool, ToolContext, ToolResult, current_context, overwrite_risk
from llmos.tools.versioning import changing
from llmos.types import Risk

LIST_MAX_ENTRIES = 1000        # most entries files.list returns
SEARCH_MAX_MATCHES = 500       # most matching lines files.search returns
SEARCH_FILE_MAX_BYTES = 4 << 20  # files larger than this are skipped by files.search
COUNT_FILE_MAX_BYTES = 64 << 20  # files.count reads at most this much of each file


def _entry(ctx: ToolContext, p: Path) -> dict:
    st = p.lstat()
    kind = "link" if p.is_symlink() else "dir" if p.is_dir() else "file"
    return {"name": ctx.rel(p), "type": kind, "size": st.st_size if kind == "file" else 0,
            "modified": dt.datetime.fromtimestamp(st.st_mtime).isoformat(timespec="seconds")}


def list_files(ctx: ToolContext, a: dict) -> ToolResult:
    base = ctx.resolve(a["path"], "r")
    if not base.exists():
        raise NotFound(f"no such file or folder: {a['path']}")
    if base.is_file():
        paths = [base]
    else:
        paths = [p for p in walk(base, a["pattern"], a["recursive"])
                 if (not a["files_only"] or (p.is_file() and not p.is_symlink()))
                 and not (ctx.state is not None and ctx.state.holds(str(p)))]
    entries = [_entry(ctx, p) for p in paths]
    key = {"name": lambda e: e["name"], "size": lambda e: -e["size"],
           "modified": lambda e: e["modified"]}[a["sort"]]
    entries.sort(key=key, reverse=a["sort"] == "modified")
    files = [e for e in entries if e["type"] == "file"]
    largest = max(files, key=lambda e: e["size"]) if files else None
    smallest = min(files, key=lambda e: e["size"]) if files else None
    total = sum(e["size"] for e in files)
    shown = entries[: a["limit"]]
    out = {"path": ctx.rel(base), "entries": shown, "count": len(entries), "files": len(files),
           "total_size": total, "largest": largest, "smallest": smallest,
           "truncated": len(entries) > len(shown)}
    summary = f"{len(entries)} entries in {ctx.rel(base)}, {human_size(total)} in all"
    if largest:
        summary += f"; largest {largest['name']} ({human_size(largest['size'])})"
    return ToolResult(out, summary)


def read_file(ctx: ToolContext, a: dict) -> ToolResult:
    p = ctx.resolve(a["path"], "r")
    text, cut = read_text(p, a["max_bytes"])
    out = {"path": ctx.rel(p), "text": text, "lines": len(text.splitlines()),
           "chars": len(text), "truncated": cut}
    return ToolResult(out, f"read {ctx.rel(p)} ({out['lines']} lines" + (", cut" if cut else "") + ")")


def write_file(ctx: ToolContext, a: dict) -> ToolResult:
    p = ctx.resolve(a["path"], "w")
    if p.is_dir():
        raise InvalidArgument(f"{a['path']} is a folder", field="path", expected="a file path")
    existed = p.exists()
    n = write_text(p, a["content"])
    verb = "overwrote" if existed else "created"
    return ToolResult({"path": ctx.rel(p), "bytes": n, "created": not existed},
                      f"{verb} {ctx.rel(p)} ({human_size(n)})", [ctx.rel(p)])


def append_file(ctx: ToolContext, a: dict) -> ToolResult:
    p = ctx.resolve(a["path"], "w")
    text = a["content"]
    if not text.endswith("\n"):
        text += "\n"
    if p.exists() and p.stat().st_size:
        with open_read(p) as f:
            f.seek(-1, 2)
            if f.read(1) != b"\n":
                text = "\n" + text
    n = write_text(p, text, append=True)
    return ToolResult({"path": ctx.rel(p), "bytes": n}, f"appended {human_size(n)} to {ctx.rel(p)}",
                      [ctx.rel(p)])


def _target(ctx: ToolContext, src: Path, dest_arg: str) -> Path:
    dest = ctx.resolve(dest_arg, "w", field="destination")
    if dest.is_dir():
        dest = dest / src.name
    return dest


def _onto_risk(args: dict, ctx: ToolContext) -> Risk:
    """Move/copy: DESTRUCTIVE when the final target (inside a destination folder) exists;
    for a pattern, when any matching file's target does."""
    source = str(args.get("source", ""))
    if has_magic(source):
        folder = ctx.resolve(args["destination"], "w", field="destination")
        names = [p.name for p in expand(ctx, source, "w", field="source")]
        hit = folder.is_dir() and any((folder / n).exists() or (folder / n).is_symlink() for n in names)
        return Risk.DESTRUCTIVE if hit or (folder.exists() and not folder.is_dir()) else Risk.WRITE
    dest = _target(ctx, Path(source), args["destination"])
    return Risk.DESTRUCTIVE if dest.exists() or dest.is_symlink() else Risk.WRITE


def _many(ctx: ToolContext, a: dict, mode: str, verb: str, act) -> ToolResult:
    """Move or copy every entry a pattern names into the destination folder (made if missing)."""
    folder = ctx.resolve(a["destination"], "w", field="destination")
    if folder.exists() and not folder.is_dir():
        raise InvalidArgument(f"{a['destination']} is a file; a pattern goes into a folder",
                              field="destination", expected="a folder (new or existing)")
    srcs = [p for p in expand(ctx, a["source"], mode, field="source", must_match=True)
            if p != folder and folder not in p.parents]
    if verb == "moved":
        for p in srcs:
            forbid_root(ctx, p, "moving")
    make_dirs(folder)
    done = []
    for p in srcs:
        dest = folder / p.name
        act(p, dest)
        done.append(ctx.rel(dest))
    out = {"source": a["source"], "destination": ctx.rel(folder), "count": len(done), "files": done}
    return ToolResult(out, f"{verb} {len(done)} files into {ctx.rel(folder)}: {', '.join(done[:10])}"
                      + (" ..." if len(done) > 10 else ""), done)


def move_file(ctx: ToolContext, a: dict) -> ToolResult:
    if has_magic(a["source"]):
        return _many(ctx, a, "w", "moved", move_path)
    src = lexical(ctx, a["source"], field="source")
    if not src.exists() and not src.is_symlink():
        raise NotFound(f"no such file or folder: {a['source']}")
    forbid_root(ctx, src, "moving")
    dest = _target(ctx, src, a["destination"])
    if dest == src:
        raise InvalidArgument("source and destination are the same", field="destination",
                              expected="a different path")
    replaced = dest.exists()
    move_path(src, dest)
    out = {"source": ctx.rel(src), "destination": ctx.rel(dest), "replaced": replaced}
    return ToolResult(out, f"moved {ctx.rel(src)} to {ctx.rel(dest)}"
                      + (" (replaced the old file)" if replaced else ""), [ctx.rel(dest)])


def _copy_one(src: Path, dest: Path) -> None:
    ctx = current_context()
    if ctx is not None and ctx.state is not None and src.is_dir() and ctx.state.inside(str(src)):
        raise PermissionDenied(f"copying {ctx.rel(src)} is not allowed: it holds LLM OS's state",
                               reason=f"{src} holds the state directory {ctx.state.home}")
    if src.is_dir():
        # links inside are copied as links, never followed (they may point anywhere); each
        # file is opened under its root's handle (a hard-linked one is refused)
        with changing(dest, "copy"):       # one version for the whole tree
            shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True,
                            copy_function=lambda s, d: copy_bytes(Path(s), Path(d)))
    else:
        if dest.is_symlink():
            dest.unlink()
        copy_bytes(src, dest)              # both ends opened under their roots' handles


def copy_file(ctx: ToolContext, a: dict) -> ToolResult:
    if has_magic(a["source"]):
        return _many(ctx, a, "r", "copied", _copy_one)
    src = ctx.resolve(a["source"], "r", field="source")
    if not src.exists():
        raise NotFound(f"no such file or folder: {a['source']}")
    dest = _target(ctx, src, a["destination"])
    if dest == src:
        raise InvalidArgument("source and destination are the same", field="destination",
                              expected="a different path")
    replaced = dest.exists()
    _copy_one(src, dest)
    out = {"source": ctx.rel(src), "destination": ctx.rel(dest), "replaced": replaced}
    return ToolResult(out, f"copied {ctx.rel(src)} to {ctx.rel(dest)}", [ctx.rel(dest)])


def delete_files(ctx: ToolContext, a: dict) -> ToolResult:
    targets = [p for p in expand(ctx, a["path"], "w") if p.exists() or p.is_symlink()]
    for p in targets:
        forbid_root(ctx, p, "deleting")
        if p.is_dir() and not p.is_symlink() and not a["recursive"]:
            raise InvalidArgument(f"{ctx.rel(p)} is a folder; set recursive to delete it with its contents",
                                  field="recursive", expected="true to delete a folder")
    deleted = []
    for p in targets:
        if p.exists() or p.is_symlink():
            remove_path(p)
        deleted.append(ctx.rel(p))
    if not deleted:
        return ToolResult({"deleted": [], "count": 0}, f"nothing matches {a['path']}; nothing deleted")
    return ToolResult({"deleted": deleted, "count": len(deleted)},
                      f"deleted {len(deleted)}: {', '.join(deleted[:10])}" + (" ..." if len(deleted) > 10 else ""))


def make_dir(ctx: ToolContext, a: dict) -> ToolResult:
    p = ctx.resolve(a["path"], "w")
    if p.exists() and not p.is_dir():
        raise InvalidArgument(f"{a['path']} exists and is a file", field="path", expected="a new folder")
    existed = p.exists()
    make_dirs(p)
    return ToolResult({"path": ctx.rel(p), "created": not existed},
                      f"folder {ctx.rel(p)} {'already existed' if existed else 'created'}", [ctx.rel(p)])


def _text_files(ctx: ToolContext, pattern: str) -> tuple[list[Path], list[str]]:
    """The files a path, pattern or folder names, and the links skipped because they
    lead outside the agent's roots (a folder scan skips them; a named file raises)."""
    out, skipped = [], []
    for p in expand(ctx, pattern, "r", must_match=True):
        if p.is_dir():
            for q in walk(p, "*", recursive=True):
                try:
                    r = ctx.resolve(str(q), "r")
                except PermissionDenied:
                    skipped.append(ctx.rel(q))
                    continue
                if r.is_file():
                    out.append(r)
        elif p.is_file():
            out.append(p)
        else:
            raise NotFound(f"no such file: {ctx.rel(p)}")
    return out, skipped


def search_files(ctx: ToolContext, a: dict) -> ToolResult:
    needle = a["text"]
    fold = a.get("ignore_case")
    if fold is None:            # smart case (as ripgrep and vim): capitals in the text mean exact case
        fold = needle == needle.lower()
    want = needle.lower() if fold else needle
    matches, files = [], set()
    paths, skipped = _text_files(ctx, a["path"])
    for p in paths:
        if p.stat().st_size > SEARCH_FILE_MAX_BYTES:
            continue
        try:
            text, _ = read_text(p, SEARCH_FILE_MAX_BYTES)
        except Exception:  # binary files are skipped, not reported as errors
            continue
        for i, line in enumerate(text.splitlines(), 1):
            if want in (line.lower() if fold else line):
                files.add(ctx.rel(p))
                if len(matches) < a["limit"]:
                    matches.append({"path": ctx.rel(p), "line": i, "text": line[:500]})
    out = {"text": needle, "matches": matches, "count": len(matches), "files": sorted(files),
           "skipped": skipped}
    summary = f"{len(matches)} lines in {len(files)} files contain {needle!r}"
    if not a.get("save_to"):
        return ToolResult(out, summary)
    dest = ctx.resolve(a["save_to"], "w", field="save_to")
    write_text(dest, "".join(m["text"] + "\n" for m in matches))
    out["saved_to"] = ctx.rel(dest)
    return ToolResult(out, f"{summary}; saved those lines to {ctx.rel(dest)}", [ctx.rel(dest)])


def count_file(ctx: ToolContext, a: dict) -> ToolResult:
    rows, totals = [], {"lines": 0, "words": 0, "chars": 0}
    paths, skipped = _text_files(ctx, a["path"])
    for p in paths:
        text, _ = read_text(p, COUNT_FILE_MAX_BYTES)
        row = {"path": ctx.rel(p), "lines": len(text.splitlines()), "words": len(text.split()),
               "chars": len(text)}
        rows.append(row)
        for k in totals:
            totals[k] += row[k]
    out = {"files": rows, **totals, "skipped": skipped}
    if len(rows) == 1:
        r = rows[0]
        summary = f"{r['path']}: {r['lines']} lines, {r['words']} words, {r['chars']} characters"
    else:
        summary = f"{len(rows)} files: {totals['lines']} lines, {totals['words']} words in all"
    return ToolResult(out, summary)


_PATH_GLOB = {**PATH, "description": "file or folder path, or a pattern like *.txt"}

TOOLS = [
    Tool(name="files.list", returns="{path, entries: [{name, type, size, modified}], count, files, total_size, largest: {name, type, size, modified}, smallest: {name, type, size, modified}, truncated}", kind="files", risk=Risk.READ, fn=list_files, path_args={"path": "r"},
         description="List the files in a folder with their sizes; sort by size to find the largest file.",
         parameters=params(
             path={**PATH, "description": "folder to list", "default": "."},
             pattern=string("only names matching this pattern, like *.csv", 200, default="*"),
             recursive=boolean("also list inside sub-folders"),
             files_only=boolean("leave out folders"),
             sort=enum("order: name, size (largest first) or modified (newest first)",
                       ["name", "size", "modified"], default="name"),
             limit=integer("most entries to return", 1, LIST_MAX_ENTRIES, default=200))),
    Tool(name="files.read", returns="{path, text, lines, chars, truncated}", kind="files", risk=Risk.READ, fn=read_file, path_args={"path": "r"},
         description="Read a text file and return its contents.",
         parameters=params(["path"], path=PATH,
                           max_bytes=integer("most bytes to read", 1, P.TOOL_READ_MAX_BYTES,
                                             default=P.TOOL_READ_MAX_BYTES))),
    Tool(name="files.write", returns="{path, bytes, created}", kind="files", risk=Risk.WRITE, fn=write_file, path_args={"path": "w"},
         risk_fn=overwrite_risk("path"),
         description="Create a file with the given text, or replace the text of an existing file.",
         parameters=params(["path", "content"], path=PATH,
                           content=string("the full text of the file", TEXT_MAX_CHARS))),
    Tool(name="files.append", returns="{path, bytes}", kind="files", risk=Risk.WRITE, fn=append_file, path_args={"path": "w"},
         idempotent=False,
         description="Add text as new lines at the end of a file (the file is created if missing).",
         parameters=params(["path", "content"], path=PATH,
                           content=string("the text to add", TEXT_MAX_CHARS))),
    Tool(name="files.move", returns="{source, destination, replaced}", kind="files", risk=Risk.WRITE, fn=move_file, idempotent=False,
         path_args={"source": "w", "destination": "w"}, risk_fn=_onto_risk,
         description="Move or rename a file or folder, or move every file matching a pattern like "
                     "*.txt into a folder.",
         parameters=params(["source", "destination"],
                           source={**PATH, "description": "the file or folder to move, or a pattern"},
                           destination={**PATH, "description": "new path, or a folder to move it into"})),
    Tool(name="files.copy", returns="{source, destination, replaced}", kind="files", risk=Risk.WRITE, fn=copy_file,
         path_args={"source": "r", "destination": "w"}, risk_fn=_onto_risk,
         description="Copy a file or folder to a new path, or copy every file matching a pattern like "
                     "*.md into a folder.",
         parameters=params(["source", "destination"],
                           source={**PATH, "description": "the file or folder to copy, or a pattern"},
                           destination={**PATH, "description": "new path, or a folder to copy it into"})),
    Tool(name="files.delete", returns="{deleted: [paths], count}", kind="files", risk=Risk.DESTRUCTIVE, fn=delete_files, path_args={"path": "w"},
         description="Delete a file, or every file matching a pattern like *.tmp.",
         parameters=params(["path"], path=_PATH_GLOB,
                           recursive=boolean("also delete folders with everything in them"))),
    Tool(name="files.mkdir", returns="{path, created}", kind="files", risk=Risk.WRITE, fn=make_dir, path_args={"path": "w"},
         description="Create a folder (and any missing parent folders).",
         parameters=params(["path"], path=PATH)),
    Tool(name="files.search", returns="{text, matches: [{path, line, text}], count, files, skipped}", kind="files", risk=Risk.READ, fn=search_files, path_args={"path": "r", "save_to": "w"},
         risk_fn=overwrite_risk("save_to"),
         description="Find the lines that contain a text in a file or in all files of a folder; "
                     "save_to writes those lines to a file.",
         parameters=params(["text"], text=string("the text to look for", 200, min_length=1),
                           path={**_PATH_GLOB, "default": "."},
                           ignore_case={"type": "boolean", "description": "match upper and lower case "
                                        "alike (default: only when the text has no capitals)"},
                           limit=integer("most matching lines to return", 1, SEARCH_MAX_MATCHES,
                                         default=100),
                           save_to=SAVE_TO)),
    Tool(name="files.count", returns="{files: [{path, lines, words, chars}], lines, words, chars, skipped}", kind="files", risk=Risk.READ, fn=count_file, path_args={"path": "r"},
         description="Count the lines, words and characters in a text file (or files matching a pattern).",
         parameters=params(["path"], path=_PATH_GLOB)),
]
