"""The registry contract: path checks, schemas, validation errors, risk, error mapping."""

from __future__ import annotations

import dataclasses
import os

import llguidance
import pytest

from llmos.errors import InvalidArgument, LLMOSError, NotFound, PermissionDenied
from llmos.tools import KINDS, Tool, ToolContext, ToolRegistry, ToolResult, check_path, check_schema
from llmos.types import Risk


# ── check_path ──────────────────────────────────────────────────────────────
def test_check_path_inside(ws):
    assert check_path("a/b.txt", [ws]) == ws / "a" / "b.txt"
    assert check_path(".", [ws]) == ws
    assert check_path(str(ws / "x"), [ws]) == ws / "x"


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "/etc/passwd", "/", "~/.ssh/id_rsa"])
def test_check_path_outside_is_denied(ws, bad):
    with pytest.raises(PermissionDenied) as ei:
        check_path(bad, [ws])
    assert "outside" in ei.value.reason


def test_check_path_sibling_prefix_is_not_inside(tmp_path, ws):
    (tmp_path / "ws2").mkdir()
    with pytest.raises(PermissionDenied):
        check_path(str(tmp_path / "ws2" / "f"), [ws])


def test_check_path_follows_symlinks(tmp_path, ws):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    os.symlink(outside / "secret", ws / "link")
    os.symlink(outside, ws / "dirlink")
    for p in ("link", "dirlink/secret", "dirlink/new-file"):
        with pytest.raises(PermissionDenied):
            check_path(p, [ws])
    os.symlink(ws / "a", ws / "inner")     # a link that stays inside is fine
    assert check_path("inner", [ws]) == ws / "a"


@pytest.mark.parametrize("bad", ["", "a\x00b"])
def test_check_path_rejects_malformed(ws, bad):
    with pytest.raises(InvalidArgument) as ei:
        check_path(bad, [ws])
    assert ei.value.field == "path"


def test_check_path_no_roots(ws):
    with pytest.raises(PermissionDenied):
        check_path("x", [])


# ── ToolContext ─────────────────────────────────────────────────────────────
def test_context_is_frozen_and_roots_default_to_workdir(ws, tmp_path):
    ctx = ToolContext(workdir=ws)
    assert ctx.read_roots == (ws,) and ctx.write_roots == (ws,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.network = True  # type: ignore[misc]
    ro = tmp_path / "ro"
    ro.mkdir()
    ctx2 = ToolContext(workdir=ws, read_roots=(ro,))
    assert ctx2.resolve(str(ro / "f"), "r") == ro / "f"
    assert ctx2.resolve("f", "r") == ws / "f"             # write roots are readable
    with pytest.raises(PermissionDenied):
        ctx2.resolve(str(ro / "f"), "w")


# ── schemas ─────────────────────────────────────────────────────────────────
def test_every_builtin_follows_the_conventions(reg):
    names = [t.name for t in reg.list()]
    assert len(names) == len(set(names)) >= 30
    for t in reg.list():
        check_schema(t.parameters, t.name)
        assert t.kind in KINDS
        assert t.description.endswith(".") and len(t.description) <= 200, t.name
        assert isinstance(t.risk, Risk)
        for arg in t.path_args:
            assert arg in t.parameters["properties"]


def test_every_schema_compiles_to_a_grammar(reg):
    for s in reg.schemas():
        grammar = llguidance.LLMatcher.grammar_from_json_schema(s["parameters"])
        assert llguidance.LLMatcher.validate_grammar(grammar) == "", s["name"]


def test_schemas_are_copies(reg):
    s = reg.schemas()
    s[0]["parameters"]["properties"].clear()
    assert reg.schemas()[0]["parameters"]["properties"]
    assert set(s[0]) == {"name", "description", "parameters", "returns"}
    assert all(t.get("returns") for t in s), "every builtin tool says what it returns (planners read it)"


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False},
    {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}, "additionalProperties": False},
    {"type": "object", "properties": {"l": {"type": "array", "items": {"type": "boolean"}}},
     "additionalProperties": False},
    {"type": "object", "properties": {}},
    {"type": "object", "properties": {}, "required": ["x"], "additionalProperties": False},
])
def test_schema_conventions_are_enforced(schema):
    with pytest.raises(ValueError):
        check_schema(schema)


def _tool(name="t.x", fn=None, **kw):
    return Tool(name=name, kind="calc", risk=Risk.READ, description="A test tool.",
                parameters={"type": "object", "properties": {"n": {"type": "integer", "minimum": 0,
                                                                     "maximum": 9, "default": 3}},
                            "additionalProperties": False},
                fn=fn or (lambda ctx, a: ToolResult(a, "ok")), **kw)


def test_register_rejects_duplicates_and_bad_tools():
    r = ToolRegistry([_tool()])
    with pytest.raises(ValueError):
        r.register(_tool())
    with pytest.raises(ValueError):
        r.register(_tool(name="nodot"))
    with pytest.raises(ValueError):
        r.register(dataclasses.replace(_tool(name="t.y"), kind="weird"))
    with pytest.raises(ValueError):
        r.register(_tool(name="t.z", path_args={"missing": "r"}))


def test_get_unknown_suggests_close_names(reg):
    with pytest.raises(NotFound) as ei:
        reg.get("files.reed")
    assert "files.read" in str(ei.value)
    assert "files.list" in ei.value.hint
    assert [t.kind for t in reg.list(kind="calc")] == ["calc"]


# ── validation ──────────────────────────────────────────────────────────────
def test_defaults_are_filled(ctx):
    r = ToolRegistry([_tool()])
    assert r.call("t.x", {}, ctx).output == {"n": 3}


@pytest.mark.parametrize("args,field,expect", [
    ({}, "path", "required"),
    ({"path": 5}, "path", "a string"),
    ({"path": "x" * 2000}, "path", "characters"),
    ({"path": "a", "max_bytes": 0}, "max_bytes", "from 1"),
    ({"path": "a", "max_bytes": True}, "max_bytes", "an integer"),
    ({"path": "a", "colour": "red"}, "colour", "one of"),
])
def test_bad_arguments_name_the_field(reg, ctx, args, field, expect):
    with pytest.raises(InvalidArgument) as ei:
        reg.call("files.read", args, ctx)
    assert ei.value.field == field
    assert expect in str(ei.value) or expect in (ei.value.expected or "")


def test_enum_error_lists_choices(reg, ctx):
    with pytest.raises(InvalidArgument) as ei:
        reg.call("files.list", {"sort": "biggest"}, ctx)
    assert ei.value.field == "sort" and '"size"' in ei.value.expected


def test_arguments_must_be_an_object(reg, ctx):
    with pytest.raises(InvalidArgument):
        reg.call("files.read", ["notes.txt"], ctx)


def test_foreign_errors_are_mapped(ctx):
    def boom(ctx, a):
        raise ValueError("bad value")

    def oserr(ctx, a):
        raise OSError(28, "No space left on device")

    r = ToolRegistry([_tool(fn=boom), _tool(name="t.os", fn=oserr), _tool(name="t.ret", fn=lambda c, a: 5)])
    with pytest.raises(InvalidArgument, match="t.x: bad value"):
        r.call("t.x", {}, ctx)
    with pytest.raises(LLMOSError, match="No space left") as ei:
        r.call("t.os", {}, ctx)
    assert isinstance(ei.value.__cause__, OSError)
    with pytest.raises(LLMOSError, match="expected ToolResult"):
        r.call("t.ret", {}, ctx)


def test_paths_are_checked_before_the_tool_runs(ctx):
    ran = []
    t = Tool(name="t.p", kind="files", risk=Risk.WRITE, description="Test.", path_args={"p": "w"},
             parameters={"type": "object", "properties": {"p": {"type": "string", "maxLength": 99}},
                         "additionalProperties": False},
             fn=lambda c, a: ran.append(a) or ToolResult(None, ""))
    with pytest.raises(PermissionDenied):
        ToolRegistry([t]).call("t.p", {"p": "../escape"}, ctx)
    assert ran == []


def test_network_tools_need_the_capability(reg, ctx):
    with pytest.raises(PermissionDenied, match="network"):
        reg.call("net.fetch", {"url": "http://127.0.0.1:9/"}, ctx)


# ── risk ────────────────────────────────────────────────────────────────────
def test_risk_for_is_dynamic(reg, ctx, ws):
    (ws / "old.txt").write_text("x")
    (ws / "dir").mkdir()
    r = lambda name, **a: reg.get(name).risk_for(a, ctx)  # noqa: E731
    assert r("files.write", path="new.txt", content="") == Risk.WRITE
    assert r("files.write", path="old.txt", content="") == Risk.DESTRUCTIVE
    assert r("files.move", source="old.txt", destination="new.txt") == Risk.WRITE
    assert r("files.move", source="new.txt", destination="old.txt") == Risk.DESTRUCTIVE
    assert r("files.move", source="old.txt", destination="dir") == Risk.WRITE
    (ws / "dir" / "old.txt").write_text("y")
    assert r("files.move", source="old.txt", destination="dir") == Risk.DESTRUCTIVE
    assert r("files.copy", source="old.txt", destination="new.txt") == Risk.WRITE
    assert r("files.delete", path="*.tmp") == Risk.DESTRUCTIVE
    assert r("files.append", path="old.txt", content="z") == Risk.WRITE
    assert r("files.read", path="old.txt") == Risk.READ
    assert r("text.sort", path="old.txt") == Risk.READ
    assert r("text.sort", path="old.txt", save_to="sorted.txt") == Risk.WRITE
    assert r("text.sort", path="old.txt", save_to="old.txt") == Risk.DESTRUCTIVE
    assert r("text.replace", path="old.txt", find="x", replace="y") == Risk.DESTRUCTIVE
    assert r("python.run", code="print(1)") == Risk.EXEC
    assert r("python.run", code="print(1)", network=True) == Risk.NETWORK
    assert r("shell.run", command="ls") == Risk.EXEC
    assert r("net.fetch", url="https://example.org") == Risk.NETWORK
    # a path outside does not raise here (the call reports it); the base class is returned
    assert r("files.write", path="../x", content="") == Risk.WRITE


def test_tool_paths_for_the_kernel(reg, ctx, ws):
    t = reg.get("files.copy")
    assert t.paths({"source": "a", "destination": "b"}, ctx) == [(ws / "a", "r"), (ws / "b", "w")]
