"""Long-term memory is per agent: agent B cannot recall, list, forget or even detect agent
A's memories by any syscall or argument trick (guessed ids, filters, tags, query syntax,
unknown fields, the words side or the vector side of a recall), and a refused call is
audited. Every statement in kernel.longterm names the calling agent; these tests check it
from the outside."""

from __future__ import annotations

import pytest

from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel
from llmos.llm.embed import FakeEmbedder
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import ToolRegistry

SECRETS = ["alice's bank PIN is 4921 zebra", "alice keeps the vault key under the blue vase",
           "alice project codename BLUEFIN launches in May"]


@pytest.fixture
async def k(config, clock):
    kernel = await Kernel.boot(config, engines={"fake": FakeEngine("ok")}, tools=ToolRegistry([]),
                               clock=clock, hal=FakeHAL(clock))
    kernel.memory.embedder = FakeEmbedder()
    for name in ("alice", "bob"):
        res = await kernel.syscall("root", "agent.create", {"name": name, "capabilities": {"syscalls": ["memory.*"]}})
        assert res.ok, res.error
    res = await kernel.syscall("root", "agent.create", {"name": "nomem", "capabilities": {"syscalls": ["proc.list"]}})
    assert res.ok, res.error
    yield kernel
    await kernel.shutdown()


async def secrets(k) -> list[int]:
    ids = []
    for text in SECRETS:
        res = await k.syscall("alice", "memory.remember", {"text": text, "tags": ["secret", "bob"]})
        ids.append(res.value["id"])
    return ids


async def test_recall_never_returns_another_agents_memory(k):
    await secrets(k)
    await k.syscall("bob", "memory.remember", {"text": "bob likes green tea"})
    queries = [*SECRETS, "4921 zebra", "BLUEFIN", "alice", "vault key blue vase", "PIN"]
    for q in queries:
        for filt in (None, {"tags": ["secret"]}, {"tags": ["bob"]}, {"after_s": 0.0}):
            args = {"query": q, "k": 50, **({"filter": filt} if filt else {})}
            res = await k.syscall("bob", "memory.recall", args)
            assert res.ok, res.error
            assert all("alice" not in r["text"] for r in res.value["results"]), (q, filt)
    for q in ("vault", "4921 zebra"):                       # the owner does find them
        assert (await k.syscall("alice", "memory.recall", {"query": q})).value["results"]
    # root is an agent too: its long-term memory is its own
    assert (await k.syscall("root", "memory.recall", {"query": "vault key", "k": 50})).value["results"] == []


async def test_list_and_usage_show_only_ones_own(k):
    await secrets(k)
    res = (await k.syscall("bob", "memory.list", {"limit": 500})).value
    assert res["memories"] == [] and res["usage"]["memories"] == 0 and res["usage"]["bytes"] == 0
    for tags in (["secret"], ["bob"]):
        assert (await k.syscall("bob", "memory.list", {"tags": tags})).value["memories"] == []
    assert len((await k.syscall("alice", "memory.list", {})).value["memories"]) == 3


async def test_forget_of_a_guessed_id_is_not_found_and_changes_nothing(k):
    ids = await secrets(k)
    for mid in [*ids, *range(1, 20)]:
        res = await k.syscall("bob", "memory.forget", {"id": mid})
        assert res.error.code == "not_found", mid
        assert res.error.message == f"no memory {mid}"            # same answer as for no memory at all
    assert len((await k.syscall("alice", "memory.list", {})).value["memories"]) == 3
    assert (await k.syscall("alice", "memory.recall", {"query": "BLUEFIN"})).value["results"]


async def test_argument_tricks_are_refused(k):
    await secrets(k)
    tricks = [("memory.recall", {"query": "vault", "agent": "alice"}),
              ("memory.recall", {"query": "vault", "filter": {"agent": "alice"}}),
              ("memory.recall", {"query": "vault", "filter": {"tags": ["secret"], "owner": "alice"}}),
              ("memory.list", {"agent": "alice"}),
              ("memory.forget", {"id": 1, "agent": "alice"}),
              ("memory.remember", {"text": "planted", "agent": "alice"})]
    for name, args in tricks:
        res = await k.syscall("bob", name, args)
        assert res.error.code == "invalid_argument" and "unknown field" in res.error.message, (name, args)
    for q in ['alice" OR agent:alice', "') OR 1=1 --", "* NEAR(vault key)", "agent = 'alice'", "%"]:
        res = await k.syscall("bob", "memory.recall", {"query": q, "k": 50})
        assert res.ok or res.error.code == "invalid_argument", (q, res.error)
        assert not res.ok or all("alice" not in r["text"] for r in res.value["results"]), q
    for t in ["secret' OR '1'='1", "%", "*"]:
        res = await k.syscall("bob", "memory.recall", {"query": "vault", "filter": {"tags": [t]}})
        assert res.ok and res.value["results"] == [], t
    assert len((await k.syscall("alice", "memory.list", {})).value["memories"]) == 3


async def test_one_agents_quota_and_writes_do_not_touch_another(k):
    k.memory.longterm.quota_bytes = 200
    await secrets(k)
    res = await k.syscall("alice", "memory.remember", {"text": "x " * 100})
    assert res.error.code == "quota_exceeded"
    assert (await k.syscall("bob", "memory.remember", {"text": "bob's own note"})).ok
    assert (await k.syscall("bob", "memory.list", {})).value["usage"]["memories"] == 1


async def test_without_the_capability_every_memory_call_is_denied_and_audited(k):
    await secrets(k)
    for name, args in [("memory.recall", {"query": "vault"}), ("memory.list", {}),
                       ("memory.forget", {"id": 1}), ("memory.remember", {"text": "x"}),
                       ("memory.embed", {"input": ["x"]})]:
        res = await k.syscall("nomem", name, args)
        assert res.error.code == "permission_denied", name
    k.journal.flush()
    rows = k.journal.query("SELECT call, allowed FROM audit WHERE agent = 'nomem'")
    assert {c for c, allowed in rows if not allowed} >= {"memory.recall", "memory.list", "memory.forget"}
