"""The token store: every bearer token of one state directory, and which agents are disabled.

Map:
- ``TokenStore(home)``: ``admin.token`` (mode 0600, created on first use; the person's
  token, read by local tools) and ``tokens.json`` (mode 0600): agent tokens as SHA-256
  digests (the file never holds a usable secret) with their agent, label, scope and
  creation time, and the disabled agents. One store for every token: those
  ``agent.create`` hands out and those made later over the API or CLI.
    - ``issue(agent, label, scope)`` returns a fresh token once (refused for a disabled
      agent); ``list(agent)``, ``revoke(id)``, ``revoke_agent(agent)``;
    - ``lookup(token)``: the row of a presented agent token, or None;
    - ``disable(agents, by, reason)`` / ``is_disabled(agent)`` / ``disabled()``;
    - ``adopt(digest, agent, label)``: take in a digest kept elsewhere (the journal's
      tokens from before this store).
- ``shared(home)``: the store the kernel uses (one per state directory per process).
- ``Principal`` / ``AuthError``: who a presented token acts for (``resolve``).

Several ``TokenStore`` objects on one directory agree: each re-reads the file when it
changed on disk (inode, size, mtime) before answering or writing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from llmos.errors import LLMOSError, NotFound, PermissionDenied, map_foreign

__all__ = ["TokenStore", "Principal", "AuthError", "shared", "digest", "ADMIN_AGENT", "ADMIN_TOKEN_FILE",
           "TOKENS_FILE", "SCOPES"]

ADMIN_AGENT = "root"              # the kernel's built-in agent that the admin token acts as
ADMIN_TOKEN_FILE = "admin.token"
TOKENS_FILE = "tokens.json"
TOKEN_PREFIX = "llmos-"           # makes a leaked token easy to recognise in logs and scanners
SCOPES = ("all", "metrics")       # what a token opens: everything its agent may do, or /metrics only


class AuthError(LLMOSError):
    """Missing or unknown bearer token (HTTP 401)."""

    code = "unauthorized"


@dataclass(frozen=True)
class Principal:
    agent: str           # kernel agent id the request acts for
    admin: bool = False  # presented the admin token
    scope: str = "all"   # "metrics": the token opens /metrics only


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600 from the first byte."""
    tmp = path.with_name(path.name + f".{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


class TokenStore:
    """Bearer tokens of one state directory. Thread-safe; the file is the truth."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self._lock = threading.RLock()
        self._admin: str | None = None                  # the admin token; read once
        self._tokens: dict[str, dict] | None = None     # digest -> {agent, label, created, scope}
        self._disabled: dict[str, dict] = {}            # agent -> {by, reason, at}
        self._seen: tuple | None = None                 # (inode, size, mtime_ns) of the file read

    # ── admin token ────────────────────────────────────────────────────────
    @property
    def admin_path(self) -> Path:
        return self.home / ADMIN_TOKEN_FILE

    def admin_token(self) -> str:
        """The admin token, created (mode 0600) on first call if the file is absent."""
        with self._lock:
            if self._admin is None:
                self._admin = self._load_or_create_admin()
            return self._admin

    def _load_or_create_admin(self) -> str:
        path = self.admin_path
        try:
            if path.exists():
                mode = path.stat().st_mode & 0o777
                if mode & 0o077:
                    os.chmod(path, 0o600)   # tighten a copied or hand-made file
                token = path.read_text().strip()
                if token:
                    return token
            self.home.mkdir(parents=True, exist_ok=True)
            token = TOKEN_PREFIX + "admin-" + secrets.token_urlsafe(32)
            _write_private(path, token + "\n")
            return token
        except OSError as e:
            raise map_foreign(e, context="admin token") from e

    def is_admin(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token.encode("utf-8", "surrogatepass"),
                                                   self.admin_token().encode())

    # ── the file ───────────────────────────────────────────────────────────
    @property
    def tokens_path(self) -> Path:
        return self.home / TOKENS_FILE

    def _stamp(self) -> tuple | None:
        try:
            st = self.tokens_path.stat()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise map_foreign(e, context=f"token file {self.tokens_path}") from e
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _table(self) -> dict[str, dict]:
        """The tokens, re-read when the file changed since the last read."""
        stamp = self._stamp()
        if self._tokens is None or stamp != self._seen:
            try:
                data = json.loads(self.tokens_path.read_text()) if stamp is not None else {}
            except (OSError, ValueError) as e:
                raise map_foreign(e, context=f"token file {self.tokens_path}") from e
            if not isinstance(data, dict):
                data = {}
            if "tokens" in data and isinstance(data["tokens"], dict):     # this format
                rows, disabled = data["tokens"], data.get("disabled") or {}
            else:                                                          # the flat one before
                rows, disabled = data, {}
            self._tokens = {k: v for k, v in rows.items() if isinstance(v, dict) and "agent" in v}
            self._disabled = {k: v for k, v in disabled.items() if isinstance(v, dict)}
            self._seen = stamp
        return self._tokens

    def _save(self) -> None:
        try:
            _write_private(self.tokens_path, json.dumps(
                {"tokens": self._tokens, "disabled": self._disabled}, indent=1, sort_keys=True))
            self._seen = self._stamp()
        except OSError as e:
            raise map_foreign(e, context="token file") from e

    # ── agent tokens ───────────────────────────────────────────────────────
    def issue(self, agent: str, label: str = "", *, scope: str = "all") -> tuple[str, str]:
        """Create a token for ``agent``; return ``(token, token_id)``. The token is shown once."""
        if scope not in SCOPES:
            raise LLMOSError(f"scope: expected one of {', '.join(SCOPES)}, got {scope!r}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        d = digest(token)
        with self._lock:
            table = self._table()
            if agent in self._disabled:
                raise PermissionDenied(f"agent {agent!r} is disabled: no new tokens",
                                       reason="the agent is disabled")
            table[d] = {"agent": agent, "label": label, "created": time.time(), "scope": scope}
            self._save()
        return token, d[:16]

    def adopt(self, token_digest: str, agent: str, label: str) -> bool:
        """Take in a token digest kept elsewhere; False when it is already here."""
        with self._lock:
            table = self._table()
            if token_digest in table:
                return False
            table[token_digest] = {"agent": agent, "label": label, "created": time.time(), "scope": "all"}
            self._save()
            return True

    def list(self, agent: str | None = None) -> list[dict]:
        """Token ids (never the tokens) with their agent, label, scope and creation time."""
        with self._lock:
            rows = [{"id": d[:16], "scope": "all", **v} for d, v in self._table().items()]
        return sorted((r for r in rows if agent is None or r["agent"] == agent),
                      key=lambda r: r["created"])

    def revoke(self, token_id: str) -> str:
        """Forget the token whose id is ``token_id``; return its agent."""
        with self._lock:
            table = self._table()
            for d in list(table):
                if d[:16] == token_id:
                    agent = table.pop(d)["agent"]
                    self._save()
                    return agent
        raise NotFound(f"no token with id {token_id!r}", hint="list them with `llmos tokens list`")

    def revoke_agent(self, agent: str) -> int:
        """Forget every token of ``agent``; return how many."""
        with self._lock:
            table = self._table()
            gone = [d for d, v in table.items() if v.get("agent") == agent]
            for d in gone:
                del table[d]
            if gone:
                self._save()
            return len(gone)

    def lookup(self, token: str | None) -> dict | None:
        """The row of a presented agent token, or None."""
        if not token:
            return None
        with self._lock:
            return self._table().get(digest(token))

    def resolve(self, token: str | None) -> Principal:
        """The principal for a presented token, or AuthError."""
        if not token:
            raise AuthError("missing bearer token",
                            hint="send 'Authorization: Bearer <token>'; the admin token is in "
                                 f"{self.admin_path}")
        if self.is_admin(token):
            return Principal(ADMIN_AGENT, admin=True)
        row = self.lookup(token)
        if row is None:
            raise AuthError("unknown or revoked token",
                            hint="create one with POST /api/v1/agents/{agent}/tokens or `llmos tokens create`")
        return Principal(str(row["agent"]), scope=str(row.get("scope", "all")))

    # ── disabled agents ────────────────────────────────────────────────────
    def disable(self, agents: list[str], *, by: str, reason: str = "") -> None:
        """Disable ``agents``: their tokens are revoked and no new ones are issued."""
        with self._lock:
            table = self._table()
            for agent in agents:
                self._disabled[agent] = {"by": by, "reason": reason, "at": time.time()}
                for d in [d for d, v in table.items() if v.get("agent") == agent]:
                    del table[d]
            self._save()

    def is_disabled(self, agent: str, *, fresh: bool = True) -> bool:
        """Whether ``agent`` is disabled (``fresh=False``: as last read, no file check)."""
        with self._lock:
            if fresh or self._tokens is None:
                self._table()
            return agent in self._disabled

    def disabled(self) -> dict[str, dict]:
        with self._lock:
            self._table()
            return dict(self._disabled)


_SHARED: dict[str, TokenStore] = {}
_SHARED_LOCK = threading.Lock()


def shared(home: str | os.PathLike) -> TokenStore:
    """The kernel's store for state directory ``home`` (one per directory per process)."""
    raw = os.fspath(home)
    store = _SHARED.get(raw)                  # the hot path (every syscall): no path resolution
    if store is not None:
        return store
    key = os.path.realpath(raw)
    with _SHARED_LOCK:
        store = _SHARED.get(key)
        if store is None:
            store = _SHARED[key] = TokenStore(Path(key))
        _SHARED[raw] = store
        return store
