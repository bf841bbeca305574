"""Long-term memory logic (kernel.longterm) on the fake embedder: remember / recall / forget /
list through the syscalls, chunking, filters, bad input, the quota, and a corrupt vector
table rebuilt from the stored texts."""

from __future__ import annotations

import logging
import os
import stat

import numpy as np
import pytest

from llmos.errors import InvalidArgument, JournalError, NotFound, QuotaExceeded
from llmos.hal.fake import FakeHAL
from llmos.kernel import Kernel
from llmos.kernel.longterm import (
    CHUNK_WORDS,
    TEXT_MAX_BYTES,
    LongTermMemory,
    RecallFilter,
    Signatures,
    chunk,
)
from llmos.kernel.memory import LONGTERM_FILE
from llmos.llm.embed import FakeEmbedder
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import ToolRegistry

TABLES = ("memories", "memory_tags", "chunks", "vectors", "chunks_fts")


@pytest.fixture
def lt(tmp_path, clock):
    m = LongTermMemory(tmp_path / "memory.db", FakeEmbedder(), clock.time)
    yield m
    m.close()


@pytest.fixture
def kernel(kernel):
    kernel.memory.embedder = FakeEmbedder()     # before first use: no model in these tests
    return kernel


def counts(m: LongTermMemory) -> dict[str, int]:
    return {t: m._conn.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in TABLES}


async def test_remember_recall_list_forget(kernel):
    sys = kernel.syscall
    a = (await sys("root", "memory.remember", {"text": "the cat is called Miso", "tags": ["pets"]})).value
    b = (await sys("root", "memory.remember", {"text": "flight to Lisbon on Friday morning"})).value
    assert a["id"] != b["id"] and a["chunks"] == 1 and a["tags"] == ["pets"]
    res = (await sys("root", "memory.recall", {"query": "what is the cat called?", "k": 1})).value["results"]
    assert [r["id"] for r in res] == [a["id"]] and res[0]["text"] == "the cat is called Miso"
    assert res[0]["tags"] == ["pets"] and 0 < res[0]["similarity"] <= 1 and res[0]["score"] > 0
    assert res[0]["ranks"]["vector"] == 1                     # why it came back: each ranking's place
    listed = (await sys("root", "memory.list", {})).value
    assert [m["id"] for m in listed["memories"]] == [b["id"], a["id"]]     # newest first
    assert listed["usage"]["memories"] == 2 and listed["usage"]["bytes"] == 22 + 34
    assert (await sys("root", "memory.forget", {"id": a["id"]})).value == {"id": a["id"], "chunks": 1, "agent": "root"}
    res = (await sys("root", "memory.recall", {"query": "cat Miso"})).value["results"]
    assert a["id"] not in [r["id"] for r in res]
    assert (await sys("root", "memory.list", {})).value["usage"]["memories"] == 1


async def test_memories_survive_a_reboot(config, clock):
    async def boot() -> Kernel:
        k = await Kernel.boot(config, engines={"fake": FakeEngine("ok")}, tools=ToolRegistry([]),
                              clock=clock, hal=FakeHAL(clock))
        k.memory.embedder = FakeEmbedder()
        return k

    k = await boot()
    mid = (await k.syscall("root", "memory.remember", {"text": "the spare key is with Mrs Alvarez"})).value["id"]
    await k.shutdown()
    k = await boot()
    res = (await k.syscall("root", "memory.recall", {"query": "spare key"})).value["results"]
    assert res[0]["id"] == mid
    for suffix in ("", "-wal", "-shm"):                                # private, as the journal
        path = config.home / (LONGTERM_FILE + suffix)
        assert not path.exists() or stat.S_IMODE(os.stat(path).st_mode) == 0o600, suffix
    assert (config.home / LONGTERM_FILE).exists()
    await k.shutdown()


def test_chunks_are_exact_slices():
    text = " ".join(f"w{i}" for i in range(CHUNK_WORDS * 2 + 7))
    pieces = chunk(text)
    assert len(pieces) == 3 and all(p in text for p in pieces)
    assert [len(p.split()) for p in pieces] == [CHUNK_WORDS, CHUNK_WORDS, 7]
    assert chunk("one") == ["one"]


def test_a_long_text_is_chunked_and_recalled_by_its_middle(lt):
    filler = " ".join(f"filler{i}" for i in range(CHUNK_WORDS))
    text = f"{filler} the boiler pressure stays near one bar {filler}"
    r = lt.remember("a", text)
    assert r["chunks"] == 3
    lt.remember("a", "nothing about heating here")
    top = lt.recall("a", "boiler pressure bar", 1)[0]
    assert top["id"] == r["id"] and top["text"] == text
    assert "boiler pressure" in top["match"] and len(top["match"]) < len(text)


def test_a_huge_text_is_refused_with_the_limit(lt):
    for huge in ("word " * (TEXT_MAX_BYTES // 5 + 1), "é" * (TEXT_MAX_BYTES // 2 + 1)):   # chars, bytes
        with pytest.raises(InvalidArgument) as e:
            lt.remember("a", huge)
        assert e.value.field == "text" and str(TEXT_MAX_BYTES) in str(e.value) and "chunks" in str(e.value)
    assert counts(lt)["memories"] == 0


@pytest.mark.parametrize("query", ["", "   ", "?!", "..."])
def test_a_query_without_words_is_refused(lt, query):
    with pytest.raises(InvalidArgument) as e:
        lt.recall("a", query)
    assert e.value.field == "query"


async def test_bad_arguments_name_their_field(kernel):
    cases = [("memory.remember", {"text": ""}, "text"),
             ("memory.remember", {"text": "  \n "}, "text"),
             ("memory.remember", {"text": "x", "tags": "pets"}, "tags"),
             ("memory.remember", {"text": "x", "tags": [""]}, "tags.0"),
             ("memory.remember", {"text": "x", "tags": ["t"] * 17}, "tags"),
             ("memory.remember", {"text": "x", "tags": ["a\x00b"]}, "tags"),
             ("memory.recall", {"query": ""}, "query"),
             ("memory.recall", {"query": "x", "k": 0}, "k"),
             ("memory.recall", {"query": "x", "k": 51}, "k"),
             ("memory.recall", {"query": "x", "filter": {"tag": ["a"]}}, "filter.tag"),
             ("memory.recall", {"query": "x", "filter": {"after_s": "yesterday"}}, "filter.after_s"),
             ("memory.recall", {"query": "x", "filter": {"before_s": float("nan")}}, "filter.before_s"),
             ("memory.forget", {"id": 0}, "id"),
             ("memory.forget", {"id": "1"}, "id"),
             ("memory.forget", {}, "id"),
             ("memory.list", {"limit": 0}, "limit"),
             ("memory.embed", {"input": []}, "input"),
             ("memory.embed", {"input": [""]}, "input.0")]
    for name, args, field in cases:
        res = await kernel.syscall("root", name, args)
        assert not res.ok and res.error.code == "invalid_argument", (name, args, res)
        assert res.error.field == field, (name, args, res.error.field)


async def test_unknown_id_is_not_found(kernel):
    res = await kernel.syscall("root", "memory.forget", {"id": 12345})
    assert res.error.code == "not_found" and "memory.list" in res.error.hint


def test_filters_by_tags_and_time(lt, clock):
    a = lt.remember("a", "dentist appointment on Tuesday", ["health", "calendar"])["id"]
    clock.advance(100)
    b = lt.remember("a", "dentist bill paid", ["money"])["id"]
    c = lt.remember("a", "dentist moved to Elm Street", ["health"])["id"]
    ids = lambda f: [r["id"] for r in lt.recall("a", "dentist", 10, f)]   # noqa: E731
    assert sorted(ids(RecallFilter(tags=("health",)))) == sorted([a, c])
    assert ids(RecallFilter(tags=("health", "calendar"))) == [a]
    assert ids(RecallFilter(tags=("nope",))) == []
    t0 = clock.time()
    assert sorted(ids(RecallFilter(after_s=t0))) == sorted([b, c])
    assert ids(RecallFilter(before_s=t0)) == [a]
    assert [m["id"] for m in lt.list("a", ["health"])] == [c, a]
    assert [m["id"] for m in lt.list("a", limit=1, before_id=c)] == [b]


def test_recall_modes_rank_by_meaning_and_by_words(lt):
    x = lt.remember("a", "invoice INV-20931 was paid twice")["id"]
    lt.remember("a", "the team lunch is on Friday")
    assert lt.recall("a", "INV-20931", 1, mode="words")[0]["id"] == x
    assert lt.recall("a", "INV-20931", 1, mode="vector")[0]["id"] == x
    assert lt.recall("a", "INV-20931", 1)[0]["id"] == x
    assert lt.recall("a", "NEAR( \"unbalanced OR * -x", 2) is not None    # never FTS5 syntax
    with pytest.raises(InvalidArgument):
        lt.recall("a", "INV-20931", 1, mode="magic")


def test_a_full_quota_refuses_and_leaves_nothing_half_written(tmp_path, clock):
    m = LongTermMemory(tmp_path / "q.db", FakeEmbedder(), clock.time, quota_bytes=100)
    m.remember("a", "x" * 60)
    before = counts(m)
    with pytest.raises(QuotaExceeded) as e:
        m.remember("a", " ".join(["word"] * (CHUNK_WORDS + 5)))        # two chunks, 800+ bytes
    assert "100 bytes" in str(e.value) and "nothing was stored" in str(e.value)
    with pytest.raises(QuotaExceeded):                                   # all of a batch or none
        m.insert_many("a", [("y" * 20, [], ["y" * 20], np.ones((1, 64), np.float32) / 8),
                            ("z" * 30, [], ["z" * 30], np.ones((1, 64), np.float32) / 8)])
    assert counts(m) == before and m.usage("a")["bytes"] == 60
    m.remember("b", "another agent has its own quota")                   # per agent
    m.forget("a", 1)
    m.remember("a", "y" * 90)                                            # forgetting frees it
    m.close()


def test_a_failure_mid_write_rolls_everything_back(lt, monkeypatch):
    import llmos.kernel.longterm as longterm

    lt.remember("a", "kept before the failure")
    before = counts(lt)
    real, calls = longterm.sign_bits, []

    def failing(v):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(v)

    monkeypatch.setattr(longterm, "sign_bits", failing)
    with pytest.raises(OSError):
        lt.remember("a", " ".join(["word"] * (CHUNK_WORDS + 5)), ["t"])
    assert counts(lt) == before and lt.usage("a")["memories"] == 1
    monkeypatch.setattr(longterm, "sign_bits", real)
    assert [r["text"] for r in lt.recall("a", "kept failure", 5)] == ["kept before the failure"]


CORRUPTIONS = {
    "dropped": "DROP TABLE vectors",
    "wrong_size": "UPDATE vectors SET vec = x'0011' WHERE chunk = 2",
    "missing_rows": "DELETE FROM vectors WHERE chunk = 1",
    "bad_signature": "UPDATE vectors SET sig = x'00' WHERE chunk = 3",
    "other_model": "UPDATE meta SET value = 'some-other-model/64' WHERE key = 'model'",
}


@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
def test_a_corrupt_vector_table_is_rebuilt_from_the_texts(tmp_path, clock, caplog, how):
    path = tmp_path / "memory.db"
    m = LongTermMemory(path, FakeEmbedder(), clock.time)
    texts = ["the cat is called Miso", "the boiler pressure is one bar", "Anna loves orchids"]
    ids = [m.remember("a", t)["id"] for t in texts]
    m._conn.execute(CORRUPTIONS[how])
    m.close()
    caplog.set_level(logging.WARNING, logger="llmos.kernel.longterm")
    m = LongTermMemory(path, FakeEmbedder(), clock.time)
    assert m.recall("a", "cat Miso", 1)[0]["id"] == ids[0]
    assert m.rebuilds == 1 and "rebuilding it from 3 stored chunks" in caplog.text
    assert counts(m)["vectors"] == 3
    m.close()


def test_a_vector_table_broken_while_open_is_rebuilt_on_recall(lt, caplog):
    lt.remember("a", "the cat is called Miso")
    lt.remember("a", "Anna loves orchids")
    lt.recall("a", "cat", 1)                                              # RAM index loaded
    lt._conn.execute("UPDATE vectors SET vec = x'00'")
    caplog.set_level(logging.WARNING, logger="llmos.kernel.longterm")
    assert lt.recall("a", "orchids Anna", 1)[0]["text"] == "Anna loves orchids"
    assert lt.rebuilds == 1 and "rebuilding" in caplog.text


def test_an_unwritable_database_is_a_journal_error(tmp_path, clock):
    folder = tmp_path / "ro"
    folder.mkdir()
    with pytest.raises(JournalError):
        LongTermMemory(folder, FakeEmbedder(), clock.time)             # a folder, not a file


def test_signatures_scan_finds_the_nearest_and_follows_removals():
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((500, 128)).astype(np.float32)
    s = Signatures(128 // 64)
    s.add(list(range(1, 501)), [np.packbits(v > 0).tobytes() for v in vecs])
    q = np.packbits(vecs[41] > 0).tobytes()
    assert 42 in s.nearest(q, 5).tolist()
    assert s.nearest(q, 5, allowed=np.array([7, 9])).tolist() == [7, 9]
    s.remove([42])
    assert s.n == 499 and 42 not in s.nearest(q, 10).tolist()


def test_unknown_memory_in_another_call_shape(lt):
    with pytest.raises(NotFound):
        lt.forget("a", 1)


def test_a_query_asked_again_reuses_its_vector_and_the_cache_is_bounded(tmp_path, clock):
    emb = FakeEmbedder()
    m = LongTermMemory(tmp_path / "c.db", emb, clock.time, query_cache=2)
    m.remember("a", "Anna loves orchids")
    before = emb.calls
    first = m.recall("a", "orchids Anna", 1)
    assert m.recall("a", "orchids Anna", 1) == first                  # same answer, no second embedding
    assert emb.calls == before + 1 and m.cache_hits == 1
    m.recall("a", "tulips", 1)
    m.recall("a", "roses", 1)                                          # the oldest ("orchids Anna") goes
    m.recall("a", "orchids Anna", 1)
    assert emb.calls == before + 4 and list(m._qvecs) == ["roses", "orchids Anna"]
    m.recall("a", "orchids Anna", 1, mode="words")                     # words alone embed nothing
    assert emb.calls == before + 4
    m.close()
    off = LongTermMemory(tmp_path / "c.db", emb, clock.time, query_cache=0)
    off.recall("a", "orchids Anna", 1)
    off.recall("a", "orchids Anna", 1)
    assert emb.calls == before + 6 and off.cache_hits == 0 and not off._qvecs
    off.close()


def test_the_database_runs_wal_with_normal_sync_and_mmap(lt):
    pragma = lambda name: lt._conn.execute(f"PRAGMA {name}").fetchall()[0][0]   # noqa: E731
    assert pragma("journal_mode") == "wal" and pragma("synchronous") == 1 and pragma("mmap_size") > 0


def test_forget_and_list_stay_within_the_agent_and_collection(lt):
    a = lt.remember("a", "Anna loves orchids", collection="garden")["id"]
    b = lt.remember("a", "Anna has a cat")["id"]
    c = lt.remember("b", "Bo loves orchids", collection="garden")["id"]
    assert [r["id"] for r in lt.list("a", collection="garden")] == [a]
    assert [r["id"] for r in lt.list(None, collection="garden")] == [c, a]
    with pytest.raises(NotFound, match="in collection 'default'"):
        lt.forget("a", a, collection="default")
    with pytest.raises(NotFound):
        lt.forget("b", a)
    with pytest.raises(InvalidArgument, match="collection"):
        lt.forget_all("a", collection="../x")
    assert lt.forget_all("a", collection="garden") == {"forgotten": 1, "bytes": 18, "agents": ["a"]}
    assert [r["id"] for r in lt.list(None)] == [c, b]


def test_codes_rank_the_candidates_as_their_float_vectors_do():
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((3000, 128)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(10, 3010)
    s = Signatures(128 // 64, codes=True)
    for part in np.array_split(np.arange(3000), 3):                    # grows past its first capacity
        s.add(ids[part].tolist(), [np.packbits(v > 0).tobytes() for v in vecs[part]], vecs[part])
    q = vecs[41] + 0.05 * rng.standard_normal(128).astype(np.float32)   # cosine ~0.9 to chunk 51
    q /= np.linalg.norm(q)
    got = s.ranked(q, 300, 20)
    cand = s.nearest(np.packbits(q > 0).tobytes(), 300)
    exact = cand[np.argsort(-(vecs[cand - 10] @ q))][:20]               # the same candidates, float cosine
    assert got[0] == 51 and len(got) == 20 and len(set(got) & set(exact)) >= 18
    assert s.ranked(q, 300, 20, allowed=np.array([12, 51, 99])).tolist()[0] == 51
    s.remove([51])
    assert 51 not in s.ranked(q, 300, 20).tolist() and s.n == 2999
    with pytest.raises(ValueError, match="vecs"):
        s.add([1], [np.packbits(vecs[0] > 0).tobytes()])               # codes kept: vectors needed
    with pytest.raises(ValueError, match="codes"):
        Signatures(2).ranked(q, 10, 5)
