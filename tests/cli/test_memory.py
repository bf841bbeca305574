"""``llmos memory list | search | forget`` (issue 13, item 5): the person sees and deletes
everything remembered, across agents, in a kernel booted in-process and through the daemon;
bad input is one line naming what was expected."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llmos.cli import app
from llmos.config import load_config
from llmos.hal.fake import FakeHAL
from llmos.kernel import SyncKernel
from llmos.llm.embed import FakeEmbedder
from llmos.tools.registry import default_registry


@pytest.fixture
def seeded(home, monkeypatch):
    monkeypatch.setattr("llmos.kernel.memory.default_embedder", lambda: FakeEmbedder())
    ids = {}
    with SyncKernel(load_config(env={"LLMOS_HOME": str(home)}), hal=FakeHAL(), tools=default_registry()) as k:
        for name in ("alice", "bob"):
            k.syscall("root", "agent.create", {"name": name, "capabilities": {"syscalls": ["memory.*"]}}).unwrap()
        ids["tea"] = k.syscall("alice", "memory.remember", {"text": "the person prefers green tea",
                                                            "tags": ["taste"]}).unwrap()["id"]
        ids["editor"] = k.syscall("bob", "memory.remember", {"text": "the person edits with vim",
                                                             "collection": "tools"}).unwrap()["id"]
        ids["root"] = k.syscall("root", "memory.remember", {"text": "Request: plot sales by month",
                                                            "collection": "shell"}).unwrap()["id"]
    return ids


def invoke(*args, input=None):
    return CliRunner().invoke(app, list(args), input=input)


def test_list_search_and_forget_across_agents(seeded):
    res = invoke("memory", "list", "--json")
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)["memories"]
    assert {(m["agent"], m["collection"]) for m in got} == {("alice", "default"), ("bob", "tools"), ("root", "shell")}
    res = invoke("memory", "list")
    assert res.exit_code == 0 and "green tea" in res.stdout and "vim" in res.stdout and "3 memories" in res.stderr
    res = invoke("memory", "list", "--agent", "bob", "--json")
    assert [m["id"] for m in json.loads(res.stdout)["memories"]] == [seeded["editor"]]
    res = invoke("memory", "search", "which editor does the person use", "-k", "1", "--json")
    assert res.exit_code == 0, res.output
    assert [r["id"] for r in json.loads(res.stdout)["results"]] == [seeded["editor"]]
    res = invoke("memory", "search", "green tea")
    assert res.exit_code == 0 and "green tea" in res.stdout and "alice" in res.stdout
    res = invoke("memory", "forget", str(seeded["tea"]))
    assert res.exit_code == 0 and "forgot memory" in res.stderr and "alice" in res.stderr
    res = invoke("memory", "search", "green tea", "--json")
    assert seeded["tea"] not in [r["id"] for r in json.loads(res.stdout)["results"]]
    res = invoke("memory", "forget", "--all", input="n\n")       # asked, and the person said no
    assert res.exit_code != 0
    assert len(json.loads(invoke("memory", "list", "--json").stdout)["memories"]) == 2
    res = invoke("memory", "forget", "--all", "--yes", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["forgotten"] == 2
    res = invoke("memory", "list")
    assert res.exit_code == 0 and "nothing is remembered" in res.stdout


@pytest.mark.parametrize("args, words", [
    (["memory", "search", "   "], "at least one word"),
    (["memory", "search", "x" * 1001], "at most 1000"),
    (["memory", "forget"], "give an ID or --all"),
    (["memory", "forget", "3", "--all"], "give an ID or --all"),
    (["memory", "forget", "424242"], "no memory 424242"),
    (["memory", "list", "--collection", "../x"], "collection"),
    (["memory", "list", "--agent", "nobody", "--json"], None),
])
def test_bad_input_is_one_line_not_a_traceback(seeded, args, words):
    res = invoke(*args)
    if words is None:                   # an agent with no memory: an empty list, no error
        assert res.exit_code == 0 and json.loads(res.stdout)["memories"] == []
        return
    assert res.exit_code != 0
    text = res.output + (res.stderr if res.stderr_bytes is not None else "")
    assert "Traceback" not in text
    assert words in text or words in str(res.exception), (text, res.exception)


def test_memory_goes_through_the_daemon_when_one_serves(seeded, daemon_starter, config):
    srv = daemon_starter(config)        # it holds the state directory: a kernel booted here is refused;
    #                                     in this process, so its kernel embeds with the fake too
    try:
        res = invoke("memory", "list", "--json")
        assert res.exit_code == 0, res.output
        assert len(json.loads(res.stdout)["memories"]) == 3
        res = invoke("memory", "forget", str(seeded["root"]), "--json")
        assert res.exit_code == 0 and json.loads(res.stdout)["agent"] == "root"
    finally:
        srv.stop()
