"""Sharing long-term memory (issue 13, item 5): an agent shares one named collection with
another, read-only or read-write; the grantee reaches that collection only, within the
mode, until the share is taken back (at once); every argument trick is refused; the
access decisions are audited; the person (``others``) lists, searches and forgets
everything."""

from __future__ import annotations

import apsw
import pytest

from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel
from llmos.kernel.access import ROOT, Agent, Capabilities, MemoryRef, may
from llmos.kernel.longterm import LongTermMemory
from llmos.kernel.memshare import check_collection
from llmos.llm.embed import FakeEmbedder
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import ToolRegistry

WORK = ["the quarterly report is due on the ninth", "the build server is called hammer",
        "standup moved to ten thirty"]
SECRET = "alice's bank PIN is 4921 zebra"


@pytest.fixture
async def k(config, clock):
    kernel = await Kernel.boot(config, engines={"fake": FakeEngine("ok")}, tools=ToolRegistry([]),
                               clock=clock, hal=FakeHAL(clock))
    kernel.memory.embedder = FakeEmbedder()
    for name in ("alice", "bob", "carol"):
        res = await kernel.syscall("root", "agent.create", {"name": name, "capabilities": {"syscalls": ["memory.*"]}})
        assert res.ok, res.error
    yield kernel
    await kernel.shutdown()


async def ok(k, agent: str, name: str, args: dict) -> dict:
    res = await k.syscall(agent, name, args)
    assert res.ok, (name, args, res.error)
    return res.value


async def seed(k) -> dict[str, list[int]]:
    ids = {"work": [], "default": []}
    for text in WORK:
        ids["work"].append((await ok(k, "alice", "memory.remember", {"text": text, "collection": "work",
                                                                     "tags": ["job"]}))["id"])
    ids["default"].append((await ok(k, "alice", "memory.remember", {"text": SECRET, "tags": ["job"]}))["id"])
    return ids


def texts(value: dict, key: str = "results") -> list[str]:
    return [r["text"] for r in value[key]]


async def test_read_only_share_recalls_and_lists_that_collection_only(k):
    ids = await seed(k)
    assert (await ok(k, "alice", "memory.share", {"collection": "work", "agent": "bob"}))["mode"] == "r"
    got = await ok(k, "bob", "memory.recall", {"query": "what is the build server called", "k": 50,
                                                "owner": "alice", "collection": "work"})
    assert got["results"][0]["text"] == WORK[1] and got["results"][0]["agent"] == "alice"
    assert set(texts(got)) <= set(WORK)
    for q in (SECRET, "4921 zebra", "PIN bank"):        # the rest of alice's memory stays out of reach
        got = await ok(k, "bob", "memory.recall", {"query": q, "k": 50, "owner": "alice", "collection": "work",
                                                    "filter": {"tags": ["job"]}})
        assert SECRET not in texts(got)
    listed = await ok(k, "bob", "memory.list", {"owner": "alice", "collection": "work", "limit": 500})
    assert sorted(m["id"] for m in listed["memories"]) == ids["work"]
    # read-only: no remember into it, no forget of one of its memories, no forget-all
    for name, args in [("memory.remember", {"text": "planted by bob"}), ("memory.forget", {"id": ids["work"][0]}),
                       ("memory.forget", {"all": True})]:
        res = await k.syscall("bob", name, {**args, "owner": "alice", "collection": "work"})
        assert res.error.code == "permission_denied" and "read-only" in res.error.message, name
    assert len((await ok(k, "alice", "memory.list", {}))["memories"]) == 4
    # carol holds no share; bob's own memory is not alice's
    res = await k.syscall("carol", "memory.recall", {"query": "build server", "owner": "alice", "collection": "work"})
    assert res.error.code == "permission_denied" and "not shared" in res.error.message
    assert (await ok(k, "bob", "memory.recall", {"query": "build server", "k": 50}))["results"] == []


async def test_read_write_share_writes_and_forgets_within_the_collection(k):
    ids = await seed(k)
    await ok(k, "alice", "memory.share", {"collection": "work", "agent": "bob", "mode": "rw"})
    new = await ok(k, "bob", "memory.remember", {"text": "the demo is on Thursday", "owner": "alice",
                                                  "collection": "work"})
    assert new["collection"] == "work"
    mine = await ok(k, "alice", "memory.list", {"collection": "work"})
    assert new["id"] in [m["id"] for m in mine["memories"]] and mine["usage"]["memories"] == 5   # alice's quota
    assert (await ok(k, "bob", "memory.list", {}))["usage"]["memories"] == 0
    await ok(k, "bob", "memory.forget", {"id": ids["work"][0], "owner": "alice", "collection": "work"})
    # an id of alice's outside the shared collection is not found through it
    res = await k.syscall("bob", "memory.forget", {"id": ids["default"][0], "owner": "alice", "collection": "work"})
    assert res.error.code == "not_found"
    # nor can bob name another collection of alice's
    for coll in ("default", "private"):
        for name, args in [("memory.remember", {"text": "x y"}), ("memory.forget", {"id": ids["default"][0]}),
                           ("memory.recall", {"query": "PIN"}), ("memory.list", {})]:
            res = await k.syscall("bob", name, {**args, "owner": "alice", "collection": coll})
            assert res.error.code == "permission_denied", (name, coll)
    gone = await ok(k, "bob", "memory.forget", {"all": True, "owner": "alice", "collection": "work"})
    assert gone["forgotten"] == 3
    assert texts(await ok(k, "alice", "memory.list", {}), "memories") == [SECRET]


async def test_unshare_revokes_at_once_and_a_share_can_be_narrowed(k):
    await seed(k)
    await ok(k, "alice", "memory.share", {"collection": "work", "agent": "bob", "mode": "rw"})
    args = {"query": "standup", "owner": "alice", "collection": "work"}
    assert (await ok(k, "bob", "memory.recall", args))["results"]
    await ok(k, "alice", "memory.share", {"collection": "work", "agent": "bob", "mode": "r"})   # narrowed
    res = await k.syscall("bob", "memory.remember", {"text": "x y", "owner": "alice", "collection": "work"})
    assert res.error.code == "permission_denied"
    shares = await ok(k, "alice", "memory.shares", {})
    assert [(s["collection"], s["agent"], s["mode"]) for s in shares["given"]] == [("work", "bob", "r")]
    assert (await ok(k, "bob", "memory.shares", {}))["received"][0]["owner"] == "alice"
    assert (await ok(k, "alice", "memory.unshare", {"collection": "work", "agent": "bob"}))["mode"] == "r"
    for name, a in [("memory.recall", args), ("memory.list", {"owner": "alice", "collection": "work"})]:
        res = await k.syscall("bob", name, a)
        assert res.error.code == "permission_denied" and "not shared" in res.error.message
    res = await k.syscall("alice", "memory.unshare", {"collection": "work", "agent": "bob"})
    assert res.error.code == "not_found"


async def test_argument_tricks_reach_nothing(k):
    ids = await seed(k)
    await ok(k, "alice", "memory.share", {"collection": "work", "agent": "bob"})
    bad_names = ["..", "../default", "work/..", "work/../default", "/", "*", "%", "work*", "w?rk", ".work",
                 "default/", "work default", "work\x00", "", "a" * 65]
    for coll in bad_names:
        res = await k.syscall("bob", "memory.recall", {"query": "PIN", "owner": "alice", "collection": coll})
        assert res.error.code == "invalid_argument" and res.error.field == "collection", coll
    for owner in ["*", "%", "alice/..", "../alice", "ALICE", "alice ", "root", "bob/../alice"]:
        res = await k.syscall("bob", "memory.recall", {"query": "PIN", "owner": owner, "collection": "work"})
        assert res.error.code == "permission_denied", owner
    res = await k.syscall("bob", "memory.recall", {"query": "PIN", "owner": "alice"})       # no collection
    assert res.error.code == "invalid_argument" and res.error.field == "collection"
    for name, args in [("memory.recall", {"query": "PIN"}), ("memory.list", {}), ("memory.forget", {"all": True}),
                       ("memory.forget", {"id": ids["default"][0]})]:
        res = await k.syscall("bob", name, {**args, "everyone": True})
        assert res.error.code == "permission_denied", name
        res = await k.syscall("bob", name, {**args, "everyone": True, "owner": "alice", "collection": "work"})
        assert res.error.code in ("invalid_argument", "permission_denied"), name
    # a grantee cannot pass a share on, nor take alice's share back
    res = await k.syscall("bob", "memory.share", {"collection": "work", "agent": "carol"})
    assert res.ok          # this shares bob's own 'work' collection, which is empty
    res = await k.syscall("carol", "memory.recall", {"query": "standup", "owner": "alice", "collection": "work"})
    assert res.error.code == "permission_denied"
    assert (await ok(k, "carol", "memory.recall", {"query": "standup", "owner": "bob", "collection": "work"})
            )["results"] == []
    assert (await k.syscall("bob", "memory.unshare", {"collection": "work", "agent": "bob"})).error.code in (
        "not_found", "invalid_argument")
    assert len((await ok(k, "alice", "memory.list", {}))["memories"]) == 4


async def test_share_arguments_name_their_field(k):
    cases = [({"collection": "work", "agent": "nobody"}, "not_found", None),
             ({"collection": "work", "agent": "alice"}, "invalid_argument", "agent"),
             ({"collection": "work", "agent": "bob", "mode": "w"}, "invalid_argument", "mode"),
             ({"collection": "../x", "agent": "bob"}, "invalid_argument", "collection"),
             ({"agent": "bob"}, "invalid_argument", "collection")]
    for args, code, field in cases:
        res = await k.syscall("alice", "memory.share", args)
        assert res.error.code == code, args
        if field:
            assert res.error.field == field, args
    res = await k.syscall("alice", "memory.forget", {"id": 1, "all": True})
    assert res.error.code == "invalid_argument" and res.error.field == "id"
    res = await k.syscall("alice", "memory.forget", {})
    assert res.error.code == "invalid_argument"


async def test_access_decisions_on_shares_are_audited(k):
    await seed(k)
    await ok(k, "alice", "memory.share", {"collection": "work", "agent": "bob"})
    await ok(k, "bob", "memory.recall", {"query": "standup", "owner": "alice", "collection": "work"})
    await k.syscall("bob", "memory.forget", {"all": True, "owner": "alice", "collection": "work"})
    await ok(k, "alice", "memory.unshare", {"collection": "work", "agent": "bob"})
    await k.syscall("bob", "memory.recall", {"query": "standup", "owner": "alice", "collection": "work"})
    k.journal.flush()
    rows = k.journal.query("SELECT agent, call, resource, allowed, reason FROM audit "
                           "WHERE call LIKE 'memory.%' ORDER BY id")
    shared = [r for r in rows if r[0] == "bob"]
    assert [(c, a) for _, c, _, a, _ in shared] == [("memory.recall", 1), ("memory.forget", 0), ("memory.recall", 0)]
    assert shared[0][2] == "memory alice/work (r)" and "shared read-only" in shared[0][4]
    assert "read-only" in shared[1][4] and "not shared" in shared[2][4]
    assert ("alice", "memory.share", "memory alice/work (rw)", 1) in [r[:4] for r in rows]
    assert ("alice", "memory.unshare", "memory alice/work (rw)", 1) in [r[:4] for r in rows]


async def test_the_person_lists_searches_and_forgets_everything(k):
    await seed(k)
    await ok(k, "bob", "memory.remember", {"text": "bob prefers tea over coffee"})
    every = await ok(k, "root", "memory.list", {"everyone": True})
    assert {m["agent"] for m in every["memories"]} == {"alice", "bob"} and every["usage"]["memories"] == 5
    found = await ok(k, "root", "memory.recall", {"query": "tea or coffee", "everyone": True, "k": 2})
    assert found["results"][0]["agent"] == "bob" and found["results"][0]["text"].startswith("bob prefers")
    # root with 'others' may also name one agent's memory directly
    assert len((await ok(k, "root", "memory.list", {"owner": "alice"}))["memories"]) == 4
    one = await ok(k, "root", "memory.forget", {"id": found["results"][0]["id"], "everyone": True})
    assert one["agent"] == "bob"
    gone = await ok(k, "root", "memory.forget", {"all": True, "everyone": True})
    assert gone == {"forgotten": 4, "bytes": gone["bytes"], "agents": ["alice"]} and gone["bytes"] > 0
    assert (await ok(k, "root", "memory.list", {"everyone": True}))["memories"] == []
    assert (await ok(k, "alice", "memory.list", {}))["usage"] == {"bytes": 0, "memories": 0,
                                                                  "quota_bytes": k.memory.longterm.quota_bytes}
    assert (await ok(k, "alice", "memory.recall", {"query": "build server"}))["results"] == []
    # after forget-all, remembering and recalling work again (the RAM index was dropped)
    await ok(k, "alice", "memory.remember", {"text": "a fresh start", "collection": "work"})
    assert texts(await ok(k, "alice", "memory.recall", {"query": "fresh start"})) == ["a fresh start"]


def test_may_on_memory_refs():
    bob = Agent("bob", Capabilities(syscalls=frozenset({"memory.*"})))
    assert may(bob, "memory.recall", MemoryRef("bob", None, "rw"))
    assert may(ROOT, "memory.recall", MemoryRef(None, None, "rw"))
    assert not may(bob, "memory.recall", MemoryRef(None, None, "r"))
    assert not may(bob, "memory.recall", MemoryRef("alice", None, "r", "rw"))      # no collection: no share
    assert not may(bob, "memory.recall", MemoryRef("alice", "work", "r", None))
    assert may(bob, "memory.recall", MemoryRef("alice", "work", "r", "r"))
    assert not may(bob, "memory.forget", MemoryRef("alice", "work", "rw", "r"))
    assert may(bob, "memory.forget", MemoryRef("alice", "work", "rw", "rw"))
    assert not may(Agent("x", Capabilities()), "memory.recall", MemoryRef("x"))    # no syscall right


def test_collection_names():
    for good in ("default", "work", "shell", "a", "Team-1.notes_x", "9" * 64):
        assert check_collection(good) == good
    for bad in ("", "..", "a..b", ".x", "-x", "a/b", "*", "a b", "é", "a" * 65, None, 3):
        with pytest.raises(Exception) as e:
            check_collection(bad)
        assert getattr(e.value, "field", None) == "collection", bad


def test_a_database_from_before_collections_gains_the_column(tmp_path, clock):
    path = tmp_path / "memory.db"
    old = apsw.Connection(str(path))
    old.execute("CREATE TABLE memories (id INTEGER PRIMARY KEY, agent TEXT NOT NULL, text TEXT NOT NULL, "
                "tags TEXT NOT NULL, created_s REAL NOT NULL, bytes INTEGER NOT NULL);"
                "INSERT INTO memories(agent, text, tags, created_s, bytes) VALUES ('a', 'old note', '[]', 1, 8)")
    old.close()
    m = LongTermMemory(path, FakeEmbedder(), clock.time)
    try:
        assert m.list("a") == [{"id": 1, "agent": "a", "collection": "default", "text": "old note", "tags": [],
                                "created_s": 1.0, "bytes": 8}]
        assert m.remember("a", "new note", collection="work")["collection"] == "work"
        assert [x["collection"] for x in m.list("a")] == ["work", "default"]
    finally:
        m.close()


async def test_a_grantee_writing_past_the_owners_quota_is_refused_and_stores_nothing(k):
    await seed(k)
    await ok(k, "alice", "memory.share", {"collection": "work", "agent": "bob", "mode": "rw"})
    lt = k.memory.longterm
    lt.quota_bytes = lt.usage("alice")["bytes"] + 10
    before = lt.list(None, limit=500)
    res = await k.syscall("bob", "memory.remember", {"text": "a note far longer than ten bytes",
                                                      "owner": "alice", "collection": "work"})
    assert res.error.code == "quota_exceeded" and "nothing was stored" in res.error.message
    assert lt.list(None, limit=500) == before
    assert (await ok(k, "bob", "memory.remember", {"text": "bob's own note"}))["collection"] == "default"


async def test_a_conversation_turn_recalls_only_with_the_right_to_recall(k):
    res = await k.syscall("root", "agent.create", {"name": "talker", "capabilities": {
        "syscalls": ["conversation.*", "llm.generate"]}})
    assert res.ok, res.error
    conv = (await ok(k, "talker", "conversation.open", {}))["id"]
    res = await k.syscall("talker", "conversation.say", {"id": conv, "content": "hello there", "memory": 2})
    assert res.error.code == "permission_denied" and "memory.recall" in res.error.message
    said = await ok(k, "talker", "conversation.say", {"id": conv, "content": "hello there"})
    assert "memories" not in said
