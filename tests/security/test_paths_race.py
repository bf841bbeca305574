"""Issue 12, item 3: file tools open a checked path under its root's handle, not by name.

- A folder in the middle of a checked path swapped for a link out of the workspace
  between the check and the open is refused (reads and writes), never followed.
- The same swap raced by another thread while files.read runs never leaks the outside file.
- A hard link in the workspace to a file outside it is refused for reading and writing.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from llmos.errors import PermissionDenied
from llmos.tools.builtin._common import read_text, write_text
from llmos.tools.registry import Tool, ToolContext, ToolRegistry, ToolResult, default_registry
from llmos.types import Risk

SECRET = "outside secret\n"


@pytest.fixture(params=["openat2", "walk"])
def layout(request, tmp_path, monkeypatch):
    """Run each case with openat2 and with the O_NOFOLLOW walk a kernel without it gets."""
    if request.param == "walk":
        import llmos.tools.builtin._common as common

        monkeypatch.setattr(common, "_openat2_ok", False)
    ws, out = tmp_path / "ws", tmp_path / "outside"
    (ws / "sub").mkdir(parents=True)
    out.mkdir()
    (ws / "sub" / "f.txt").write_text("inside\n")
    (out / "f.txt").write_text(SECRET)
    return ws, out


def _swap(ws, out) -> None:
    os.rename(ws / "sub", ws / "sub.old")
    os.symlink(out, ws / "sub")


def _registry(fn) -> ToolRegistry:
    schema = {"type": "object", "properties": {}, "required": [], "additionalProperties": False}
    return ToolRegistry([Tool(name="x.swap", description="check, swap, open", parameters=schema,
                              risk=Risk.WRITE, fn=fn, kind="files")])


def test_a_folder_swapped_for_a_link_after_the_check_is_not_followed_on_read(layout):
    ws, out = layout

    def fn(ctx, args):
        p = ctx.resolve("sub/f.txt", "r")          # checked: inside the workspace
        _swap(ws, out)                             # the agent's own program swaps a folder
        return ToolResult(read_text(p)[0], "read")

    with pytest.raises(PermissionDenied):
        _registry(fn).call("x.swap", {}, ToolContext(workdir=ws))


def test_a_folder_swapped_for_a_link_after_the_check_is_not_followed_on_write(layout):
    ws, out = layout

    def fn(ctx, args):
        p = ctx.resolve("sub/new.txt", "w")
        _swap(ws, out)
        write_text(p, "planted\n")
        return ToolResult(None, "wrote")

    with pytest.raises(PermissionDenied):
        _registry(fn).call("x.swap", {}, ToolContext(workdir=ws))
    assert not (out / "new.txt").exists()


def test_a_raced_swap_never_leaks_the_outside_file(layout):
    ws, out = layout
    reg, ctx = default_registry(), ToolContext(workdir=ws)
    stop = threading.Event()

    def swapper():
        while not stop.is_set():
            try:
                os.rename(ws / "sub", ws / "sub.real")
                os.symlink(out, ws / "sub")
                os.unlink(ws / "sub")
                os.rename(ws / "sub.real", ws / "sub")
            except OSError:
                pass

    t = threading.Thread(target=swapper, daemon=True)
    t.start()
    leaked, t0 = 0, time.monotonic()
    try:
        while time.monotonic() - t0 < 1.0:
            try:
                res = reg.call("files.read", {"path": "sub/f.txt"}, ctx)
            except Exception:       # refused, or not found mid-swap: both fine
                continue
            leaked += res.output["text"] == SECRET
    finally:
        stop.set()
        t.join()
    assert leaked == 0


def test_a_hard_link_to_a_file_outside_is_refused(layout):
    ws, out = layout
    try:
        os.link(out / "f.txt", ws / "link.txt")
    except OSError as exc:
        pytest.skip(f"no hard links here: {exc}")
    reg, ctx = default_registry(), ToolContext(workdir=ws)
    with pytest.raises(PermissionDenied, match="hard-linked"):
        reg.call("files.read", {"path": "link.txt"}, ctx)
    with pytest.raises(PermissionDenied, match="hard-linked"):
        reg.call("files.write", {"path": "link.txt", "content": "overwritten\n"}, ctx)
    with pytest.raises(PermissionDenied, match="hard-linked"):
        reg.call("files.append", {"path": "link.txt", "content": "more\n"}, ctx)
    assert (out / "f.txt").read_text() == SECRET
    # an ordinary file still reads and writes
    assert reg.call("files.read", {"path": "sub/f.txt"}, ctx).output["text"] == "inside\n"
    reg.call("files.write", {"path": "sub/g.txt", "content": "new\n"}, ctx)
    assert (ws / "sub" / "g.txt").read_text() == "new\n"


def test_delete_move_and_mkdir_after_a_swap_do_not_reach_outside(layout):
    from llmos.tools.builtin._common import make_dirs, move_path, remove_path

    ws, out = layout
    (out / "keep.txt").write_text("keep\n")
    steps = {"delete": (lambda ctx: [ctx.resolve("sub/keep.txt", "w")], remove_path),
             "move": (lambda ctx: [ctx.resolve("sub/keep.txt", "w"), ctx.resolve("moved.txt", "w")],
                      move_path),
             "mkdir": (lambda ctx: [ctx.resolve("sub/newdir", "w")], make_dirs)}
    for name, (check, act) in steps.items():
        if (ws / "sub").is_symlink():
            os.unlink(ws / "sub")
            os.rename(ws / "sub.old", ws / "sub")
        (ws / "sub" / "keep.txt").write_text("inside\n")

        def fn(ctx, args, check=check, act=act):
            paths = check(ctx)                 # checked while sub is still a folder
            _swap(ws, out)
            act(*paths)
            return ToolResult(None, "done")

        with pytest.raises(PermissionDenied):
            _registry(fn).call("x.swap", {}, ToolContext(workdir=ws))
        assert (out / "keep.txt").read_text() == "keep\n", name
        assert not (out / "newdir").exists() and not (ws / "moved.txt").exists(), name
