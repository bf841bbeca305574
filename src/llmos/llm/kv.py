"""KV bookkeeping for one unified llama.cpp context: sequence-id slots, cell
reservations and the LRU of shared prefixes.

Map:
- ``Holder``: anything that may share a prefix entry's cells (a live sequence,
  or another entry): ``parent`` entry and ``base`` (tokens shared from it).
- ``Entry``: a cached prefix: token ids at positions [0, len) held by a seq id
  of its own; once evicted it becomes a *ghost* that only accounts for the cells
  its sharers still hold.
- ``KvLedger``: slots (seq ids), reservations of live sequences, the entry LRU;
  ``lookup`` / ``attach`` / ``detach`` / ``retire`` / ``promote`` / ``install`` /
  ``make_room`` / ``clear``. Entries marked ``pinned`` (a request's marked fixed
  prefix) are evicted only after every unpinned one.

NOTE (accounting). In a unified KV cache ``llama_memory_seq_cp`` does not copy:
the cells of positions [0, L) simply gain the destination's seq id, and a cell
is freed when its last seq id is removed. So cells are counted once, by whoever
"owns" them: an entry owns positions [base, len) (the part it does not share
from its own parent); when evicted it still owns [base, max L of its sharers).
A live sequence owns what lies past its ``base``, and *reserves* up front all it
may ever own (prompt + max_tokens − base), so a decode never runs out of cells:
``free_cells = n_cells − Σ reservations − Σ entry charges`` is exact, never
optimistic. A sequence that cannot reserve waits; nothing ever crashes. An entry
``install``ed from a prefix file is charged exactly like one evaluated in place:
its own ``len`` cells (it shares nothing, base 0).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import numpy as np

__all__ = ["Holder", "Entry", "KvLedger", "Memory", "common_prefix"]


class Memory(Protocol):
    def seq_rm(self, seq_id: int, p0: int = -1, p1: int = -1) -> bool: ...
    def seq_cp(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None: ...


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common prefix of two token arrays."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


class Holder:
    parent: Entry | None = None   # entry whose cells [0, base) this holder shares
    base: int = 0                 # tokens shared from ``parent``


class Entry(Holder):
    _ids = itertools.count()

    def __init__(self, tokens: np.ndarray, slot: int) -> None:
        self.id = next(Entry._ids)
        self.tokens = tokens            # token ids at positions [0, len); immutable
        self.slot: int | None = slot    # seq id holding the cells; None once evicted (ghost)
        self.refs: dict[Holder, int] = {}   # sharer → tokens it shares from here
        self.hits = 0                   # times a request reused it
        self.pinned = False             # a marked fixed prefix: evicted after unpinned entries

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def cached(self) -> bool:
        return self.slot is not None

    def charge(self) -> int:
        """Cells this entry owns now (see NOTE)."""
        top = len(self.tokens) if self.cached else max(self.refs.values(), default=self.base)
        return max(0, top - self.base)

    def __repr__(self) -> str:
        pin = ", pinned" if self.pinned else ""
        return f"Entry(#{self.id}, {len(self)} tokens, slot={self.slot}, refs={len(self.refs)}{pin})"


class KvLedger:
    """Owned by the engine thread; every method runs there.

    ``n_cells``: the context's KV size (tokens). Slots ``0 .. n_slots-1`` are
    seq ids; at most ``max_live`` are held by live sequences and at most
    ``max_entries`` by cached prefixes, so the two never starve each other."""

    def __init__(self, memory: Memory, *, n_cells: int, max_live: int, max_entries: int,
                 min_prefix: int = 16) -> None:
        self.mem = memory
        self.n_cells = n_cells                     # tokens, whole cache
        self.max_live = max_live                   # live sequences holding a slot
        self.max_entries = max_entries             # cached prefixes holding a slot
        self.min_prefix = min_prefix               # tokens: shorter matches are not worth sharing
        self.n_slots = max_live + max_entries
        self._free_slots = list(range(self.n_slots - 1, -1, -1))   # stack of free seq ids
        self._reserved: dict[int, int] = {}        # live slot → cells reserved (tokens)
        self._lru: OrderedDict[Entry, None] = OrderedDict()        # cached entries, oldest first
        self._ghosts: set[Entry] = set()           # evicted entries whose cells sharers still hold
        self.evictions = 0                         # entries evicted since start

    # ── totals ──────────────────────────────────────────────────────────────
    @property
    def entry_cells(self) -> int:
        return sum(e.charge() for e in self._lru) + sum(e.charge() for e in self._ghosts)

    @property
    def reserved_cells(self) -> int:
        return sum(self._reserved.values())

    @property
    def free_cells(self) -> int:
        return self.n_cells - self.reserved_cells - self.entry_cells

    @property
    def live(self) -> int:
        return len(self._reserved)

    @property
    def entries(self) -> list[Entry]:
        return list(self._lru)

    # ── live sequences ──────────────────────────────────────────────────────
    def can_admit(self, cells: int) -> bool:
        return self.live < self.max_live and cells <= self.free_cells

    def admit(self, cells: int) -> int:
        """Take a slot and reserve ``cells`` for a live sequence; returns its seq id."""
        if not self.can_admit(cells):
            raise RuntimeError("KvLedger.admit without room (call make_room first)")
        slot = self._free_slots.pop()
        self._reserved[slot] = cells
        return slot

    def release(self, slot: int, holder: Holder | None = None) -> None:
        """A live sequence leaves: its cells are removed and its slot freed."""
        self._reserved.pop(slot, None)
        self.mem.seq_rm(slot)
        if holder is not None:
            self.detach(holder)
        self._free_slots.append(slot)

    # ── prefixes ────────────────────────────────────────────────────────────
    def lookup(self, tokens: np.ndarray, limit: int) -> tuple[Entry | None, int]:
        """The cached entry sharing the longest prefix with ``tokens`` (at most ``limit``)."""
        best, best_n = None, 0
        for e in self._lru:
            n = min(common_prefix(e.tokens, tokens), limit)
            if n >= best_n and n > 0:
                best, best_n = e, n
        if best_n < self.min_prefix:
            return None, 0
        return best, best_n

    def attach(self, holder: Holder, entry: Entry, n: int, slot: int) -> None:
        """Share ``entry``'s first ``n`` tokens with the sequence in ``slot``."""
        assert entry.slot is not None and 0 < n <= len(entry)
        self.mem.seq_cp(entry.slot, slot, 0, n)
        entry.refs[holder] = n
        entry.hits += 1
        holder.parent, holder.base = entry, n
        self._lru.move_to_end(entry)

    def detach(self, holder: Holder) -> None:
        """``holder`` stops sharing its parent's cells (it left, or it was snapshotted)."""
        parent = holder.parent
        holder.parent, holder.base = None, 0
        if parent is None:
            return
        parent.refs.pop(holder, None)
        if not parent.cached and not parent.refs:
            self._ghosts.discard(parent)
            self.detach(parent)

    def retire(self, holder: Holder, slot: int, tokens: np.ndarray) -> Entry | None:
        """Keep a finished sequence's KV as a prefix entry (it keeps its slot).
        Returns None (and frees everything) when it adds nothing worth caching."""
        own = len(tokens) - holder.base
        if len(tokens) < self.min_prefix or own <= 0 or self.max_entries == 0:
            self.release(slot, holder)
            return None
        self._reserved.pop(slot, None)
        entry = Entry(tokens, slot)
        if holder.parent is not None:         # the entry takes over the holder's share
            parent, n = holder.parent, holder.base
            parent.refs.pop(holder, None)
            parent.refs[entry] = n
            entry.parent, entry.base = parent, n
            holder.parent, holder.base = None, 0
        self._lru[entry] = None
        while len(self._lru) > self.max_entries:
            self.evict(self._victim())
        return entry

    def promote(self, holder: Holder, slot: int, tokens: np.ndarray, n: int) -> Entry | None:
        """Make a live sequence's first ``n`` tokens (already in KV) a shared entry, so a
        request arriving beside it can share them. The sequence keeps its cells, now as a
        sharer of the new entry; its reservation shrinks by what the entry now owns."""
        if self.max_entries == 0 or n <= holder.base or slot not in self._reserved:
            return None
        while len(self._lru) >= self.max_entries:
            self.evict(self._victim())
        eslot = self._free_slots.pop()
        self.mem.seq_cp(slot, eslot, 0, n)
        entry = Entry(tokens[:n].copy(), eslot)
        parent, base = holder.parent, holder.base
        if parent is not None:
            parent.refs.pop(holder, None)
            parent.refs[entry] = base
            entry.parent, entry.base = parent, base
        entry.refs[holder] = n
        holder.parent, holder.base = entry, n
        self._reserved[slot] -= n - base
        self._lru[entry] = None
        return entry

    def install(self, tokens: np.ndarray, load: Callable[[int], bool]) -> Entry | None:
        """Add a pinned entry for ``tokens`` whose KV ``load(slot)`` writes into a free seq id
        (a prefix file). None, with nothing changed but evictions, when there is no room
        or ``load`` returns False."""
        n = len(tokens)
        if self.max_entries == 0 or n < self.min_prefix:
            return None
        while len(self._lru) >= self.max_entries:
            self.evict(self._victim())
        if not self.make_room(n):
            return None
        slot = self._free_slots.pop()
        if not load(slot):
            self.mem.seq_rm(slot)
            self._free_slots.append(slot)
            return None
        entry = Entry(tokens.copy(), slot)
        entry.pinned = True
        self._lru[entry] = None
        return entry

    def _victim(self) -> Entry:
        """The entry to evict when one must go: the least recently used unpinned one."""
        return next((e for e in self._lru if not e.pinned), next(iter(self._lru)))

    def reservation(self, slot: int) -> int:
        return self._reserved.get(slot, 0)

    def evict(self, entry: Entry) -> None:
        """Drop a cached prefix; cells its sharers hold stay accounted to it (a ghost)."""
        if entry.slot is None:
            return
        self._lru.pop(entry, None)
        self.mem.seq_rm(entry.slot)
        self._free_slots.append(entry.slot)
        entry.slot = None
        self.evictions += 1
        if entry.refs:
            self._ghosts.add(entry)
        else:
            self.detach(entry)

    def make_room(self, cells: int, keep: Entry | None = None) -> bool:
        """Evict least-recently-used prefixes (unpinned before pinned, unshared before
        shared) until ``cells`` fit; ``keep`` is never evicted. True when they fit."""
        if cells <= self.free_cells:
            return True
        for pinned in (False, True):
            for shared in (False, True):
                for e in [e for e in self._lru
                          if e is not keep and e.pinned == pinned and bool(e.refs) == shared]:
                    self.evict(e)
                    if cells <= self.free_cells:
                        return True
        return cells <= self.free_cells

    def clear(self) -> None:
        """Evict every cached prefix."""
        for e in list(self._lru):
            self.evict(e)
