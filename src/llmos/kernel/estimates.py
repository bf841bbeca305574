"""Learned costs: tokens and seconds per (agent, kind, model), from observations.

This is the scheduler's adaptive self-optimization: every finished task's
measured tokens and seconds refine what ``sjf`` (and anyone else) predicts
for the next task of the same kind.

Map:
- ``Key``: ``(agent, kind, model)``; ``"*"`` stands for "any".
- ``Estimates.observe(key, tokens, seconds)``: folds one observation into the
  key and its generalizations ``(agent, kind, *)``, ``(*, kind, model)``,
  ``(*, kind, *)``, so a new agent or model starts from what others taught.
- ``Estimates.predict(key) -> (tokens, seconds, confidence)``.
- Storage: its own table ``estimates`` (plus ``estimates_schema`` holding the
  schema version) in any SQLite database. Given a path, it opens, owns and
  commits its own connection; given a ``sqlite3.Connection``, its writes join
  the caller's transactions (the caller commits, e.g. by group commit).
  ``None`` keeps everything in memory.

NOTE (model): each key keeps a count n and an EWMA mean whose step is
``max(alpha, 1/n)`` (a plain average for the first 1/alpha observations, then
exponential forgetting, so drift is followed). A key's prediction shrinks its
mean toward the prediction of the next, more general key with weight
``c = n / (n + prior_weight)``; the most general key shrinks toward the prior.
``confidence = 1 − Π(1 − c)`` over the chain: 0 with no data, → 1 with much.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from llmos.errors import InvalidArgument, JournalError, map_foreign

__all__ = ["Key", "Estimate", "Estimates", "SCHEMA_VERSION"]

Key = tuple[str, str, str]   # (agent, kind, model); "*" = any
ANY = "*"
SCHEMA_VERSION = 1
PRIOR_TOKENS = 128.0         # a short answer on the embedded model, before any data
PRIOR_S = 2.0
ALPHA = 0.2                  # EWMA step once a key has 1/ALPHA observations
PRIOR_WEIGHT = 2.0           # the prior counts as this many observations

_SCHEMA = """
CREATE TABLE IF NOT EXISTS estimates_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS estimates (
    agent   TEXT NOT NULL,
    kind    TEXT NOT NULL,
    model   TEXT NOT NULL,
    n       INTEGER NOT NULL,   -- observations folded in
    tokens  REAL NOT NULL,      -- EWMA of tokens per task
    seconds REAL NOT NULL,      -- EWMA of seconds per task
    PRIMARY KEY (agent, kind, model)
);
"""


@dataclass
class Estimate:
    n: int = 0                # observations
    tokens: float = 0.0       # EWMA, tokens
    seconds: float = 0.0      # EWMA, seconds


def _check_key(key: object) -> Key:
    if (not isinstance(key, tuple) or len(key) != 3
            or not all(isinstance(k, str) and k for k in key)):
        raise InvalidArgument(f"key: expected (agent, kind, model) of non-empty strings, got {key!r}",
                              field="key", expected="(agent, kind, model); '*' for any")
    return key  # type: ignore[return-value]


def _chain(key: Key) -> list[Key]:
    """The key and its generalizations, most specific first."""
    a, k, m = key
    out: list[Key] = []
    for c in ((a, k, m), (a, k, ANY), (ANY, k, m), (ANY, k, ANY)):
        if c not in out:
            out.append(c)
    return out


class Estimates:
    def __init__(self, store: sqlite3.Connection | str | Path | None = None, *,
                 prior: tuple[float, float] = (PRIOR_TOKENS, PRIOR_S), alpha: float = ALPHA,
                 prior_weight: float = PRIOR_WEIGHT) -> None:
        if not (0 < alpha <= 1):
            raise InvalidArgument(f"alpha: expected a number in (0, 1], got {alpha!r}", field="alpha",
                                  expected="0 < alpha <= 1")
        if not (prior_weight > 0):
            raise InvalidArgument(f"prior_weight: expected a positive number, got {prior_weight!r}",
                                  field="prior_weight", expected="number > 0")
        self._check_obs(*prior, name="prior")
        self.prior = (float(prior[0]), float(prior[1]))
        self.alpha = alpha
        self.prior_weight = prior_weight
        self._rows: dict[Key, Estimate] = {}       # every key seen; observe() only
        self._own = False                          # True when we opened (and commit) the connection
        self._db: sqlite3.Connection | None = None
        if isinstance(store, (str, Path)):
            try:
                self._db = sqlite3.connect(str(store))
                self._db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.Error as e:
                raise map_foreign(e, context=f"estimates at {store}") from e
            self._own = True
        elif isinstance(store, sqlite3.Connection):
            self._db = store
        elif store is not None:
            raise InvalidArgument("store: expected a sqlite3 connection, a path or None",
                                  field="store", expected="sqlite3.Connection | path | None")
        if self._db is not None:
            self._load()

    # ── storage ────────────────────────────────────────────────────────────
    def _load(self) -> None:
        db = self._db
        assert db is not None
        try:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            row = db.execute("SELECT max(version) FROM estimates_schema").fetchone()
            version = row[0] if row else None
            if version is None:
                db.execute("INSERT INTO estimates_schema (version) VALUES (?)", (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise JournalError(f"estimates table has schema version {version}, this code knows "
                                   f"{SCHEMA_VERSION}", hint="upgrade llmos")
            for a, k, m, n, tok, sec in db.execute(
                    "SELECT agent, kind, model, n, tokens, seconds FROM estimates"):
                self._rows[(a, k, m)] = Estimate(int(n), float(tok), float(sec))
            if self._own:
                db.commit()
        except sqlite3.Error as e:
            raise map_foreign(e, context="estimates") from e

    def _save(self, keys: list[Key]) -> None:
        if self._db is None:
            return
        try:
            self._db.executemany(
                "INSERT INTO estimates (agent, kind, model, n, tokens, seconds) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT (agent, kind, model) DO UPDATE SET n=excluded.n, "
                "tokens=excluded.tokens, seconds=excluded.seconds",
                [(*k, self._rows[k].n, self._rows[k].tokens, self._rows[k].seconds) for k in keys])
            if self._own:
                self._db.commit()
        except sqlite3.Error as e:
            raise map_foreign(e, context="estimates") from e

    def close(self) -> None:
        if self._own and self._db is not None:
            self._db.close()
            self._db = None

    # ── learning ───────────────────────────────────────────────────────────
    @staticmethod
    def _check_obs(tokens: object, seconds: object, name: str = "observation") -> None:
        for what, v in (("tokens", tokens), ("seconds", seconds)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise InvalidArgument(f"{name}.{what}: expected a finite number >= 0, got {v!r}",
                                      field=f"{name}.{what}", expected="finite number >= 0")

    def observe(self, key: Key, tokens: float, seconds: float) -> None:
        """Fold one finished task's measured tokens and seconds into ``key`` and its generalizations."""
        key = _check_key(key)
        self._check_obs(tokens, seconds)
        chain = _chain(key)
        for k in chain:
            e = self._rows.setdefault(k, Estimate())
            e.n += 1
            step = max(self.alpha, 1.0 / e.n)
            e.tokens += step * (tokens - e.tokens)
            e.seconds += step * (seconds - e.seconds)
        self._save(chain)

    def predict(self, key: Key) -> tuple[float, float, float]:
        """(tokens, seconds, confidence in [0, 1)) predicted for one task under ``key``."""
        key = _check_key(key)
        tok, sec = self.prior
        miss = 1.0
        for k in reversed(_chain(key)):          # most general first, each shrinks toward the last
            e = self._rows.get(k)
            if e is None or e.n == 0:
                continue
            c = e.n / (e.n + self.prior_weight)
            tok = c * e.tokens + (1 - c) * tok
            sec = c * e.seconds + (1 - c) * sec
            miss *= 1 - c
        return tok, sec, 1.0 - miss

    def get(self, key: Key) -> Estimate | None:
        """The raw row for exactly ``key`` (no back-off), or None."""
        e = self._rows.get(_check_key(key))
        return None if e is None else Estimate(e.n, e.tokens, e.seconds)

    def rows(self) -> list[tuple[Key, Estimate]]:
        return sorted(((k, Estimate(e.n, e.tokens, e.seconds)) for k, e in self._rows.items()),
                      key=lambda kv: kv[0])
