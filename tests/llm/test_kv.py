"""KvLedger: slots, reservations and the shared-prefix LRU, against a fake KV memory
that tracks which seq ids hold which positions (as llama.cpp's unified cache does)."""

from __future__ import annotations

import numpy as np
import pytest

from llmos.llm.kv import Holder, KvLedger, common_prefix


class FakeMemory:
    """cells: (position-owner key) → set of seq ids; a cell lives while any seq id holds it."""

    def __init__(self) -> None:
        self.cells: list[set[int]] = []         # one set of seq ids per physical cell
        self.pos: list[int] = []

    def fill(self, seq: int, n_from: int, n_to: int) -> None:
        for p in range(n_from, n_to):
            self.cells.append({seq})
            self.pos.append(p)

    def seq_rm(self, seq_id: int, p0: int = -1, p1: int = -1) -> bool:
        for c, p in zip(self.cells, self.pos, strict=True):
            if (p0 < 0 or p >= p0) and (p1 < 0 or p < p1):
                c.discard(seq_id)
        return True

    def seq_cp(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        for c, p in zip(self.cells, self.pos, strict=True):
            if src in c and (p0 < 0 or p >= p0) and (p1 < 0 or p < p1):
                c.add(dst)

    @property
    def used(self) -> int:
        return sum(1 for c in self.cells if c)


def toks(*parts: tuple[int, int]) -> np.ndarray:
    return np.concatenate([np.arange(a, b, dtype=np.int32) for a, b in parts])


@pytest.fixture
def mem() -> FakeMemory:
    return FakeMemory()


def ledger(mem: FakeMemory, **kw) -> KvLedger:
    kw.setdefault("n_cells", 1000)
    kw.setdefault("max_live", 4)
    kw.setdefault("max_entries", 2)
    kw.setdefault("min_prefix", 4)
    return KvLedger(mem, **kw)


def test_common_prefix() -> None:
    assert common_prefix(toks((0, 10)), toks((0, 5), (50, 60))) == 5
    assert common_prefix(toks((0, 3)), toks((0, 10))) == 3
    assert common_prefix(np.array([], dtype=np.int32), toks((0, 3))) == 0
    assert common_prefix(toks((1, 3)), toks((0, 3))) == 0


def test_reservations_and_slots(mem: FakeMemory) -> None:
    lg = ledger(mem, n_cells=100, max_live=2)
    a = lg.admit(60)
    assert lg.free_cells == 40 and not lg.can_admit(41) and lg.can_admit(40)
    b = lg.admit(40)
    assert a != b and lg.live == 2 and not lg.can_admit(0)      # slots are full too
    with pytest.raises(RuntimeError):
        lg.admit(0)
    lg.release(a)
    assert lg.free_cells == 60 and lg.live == 1


def test_retire_lookup_attach_counts_shared_cells_once(mem: FakeMemory) -> None:
    lg = ledger(mem)
    s1 = Holder()
    slot1 = lg.admit(150)
    mem.fill(slot1, 0, 120)                      # prompt 100 + 20 generated
    entry = lg.retire(s1, slot1, toks((0, 120)))
    assert entry is not None and lg.entry_cells == 120 and lg.reserved_cells == 0
    prompt2 = toks((0, 100), (500, 510))
    e, n = lg.lookup(prompt2, limit=len(prompt2) - 1)
    assert e is entry and n == 100
    s2 = Holder()
    slot2 = lg.admit(len(prompt2) + 50 - n)
    lg.attach(s2, entry, n, slot2)
    mem.fill(slot2, 100, 110)
    assert s2.base == 100 and entry.refs[s2] == 100
    # cells: 120 (entry) + 10 (s2's own): exactly what the fake memory holds
    assert lg.entry_cells + (110 - s2.base) == mem.used == 130
    # evicting the entry leaves a ghost accounting for the 100 cells s2 still holds
    lg.evict(entry)
    assert mem.used == 110 and lg.entry_cells == 100
    lg.release(slot2, s2)
    assert mem.used == 0 and lg.entry_cells == 0 and lg.free_cells == 1000


def test_chained_entries_and_ghosts_stay_exact(mem: FakeMemory) -> None:
    lg = ledger(mem, max_entries=3)
    h1 = Holder()
    s = lg.admit(100)
    mem.fill(s, 0, 50)
    e1 = lg.retire(h1, s, toks((0, 50)))
    h2 = Holder()
    s = lg.admit(100)
    lg.attach(h2, e1, 40, s)
    mem.fill(s, 40, 70)
    e2 = lg.retire(h2, s, toks((0, 40), (100, 130)))     # shares 40 with e1, owns 30
    assert e2 is not None and e2.parent is e1 and e2.base == 40
    assert lg.entry_cells == 50 + 30 == mem.used
    h3 = Holder()
    s3 = lg.admit(100)
    lg.attach(h3, e2, 60, s3)
    mem.fill(s3, 60, 65)
    lg.evict(e1)                                           # e2 still holds [0, 40) of it
    assert lg.entry_cells + 5 == mem.used == 40 + 30 + 5
    lg.evict(e2)                                           # h3 holds [0, 60)
    assert lg.entry_cells + 5 == mem.used == 65
    lg.release(s3, h3)
    assert mem.used == 0 and lg.entry_cells == 0


def test_lru_bound_and_make_room(mem: FakeMemory) -> None:
    lg = ledger(mem, n_cells=300, max_entries=2)
    entries = []
    for i in range(3):
        h = Holder()
        s = lg.admit(100)
        mem.fill(s, 0, 80)
        entries.append(lg.retire(h, s, toks((1000 * i, 1000 * i + 80))))
    assert lg.entries == entries[1:] and lg.evictions == 1      # oldest went first
    assert lg.free_cells == 300 - 160
    assert lg.make_room(200, keep=entries[2])
    assert lg.entries == [entries[2]] and lg.free_cells == 220
    assert not lg.make_room(1000)
    lg.clear()
    assert lg.entries == [] and mem.used == 0 and lg.free_cells == 300


def test_short_or_useless_prefixes_are_not_cached(mem: FakeMemory) -> None:
    lg = ledger(mem, min_prefix=16)
    h = Holder()
    s = lg.admit(20)
    mem.fill(s, 0, 10)
    assert lg.retire(h, s, toks((0, 10))) is None
    assert mem.used == 0 and lg.live == 0
    assert lg.lookup(toks((0, 10)), 9) == (None, 0)


def test_promote_a_live_prefix(mem: FakeMemory) -> None:
    lg = ledger(mem, n_cells=500, max_entries=1)
    donor = Holder()
    slot = lg.admit(200)                          # prompt 150 + 50
    mem.fill(slot, 0, 150)
    entry = lg.promote(donor, slot, toks((0, 150)), 120)
    assert entry is not None and donor.parent is entry and donor.base == 120
    assert lg.reservation(slot) == 80 and lg.entry_cells == 120 and lg.free_cells == 300
    other = Holder()
    s2 = lg.admit(150 - 120 + 50)
    lg.attach(other, entry, 120, s2)
    mem.fill(s2, 120, 140)
    assert mem.used == 150 + 20
    assert lg.promote(donor, slot, toks((0, 150)), 100) is None   # nothing new to share
    lg.release(slot, donor)
    lg.release(s2, other)
    assert mem.used == 120 and lg.entry_cells == 120              # the entry stays cached
    lg.clear()
    assert mem.used == 0 and lg.free_cells == 500


# ── pinned entries: marked prefixes, installed from a prefix file ───────────
def retired(lg: KvLedger, mem: FakeMemory, tokens: np.ndarray):
    h = Holder()
    s = lg.admit(len(tokens) + 10)
    mem.fill(s, 0, len(tokens))
    return lg.retire(h, s, tokens)


def test_install_charges_like_an_evaluated_prefix(mem: FakeMemory) -> None:
    lg = ledger(mem, n_cells=500, max_entries=2)
    loaded: list[int] = []

    def load(slot: int) -> bool:              # what llama_state_seq_set_data does: cells appear
        loaded.append(slot)
        mem.fill(slot, 0, 120)
        return True

    entry = lg.install(toks((0, 120)), load)
    assert entry is not None and entry.pinned and entry.slot == loaded[0]
    assert entry.charge() == 120 == lg.entry_cells == mem.used and lg.free_cells == 380
    assert lg.lookup(toks((0, 120), (900, 910)), 129) == (entry, 120)
    h = Holder()
    s = lg.admit(10 + 20)
    lg.attach(h, entry, 120, s)
    mem.fill(s, 120, 130)
    assert lg.entry_cells + 10 == mem.used == 130                 # shared cells counted once
    lg.release(s, h)
    lg.clear()
    assert mem.used == 0 and lg.free_cells == 500


def test_install_that_fails_to_load_changes_nothing(mem: FakeMemory) -> None:
    lg = ledger(mem, n_cells=500, max_entries=2)

    def half_load(slot: int) -> bool:
        mem.fill(slot, 0, 30)                 # a partial restore, then failure
        return False

    assert lg.install(toks((0, 120)), half_load) is None
    assert mem.used == 0 and lg.entries == [] and lg.free_cells == 500
    assert lg.install(toks((0, 8)), half_load) is None             # shorter than min_prefix: not even tried
    assert mem.used == 0
    full = lg.admit(500)                                           # no room at all
    assert lg.install(toks((0, 120)), half_load) is None and mem.used == 0
    lg.release(full)


def test_pinned_entries_are_evicted_last(mem: FakeMemory) -> None:
    lg = ledger(mem, n_cells=400, max_entries=2)

    def fill(n: int):
        return lambda slot: (mem.fill(slot, 0, n), True)[1]

    pinned = lg.install(toks((0, 100)), fill(100))
    a = retired(lg, mem, toks((1000, 1080)))
    b = retired(lg, mem, toks((2000, 2080)))          # over max_entries: the unpinned a goes
    assert lg.entries == [pinned, b]
    assert lg.make_room(400 - 100 - 10)              # b goes before the older pinned entry
    assert lg.entries == [pinned]
    assert a is not None and a.slot is None and b is not None and b.slot is None
    assert lg.make_room(400)                         # under pressure even a pinned entry goes
    assert lg.entries == [] and mem.used == 0
