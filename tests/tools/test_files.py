"""files.* tools: behaviour, bad arguments, and paths outside the workspace."""

from __future__ import annotations

import os

import pytest

from llmos.errors import InvalidArgument, NotFound, PermissionDenied, ToolError


@pytest.fixture
def tree(ws):
    (ws / "a.txt").write_text("x" * 10)
    (ws / "b.txt").write_text("y" * 300)
    (ws / "c.md").write_text("z" * 80)
    (ws / "sub").mkdir()
    (ws / "sub" / "d.txt").write_text("hello world\nsecond line\n")
    (ws / ".hidden").write_text("h")
    return ws


def test_list_sorted_by_size_finds_the_largest(call, tree):
    r = call("files.list", sort="size")
    names = [e["name"] for e in r.output["entries"]]
    assert names[0] == "b.txt"
    assert r.output["largest"]["name"] == "b.txt" and r.output["largest"]["size"] == 300
    assert ".hidden" not in names
    assert "b.txt" in r.summary


def test_list_pattern_recursive_and_limit(call, tree):
    r = call("files.list", pattern="*.txt", recursive=True, files_only=True)
    assert [e["name"] for e in r.output["entries"]] == ["a.txt", "b.txt", "sub/d.txt"]
    r = call("files.list", limit=1)
    assert len(r.output["entries"]) == 1 and r.output["truncated"]


def test_read_and_truncation(call, tree):
    r = call("files.read", path="sub/d.txt")
    assert r.output["text"] == "hello world\nsecond line\n" and r.output["lines"] == 2
    r = call("files.read", path="b.txt", max_bytes=5)
    assert r.output["text"] == "yyyyy" and r.output["truncated"]


def test_read_errors(call, tree, ws):
    with pytest.raises(NotFound):
        call("files.read", path="nope.txt")
    with pytest.raises(InvalidArgument):
        call("files.read", path="sub")
    (ws / "bin").write_bytes(b"\x00\x01\x02")
    with pytest.raises(ToolError, match="binary"):
        call("files.read", path="bin")


def test_write_creates_and_overwrites(call, ws):
    r = call("files.write", path="notes/n.txt", content="buy milk\n")
    assert (ws / "notes" / "n.txt").read_text() == "buy milk\n"
    assert r.output["created"] and r.files == ["notes/n.txt"]
    r = call("files.write", path="notes/n.txt", content="other")
    assert not r.output["created"] and (ws / "notes" / "n.txt").read_text() == "other"


def test_write_never_follows_a_symlink(call, ws, tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("keep")
    os.symlink(ws / "inner.txt", ws / "in-link")
    call("files.write", path="in-link", content="via link")       # resolved inside: fine
    assert (ws / "inner.txt").read_text() == "via link"
    os.symlink(target, ws / "out-link")
    with pytest.raises(PermissionDenied):
        call("files.write", path="out-link", content="pwned")
    assert target.read_text() == "keep"


def test_append_adds_lines(call, ws):
    (ws / "log.txt").write_text("one")
    call("files.append", path="log.txt", content="two")
    call("files.append", path="log.txt", content="three\n")
    assert (ws / "log.txt").read_text() == "one\ntwo\nthree\n"


def test_move_and_copy(call, ws):
    (ws / "draft.md").write_text("# t\n")
    r = call("files.move", source="draft.md", destination="final.md")
    assert (ws / "final.md").exists() and not (ws / "draft.md").exists()
    assert r.output == {"source": "draft.md", "destination": "final.md", "replaced": False}
    (ws / "dir").mkdir()
    call("files.copy", source="final.md", destination="dir")
    assert (ws / "dir" / "final.md").read_text() == "# t\n" and (ws / "final.md").exists()
    call("files.copy", source="dir", destination="dir2")
    assert (ws / "dir2" / "final.md").exists()
    with pytest.raises(InvalidArgument):
        call("files.move", source="final.md", destination="final.md")
    with pytest.raises(NotFound):
        call("files.move", source="ghost", destination="x")


def test_copy_and_move_a_pattern_into_a_folder(call, reg, ctx, ws):
    from llmos.types import Risk

    for n in ("a.md", "b.md", "c.txt"):
        (ws / n).write_text(n)
    assert reg.get("files.copy").risk_for({"source": "*.md", "destination": "backup"}, ctx) == Risk.WRITE
    r = call("files.copy", source="*.md", destination="backup")          # the folder is made
    assert sorted(r.output["files"]) == ["backup/a.md", "backup/b.md"] and r.output["count"] == 2
    assert (ws / "a.md").exists() and not (ws / "backup" / "c.txt").exists()
    # copying again would replace the copies: destructive
    assert reg.get("files.copy").risk_for({"source": "*.md", "destination": "backup"}, ctx) == Risk.DESTRUCTIVE
    r = call("files.move", source="*.md", destination="old")
    assert r.output["count"] == 2 and not (ws / "a.md").exists() and (ws / "old" / "b.md").read_text() == "b.md"
    with pytest.raises(InvalidArgument):
        call("files.move", source="*.txt", destination="old/a.md")      # a pattern goes into a folder
    with pytest.raises(NotFound):
        call("files.copy", source="*.png", destination="pics")


def test_copy_of_a_folder_keeps_links_as_links(call, ws, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    (ws / "d").mkdir()
    os.symlink(secret, ws / "d" / "l")
    call("files.copy", source="d", destination="e")
    assert os.path.islink(ws / "e" / "l")
    with pytest.raises(PermissionDenied):
        call("files.read", path="e/l")


def test_delete_by_pattern_is_one_step(call, ws):
    for n in ("x.tmp", "y.tmp", "keep.txt"):
        (ws / n).write_text(n)
    r = call("files.delete", path="*.tmp")
    assert sorted(r.output["deleted"]) == ["x.tmp", "y.tmp"]
    assert (ws / "keep.txt").exists() and not (ws / "x.tmp").exists()
    r = call("files.delete", path="*.tmp")
    assert r.output["count"] == 0 and "nothing" in r.summary


def test_delete_folder_needs_recursive_and_root_is_refused(call, ws):
    (ws / "d").mkdir()
    (ws / "d" / "f").write_text("1")
    with pytest.raises(InvalidArgument) as ei:
        call("files.delete", path="d")
    assert ei.value.field == "recursive"
    call("files.delete", path="d", recursive=True)
    assert not (ws / "d").exists()
    (ws / "sub").mkdir()
    for root in (".", "*/..", "sub/..", str(ws), "sub/../.."):
        with pytest.raises(PermissionDenied):
            call("files.delete", path=root, recursive=True)
    assert ws.exists()


def test_delete_removes_a_link_not_its_target(call, ws, tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("keep")
    os.symlink(target, ws / "l.tmp")
    call("files.delete", path="*.tmp")
    assert not os.path.lexists(ws / "l.tmp") and target.read_text() == "keep"


def test_mkdir(call, ws):
    r = call("files.mkdir", path="a/b/c")
    assert (ws / "a" / "b" / "c").is_dir() and r.output["created"]
    assert not call("files.mkdir", path="a/b/c").output["created"]
    (ws / "f").write_text("")
    with pytest.raises(InvalidArgument):
        call("files.mkdir", path="f")


def test_search(call, tree):
    r = call("files.search", text="second")
    assert r.output["matches"] == [{"path": "sub/d.txt", "line": 2, "text": "second line"}]
    assert call("files.search", text="SECOND", ignore_case=True).output["count"] == 1
    # smart case: capitals in the text mean the exact case
    assert call("files.search", text="SECOND").output["count"] == 0
    assert call("files.search", text="Second").output["count"] == 0


def test_search_saves_the_matching_lines(call, tree, ws):
    r = call("files.search", text="second", path="sub", save_to="found.txt")
    assert (ws / "found.txt").read_text() == "second line\n" and r.files == ["found.txt"]
    assert r.output["saved_to"] == "found.txt" and "saved those lines to found.txt" in r.summary


def test_count_lines_words(call, ws):
    (ws / "poem.txt").write_text("roses are red\nviolets are blue\nsugar is sweet\nand so are you\nthe end\n")
    r = call("files.count", path="poem.txt")
    assert (r.output["lines"], r.output["words"]) == (5, 15)
    assert "5 lines" in r.summary
    (ws / "two.txt").write_text("a\nb")
    r = call("files.count", path="*.txt")
    assert r.output["lines"] == 7 and len(r.output["files"]) == 2


@pytest.mark.parametrize("tool,args", [
    ("files.read", {"path": "../outside.txt"}),
    ("files.read", {"path": "/etc/shadow"}),
    ("files.read", {"path": "~/.ssh/id_rsa"}),
    ("files.list", {"path": ".."}),
    ("files.write", {"path": "../evil.txt", "content": "x"}),
    ("files.write", {"path": "/tmp/evil.txt", "content": "x"}),
    ("files.append", {"path": "sub/../../evil.txt", "content": "x"}),
    ("files.copy", {"source": "~/.ssh/id_rsa", "destination": "id_rsa"}),
    ("files.copy", {"source": "a.txt", "destination": "../a.txt"}),
    ("files.move", {"source": "a.txt", "destination": "/tmp/a.txt"}),
    ("files.move", {"source": "../outside.txt", "destination": "in.txt"}),
    ("files.delete", {"path": "../*"}),
    ("files.delete", {"path": "/tmp/*"}),
    ("files.mkdir", {"path": "../newdir"}),
    ("files.search", {"text": "root", "path": "/etc"}),
    ("files.count", {"path": "/etc/passwd"}),
])
def test_paths_outside_the_workspace_are_denied(reg, ctx, tree, tmp_path, tool, args):
    (tmp_path / "outside.txt").write_text("outside")
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(PermissionDenied):
        reg.call(tool, args, ctx)
    assert sorted(os.listdir(tmp_path)) == before
    assert (tmp_path / "outside.txt").read_text() == "outside"
    assert (tree / "a.txt").exists()


def test_symlink_out_is_denied_for_reads_and_skipped_in_scans(call, ws, tmp_path):
    (tmp_path / "secret.txt").write_text("root:secret")
    os.symlink(tmp_path / "secret.txt", ws / "link.txt")
    os.symlink(tmp_path, ws / "dirlink")
    (ws / "ok.txt").write_text("root: fine")
    with pytest.raises(PermissionDenied):
        call("files.read", path="link.txt")
    with pytest.raises(PermissionDenied):
        call("files.read", path="dirlink/secret.txt")
    r = call("files.search", text="root")
    assert [m["path"] for m in r.output["matches"]] == ["ok.txt"]
    assert "link.txt" in r.output["skipped"]
    with pytest.raises(PermissionDenied):
        call("files.count", path="*.txt")
