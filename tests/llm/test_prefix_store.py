"""PrefixStore: file names, the file format's checks, atomic writes and pruning (no model)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from llmos.llm import prefix_store
from llmos.llm.prefix_store import PrefixStore, decode, encode, model_digest


def toks(n: int, start: int = 0) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.int32)


def payload(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8)


@pytest.fixture
def store(tmp_path: Path) -> PrefixStore:
    s = PrefixStore(tmp_path / "kv-prefix", "0123456789abcdef", 4096, max_files=3, max_bytes=1 << 20)
    yield s
    s.close()


def bins(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


# ── names ───────────────────────────────────────────────────────────────────
def test_file_name_is_model_ctx_and_token_digest(store: PrefixStore) -> None:
    p = store.path_for(toks(100))
    assert re.fullmatch(r"0123456789abcdef-4096-[0-9a-f]{32}\.bin", p.name)
    assert p.parent == store.dir
    assert store.path_for(toks(100)) == p                       # deterministic
    assert store.path_for(toks(100, 1)) != p                    # other tokens, other file
    assert store.path_for(toks(99)) != p
    other_ctx = PrefixStore(store.dir, "0123456789abcdef", 8192)
    assert other_ctx.path_for(toks(100)) != p


def test_model_digest_names_the_file_and_the_layout(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"x" * 100)
    d = model_digest(gguf, "flash_attn 1")
    assert re.fullmatch(r"[0-9a-f]{16}", d)
    assert model_digest(gguf, "flash_attn 1") == d
    assert model_digest(gguf, "flash_attn 0") != d              # another KV layout
    gguf.write_bytes(b"x" * 101)                                # the model file changed
    assert model_digest(gguf, "flash_attn 1") != d


# ── format ──────────────────────────────────────────────────────────────────
def test_encode_decode_round_trip() -> None:
    t, p = toks(50), payload(1000)
    raw = b"".join(bytes(part) for part in encode(t, p))
    assert raw.startswith(prefix_store.MAGIC)
    assert np.array_equal(decode(raw, t), p)


@pytest.mark.parametrize("damage, why", [
    (lambda raw: raw[:-1], "bytes, expected"),                        # torn write
    (lambda raw: raw[:10], "shorter than the header"),
    (lambda raw: b"NOTLLMOS" + raw[8:], "bad magic"),
    (lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]), "checksum"),        # a flipped payload bit
    (lambda raw: raw[:24] + bytes([raw[24] ^ 1]) + raw[25:], "token ids differ"),
])
def test_decode_rejects_damaged_files(damage, why: str) -> None:
    t = toks(50)
    raw = b"".join(bytes(part) for part in encode(t, payload(1000)))
    with pytest.raises(ValueError, match=why):
        decode(damage(raw), t)


def test_decode_rejects_other_tokens() -> None:
    raw = b"".join(bytes(part) for part in encode(toks(50), payload(100)))
    with pytest.raises(ValueError, match="holds 50 tokens, expected 49"):
        decode(raw, toks(49))


# ── load / save ─────────────────────────────────────────────────────────────
def test_save_then_load(store: PrefixStore) -> None:
    t, p = toks(64), payload(4096)
    assert store.load(t) is None and store.counts["missed"] == 1
    path = store.save_now(t, p)
    assert path == store.path_for(t) and path.is_file()
    assert bins(store.dir) == [path.name]                      # no temp file left behind
    got = store.load(t)
    assert got is not None and np.array_equal(got, p)
    assert store.counts["saved"] == 1 and store.counts["loaded"] == 1


def test_save_on_the_writer_thread_and_flush(store: PrefixStore) -> None:
    futs = [store.save(toks(64, i), payload(512, i)) for i in range(2)]
    store.flush()
    assert all(f.done() for f in futs)
    assert len(bins(store.dir)) == 2 and store.counts["saved"] == 2


def test_a_bad_file_is_rejected_deleted_and_written_again(store: PrefixStore) -> None:
    t, p = toks(64), payload(4096)
    path = store.save_now(t, p)
    raw = path.read_bytes()
    path.write_bytes(raw[:-100])                               # truncated
    assert store.load(t) is None
    assert store.counts["rejected"] == 1 and not path.exists()
    store.save_now(t, p)
    assert np.array_equal(store.load(t), p)


def test_a_failed_write_leaves_the_old_file_and_no_temp(store: PrefixStore, monkeypatch) -> None:
    t = toks(64)
    path = store.save_now(t, payload(4096, 1))

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(prefix_store.os, "replace", broken_replace)
    assert store.save_now(t, payload(4096, 2)) is None
    assert store.counts["save_failed"] == 1
    assert bins(store.dir) == [path.name]                      # temp file removed
    monkeypatch.undo()
    assert np.array_equal(store.load(t), payload(4096, 1))   # the old file is whole


def test_an_unwritable_directory_is_a_logged_miss(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    s = PrefixStore(blocker / "kv-prefix", "d" * 16, 512)
    assert s.save_now(toks(32), payload(64)) is None and s.counts["save_failed"] == 1
    assert s.load(toks(32)) is None


# ── pruning ─────────────────────────────────────────────────────────────────
def test_prune_keeps_the_most_recently_used_files(store: PrefixStore) -> None:
    paths = []
    for i in range(3):
        paths.append(store.save_now(toks(32, i), payload(1000, i)))
        age(paths[-1], 100 - i)                                # 0 oldest, 2 newest
    assert store.load(toks(32, 0)) is not None                 # a hit makes 0 the newest
    newest = store.save_now(toks(32, 3), payload(1000, 3))     # a 4th file: max_files is 3
    assert sorted(bins(store.dir)) == sorted(p.name for p in (paths[0], paths[2], newest))


def test_prune_bounds_the_bytes(tmp_path: Path) -> None:
    s = PrefixStore(tmp_path, "e" * 16, 512, max_files=100, max_bytes=2500)
    a = s.save_now(toks(32, 0), payload(1000, 0))
    age(a, 10)
    b = s.save_now(toks(32, 1), payload(1000, 1))
    age(b, 5)
    c = s.save_now(toks(32, 2), payload(1000, 2))             # 3 × ~1150 bytes > 2500
    assert bins(tmp_path) == sorted([b.name, c.name])


def test_prune_removes_stale_temp_files_only(store: PrefixStore) -> None:
    store.dir.mkdir(parents=True)
    stale = store.dir / ".tmp-dead.bin"
    fresh = store.dir / ".tmp-writing.bin"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    age(stale, 3600)
    assert store.prune() == [stale]
    assert fresh.exists() and not stale.exists()
