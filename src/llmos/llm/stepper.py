"""The embedded engine's step: policy → one llama_batch → decode → sample → deliver.

Map:
- ``Stepper``: everything the engine thread owns: live sequences (``seqs``), the KV
  ledger (``kv.KvLedger``), the batch, the step policy, stats and timings.
  ``step()`` runs one step; ``finish`` / ``fail_all`` end sequences; ``swap_out``
  snapshots one; ``facts`` / ``cells_held`` report KV accounting.
- admission (``_admit``: a slot, a reservation, the longest shared prefix, from the
  LRU, a prefix file or a sequence prefilling beside it), ``_restore``,
  ``_sample_and_deliver``; marked prefixes: ``_load_prefix`` / ``_pin_prefix``.

NOTE (one step, on the engine thread). Build a ``SeqView`` of every live
sequence not held by ``suspend``; ask ``policy.decide(views, budget)``. Apply
``pause`` (keep KV) and ``swap_out`` (snapshot with llama_state_seq_get_data,
free the slot and cells). Then walk ``run`` in order, at most ``max_active``:
a WAITING sequence is admitted (a slot, a reservation of prompt + max_tokens
cells, and the longest cached prefix shared with llama_memory_seq_cp, so only
the suffix is prefilled; a request whose prompt overlaps one still being
prefilled beside it waits for that prefill and shares it); a SWAPPED one is
restored (llama_state_seq_set_data); a waiting sequence that does not fit stops
further admissions this step (FIFO order, no bypass) and simply waits. Grammar
masks for the rows that will sample are computed on the mask thread while
llama_decode runs. One ``llama_batch`` gets every decoding
sequence's pending token first, then prefill chunks (``prefill_chunk`` each)
in the room left, so a long prompt never stalls running sequences. After the
decode, rows that ask for a token are masked (grammar), sampled together, and
delivered; finished sequences leave, their KV kept as a prefix entry (LRU).
A sequence never advances unless the policy listed it.

NOTE (marked prefixes). A request may mark its first ``pin`` prompt tokens as a
fixed prefix (``Seq.pin``). At admission, when no cached entry covers them, the
prefix file (``prefix_store.PrefixStore``) is read into a free entry slot with
llama_state_seq_set_data and becomes a pinned entry the sequence shares, so only
the suffix is evaluated. Without a file the sequence evaluates the prefix in
chunks that end exactly at ``pin`` (so the suffix is computed in the same batches
as after a load); once ``pin`` tokens are in KV they are promoted to a pinned
entry and its state (llama_state_seq_get_data) is written to the file on the
store's writer thread. A file that fails to load is deleted and written again.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from llmos.errors import EngineError, LLMOSError
from llmos.llm import _llama
from llmos.llm.base import (
    Chunk,
    EngineStats,
    FifoPolicy,
    SeqState,
    SeqView,
    StepBudget,
    StepDecision,
    StepPolicy,
)
from llmos.llm.constrain import Constrainer
from llmos.llm.kv import Entry, KvLedger, common_prefix
from llmos.llm.prefix_store import PrefixStore
from llmos.llm.sampling import sample_batch
from llmos.llm.sequence import Seq

__all__ = ["Stepper", "MIN_PREFIX_TOKENS"]

log = logging.getLogger("llmos.llm.stepper")

RATE_WINDOW_S = 5.0         # tokens_per_s is measured over this recent window
MIN_PREFIX_TOKENS = 16      # shorter shared prefixes are not worth an entry


class Stepper:
    """Owned by the engine thread: nothing here is touched from another thread."""

    def __init__(self, model: _llama.Model, ctx: _llama.Context, constrainer: Constrainer, *,
                 model_name: str, max_active: int, prefill_chunk: int, n_entries: int,
                 on_done: Callable[[str], None], snapshot_dir: Path | None = None,
                 prefix_store: PrefixStore | None = None) -> None:
        self.model = model
        self.ctx = ctx
        self.constrainer = constrainer
        self.model_name = model_name
        self.max_active = max_active                   # live sequences with a slot
        self.prefill_chunk = prefill_chunk             # tokens of one prompt per step
        self.n_ctx = ctx.n_ctx                         # KV cells, all sequences
        self.ledger = KvLedger(ctx, n_cells=ctx.n_ctx, max_live=max_active, max_entries=n_entries,
                               min_prefix=MIN_PREFIX_TOKENS)
        self.batch = _llama.Batch(ctx.n_batch)
        self.on_done = on_done                         # called with a request id when it leaves
        self.snap_dir = snapshot_dir                   # where to_disk snapshots go (made on use)
        self.prefix_store = prefix_store               # marked prefixes on disk; None: not persisted
        self.seqs: dict[str, Seq] = {}                 # live requests, arrival order
        self.policy: StepPolicy = FifoPolicy()         # set by the engine (set_policy)
        self.stats = EngineStats(kv_total_tokens=ctx.n_ctx)
        self.rate: collections.deque[tuple[float, int]] = collections.deque()   # (t, tokens) per step
        self.last_decision: StepDecision | None = None
        # seconds on the engine thread: whole steps that ran a batch, and llama_decode within
        # them; 1 - decode_s / step_s is the engine's own per-step overhead
        self.timing = {"step_s": 0.0, "decode_s": 0.0}

    def _budget(self) -> StepBudget:
        return StepBudget(max_active=self.max_active, max_batch_tokens=self.batch.capacity,
                          kv_free_tokens=max(0, self.ledger.free_cells), kv_total_tokens=self.n_ctx)

    def _decide(self, views: list[SeqView]) -> StepDecision:
        try:
            return self.policy.decide(views, self._budget())
        except Exception:
            log.exception("step policy failed; using FIFO for this step")
            return FifoPolicy().decide(views, self._budget())

    def step(self) -> bool:
        """One step (see NOTE). True when a batch ran."""
        t0 = time.perf_counter()
        ran = self._step_inner()
        if ran:
            self.timing["step_s"] += time.perf_counter() - t0
        return ran

    def _step_inner(self) -> bool:
        views = [s.view() for s in self.seqs.values() if not s.held]
        if not views:
            return False
        decision = self._decide(views)
        self.last_decision = decision
        seqs = self.seqs
        for rid in decision.pause:
            s = seqs.get(rid)
            if s is not None and not s.held and s.state in (SeqState.PREFILLING, SeqState.DECODING):
                s.state = SeqState.PAUSED
                s.preemptions += 1
        for rid in decision.swap_out:
            s = seqs.get(rid)
            if s is not None and not s.held and s.resident:
                self.swap_out(s)
        decode: list[Seq] = []
        prefill: list[Seq] = []
        admitting = True
        skip = set(decision.swap_out)
        for rid in decision.run:
            if len(decode) + len(prefill) >= self.max_active:
                break
            s = seqs.get(rid)
            if s is None or s.held or rid in skip:
                continue
            if s.state == SeqState.WAITING:
                if not admitting:
                    continue
                admitted = self._admit(s)
                if admitted is None:          # waits to share a prefix still being prefilled
                    continue
                if not admitted:
                    admitting = False
                    continue
            elif s.state == SeqState.SWAPPED and not self._restore(s):
                continue
            elif s.state == SeqState.PAUSED:
                s.state = SeqState.DECODING if s.pending is not None else SeqState.PREFILLING
            (decode if s.state == SeqState.DECODING else prefill).append(s)
        if not decode and not prefill:
            return False
        return self._run_batch(decode, prefill)

    def _run_batch(self, decode: list[Seq], prefill: list[Seq]) -> bool:
        batch = self.batch
        batch.clear()
        rows: list[tuple[Seq, int]] = []     # sequences that get a token this step, with their row
        for s in decode:
            rows.append((s, batch.add((s.pending,), s.kv_len, s.slot, True)))  # type: ignore[arg-type]
        chunks: list[tuple[Seq, int]] = []
        for s in prefill:
            n = min(self.prefill_chunk, s.n_prompt - s.prefilled, batch.room)
            if s.pin_due and s.prefilled < s.pin:
                n = min(n, s.pin - s.prefilled)      # a chunk ends at the marked prefix
            if n <= 0:
                continue
            last = s.prefilled + n == s.n_prompt
            row = batch.add(s.prompt[s.prefilled:s.prefilled + n], s.prefilled, s.slot, last)  # type: ignore[arg-type]
            chunks.append((s, n))
            if last:
                rows.append((s, row))
        if batch.n_tokens == 0:
            return False
        con = [i for i, (s, _) in enumerate(rows) if s.matcher is not None]
        masks = self.constrainer.start([rows[i][0].matcher for i in con]) if con else None
        t0 = time.perf_counter()
        rc = self.ctx.decode(batch)
        self.timing["decode_s"] += time.perf_counter() - t0
        if rc == _llama.DECODE_NO_SLOT:
            # The ledger says the cells exist, so this is fragmentation: drop unshared
            # prefixes and try once more; if that fails the batch's sequences wait.
            log.warning("no KV slot for a %d-token batch; evicting cached prefixes", batch.n_tokens)
            self.ledger.make_room(self.n_ctx)
            if self.ctx.decode(batch) == _llama.DECODE_NO_SLOT:
                if masks is not None:
                    masks.result()
                return False
        step = self.stats.steps + 1
        for s in decode:
            s.kv_len += 1
            s.pending = None
            s.advanced_at = step
        for s, n in chunks:
            s.advanced_at = step
            s.prefilled += n
            s.kv_len = s.prefilled
            s.state = SeqState.PREFILLING
            self.stats.prompt_tokens_evaluated += n
            if s.pin_due and s.prefilled >= s.pin:
                self._pin_prefix(s)
        produced = self._sample_and_deliver(rows, batch.n_outputs, con, masks) if rows else 0
        self._account(len(decode) + len(prefill), produced)
        return True

    def _sample_and_deliver(self, rows: list[tuple[Seq, int]], n_outputs: int, con: list[int],
                            masks: concurrent.futures.Future | None) -> int:
        logits = self.ctx.logits(n_outputs)
        idx = [r for _, r in rows]
        if len(idx) != n_outputs or idx != list(range(n_outputs)):
            logits = logits[idx]
        if masks is not None:
            self.constrainer.apply(logits, con, masks.result())
        tokens = sample_batch(logits, [s.sampler for s, _ in rows])
        model, eog = self.model, self.model.eog
        for (s, _), tok in zip(rows, tokens.tolist(), strict=True):
            s.state = SeqState.DECODING
            if s.matcher is not None:
                try:
                    self.constrainer.commit(s.matcher, tok)
                except EngineError as e:
                    self.finish(s, "error", e)
                    continue
            text, reason = s.accept(tok, model.piece(tok), bool(eog[tok]))
            if text:
                s.handle.push(Chunk(text, tok, len(s.ids) - 1))
            if reason is None and s.matcher is not None and self.constrainer.finished(s.matcher):
                reason = "stop"
            if reason is not None:
                self.finish(s, reason)
        return len(rows)

    def _account(self, active: int, produced: int) -> None:
        now = time.monotonic()
        st = self.stats
        st.steps += 1
        st.active = active
        st.waiting = len(self.seqs) - sum(1 for s in self.seqs.values() if s.state in (
            SeqState.PREFILLING, SeqState.DECODING))
        st.tokens_generated += produced
        self.rate.append((now, produced))
        while self.rate and now - self.rate[0][0] > RATE_WINDOW_S:
            self.rate.popleft()
        span = now - self.rate[0][0] if len(self.rate) > 1 else 0.0
        st.tokens_per_s = sum(n for _, n in self.rate) / span if span > 0 else 0.0
        st.kv_used_tokens = self._kv_used()

    def _kv_used(self) -> int:
        return self.ledger.entry_cells + sum(s.kv_len - s.base for s in self.seqs.values() if s.resident)

    # ── admission, swap, finish ─────────────────────────────────────────────
    def _admit(self, s: Seq) -> bool | None:
        """Give a waiting sequence a slot, its reservation and a shared prefix.
        False: no room, it waits. None: a resident sequence is still prefilling a
        longer prefix this one shares; it waits for that, then shares it."""
        entry, n = self.ledger.lookup(s.prompt, s.n_prompt - 1)
        if n < s.pin and not s.pin_due:
            loaded = self._load_prefix(s)
            if loaded is not None:
                entry, n = loaded, s.pin
            s.pin_due = loaded is None       # no file (or a bad one): evaluate it, then save it
        donor, dn = self._live_donor(s, n)
        if donor is not None and donor.prefilled < dn:
            return None
        if donor is not None:
            n = dn
        need = s.n_prompt + s.max_tokens - n
        if self.ledger.live >= self.max_active or not self.ledger.make_room(need, keep=entry):
            return False
        if donor is not None:
            assert donor.slot is not None
            entry = self.ledger.promote(donor, donor.slot, donor.prompt, dn)
            donor.reserved = self.ledger.reservation(donor.slot)
            if entry is None:
                n = 0
        s.slot = self.ledger.admit(need if entry is not None else s.n_prompt + s.max_tokens)
        s.reserved = self.ledger.reservation(s.slot)
        if entry is not None:
            self.ledger.attach(s, entry, n, s.slot)
            s.cached_tokens = n
        else:
            n = 0
        s.prefilled = s.kv_len = n
        s.pin_due = s.pin_due and n < s.pin     # shared from a donor or an entry: nothing to pin
        s.state = SeqState.PREFILLING
        s.advanced_at = self.stats.steps + 1     # it runs in this step
        return True

    def _load_prefix(self, s: Seq) -> Entry | None:
        """The pinned entry for ``s``'s marked prefix, read from its prefix file; None when
        there is no store, no file, no room, or the file does not load (it is deleted)."""
        store = self.prefix_store
        if store is None or self.ledger.max_entries == 0:
            return None
        tokens = s.prompt[:s.pin]
        data = store.load(tokens)
        if data is None:
            return None
        failed: list[str] = []

        def load(slot: int) -> bool:
            try:
                self.ctx.state_set(slot, data)
            except EngineError as e:
                failed.append(e.message)
                return False
            if self.ctx.seq_pos_max(slot) != s.pin - 1:
                failed.append(f"restored positions end at {self.ctx.seq_pos_max(slot)}, not {s.pin - 1}")
                return False
            return True

        entry = self.ledger.install(tokens, load)
        if failed:
            store.reject(store.path_for(tokens), failed[0])
        if entry is not None:
            self.stats.prompt_tokens_loaded += s.pin
        return entry

    def _pin_prefix(self, s: Seq) -> None:
        """``s`` has its marked prefix in KV: make it a pinned entry and save it to its file."""
        s.pin_due = False
        if s.slot is None or s.pin <= s.base:
            return
        entry = self.ledger.promote(s, s.slot, s.prompt, s.pin)
        if entry is None:
            return
        entry.pinned = True
        s.reserved = self.ledger.reservation(s.slot)
        if self.prefix_store is not None:
            assert entry.slot is not None
            self.prefix_store.save(entry.tokens, self.ctx.state_get(entry.slot))

    def _live_donor(self, s: Seq, best: int) -> tuple[Seq | None, int]:
        """A resident sequence whose prompt shares more than ``best`` (+ a minimum)
        tokens with ``s``'s, and that is prefilling or holds them: (donor, tokens)."""
        if self.ledger.max_entries == 0:
            return None, 0
        donor, dn = None, best + MIN_PREFIX_TOKENS - 1
        for r in self.seqs.values():
            if r is s or not r.resident or r.held:
                continue
            if r.prefilled < r.n_prompt and r.advanced_at < self.stats.steps:
                continue                  # not advancing (paused, or not listed): do not wait on it
            n = min(common_prefix(r.prompt, s.prompt), s.n_prompt - 1, r.n_prompt)
            if n > dn and n > r.base:
                donor, dn = r, n
        return donor, (dn if donor is not None else 0)

    def swap_out(self, s: Seq, *, to_disk: bool = False) -> None:
        assert s.slot is not None
        data = self.ctx.state_get(s.slot)
        if to_disk:
            if self.snap_dir is None:
                self.snap_dir = Path(tempfile.mkdtemp(prefix="llmos-kv-"))
            self.snap_dir.mkdir(parents=True, exist_ok=True)
            path = self.snap_dir / f"{s.rid}.kv"
            data.tofile(path)
            s.snapshot_path = path
        else:
            s.snapshot = data
        self.ledger.release(s.slot, s)
        s.slot, s.reserved = None, 0
        s.state = SeqState.SWAPPED
        s.preemptions += 1

    def _restore(self, s: Seq) -> bool:
        need = s.n_prompt + s.max_tokens
        if self.ledger.live >= self.max_active or not self.ledger.make_room(need):
            return False
        slot = self.ledger.admit(need)
        data = s.snapshot if s.snapshot is not None else np.fromfile(s.snapshot_path, dtype=np.uint8)
        try:
            self.ctx.state_set(slot, data)
        except EngineError:
            self.ledger.release(slot)
            raise
        s.slot, s.reserved = slot, need
        self._drop_snapshot(s)
        s.state = SeqState.DECODING if s.pending is not None else SeqState.PREFILLING
        return True

    def _drop_snapshot(self, s: Seq) -> None:
        s.snapshot = None
        if s.snapshot_path is not None:
            s.snapshot_path.unlink(missing_ok=True)
            s.snapshot_path = None

    def finish(self, s: Seq, reason: str, error: LLMOSError | None = None) -> None:
        self.seqs.pop(s.rid, None)
        if s.slot is not None:
            if reason in ("stop", "length"):
                self.ledger.retire(s, s.slot, s.kv_tokens())
            else:
                self.ledger.release(s.slot, s)
            s.slot = None
        self._drop_snapshot(s)
        s.state = SeqState.DONE
        self.on_done(s.rid)
        if error is not None:
            s.handle.fail(error)
        else:
            s.handle.finish(s.completion(reason, self.model_name))  # type: ignore[arg-type]

    def fail_all(self, error: LLMOSError) -> None:
        for s in list(self.seqs.values()):
            self.finish(s, "error", error)

    # ── introspection ───────────────────────────────────────────────────────
    def facts(self) -> dict[str, Any]:
        """KV accounting facts (read between steps, e.g. after ``await sync()``)."""
        lg = self.ledger
        return {"entries": len(lg.entries), "pinned": sum(e.pinned for e in lg.entries),
                "entry_cells": lg.entry_cells, "reserved": lg.reserved_cells,
                "free": lg.free_cells, "live": lg.live, "evictions": lg.evictions,
                "cells_held": self.cells_held()}

    def cells_held(self) -> int:
        """Positions llama.cpp holds over every seq id (pos_max + 1 summed); 0 when empty."""
        return sum(self.ctx.seq_pos_max(i) + 1 for i in range(self.ctx.n_seq_max))

