"""Who is calling: per-agent bearer tokens, the admin token, and the loopback rule.

Map:
- ``TokenStore``: tokens live in the state directory. ``admin.token`` (mode 0600) is
  created on first start and read by local tools (CLI, SDK ``discover``); agent tokens
  are kept as SHA-256 digests in ``tokens.json`` (mode 0600), so the file never holds
  a usable secret. ``issue(agent)`` returns a fresh token once; ``resolve(token)``
  maps a presented token to a ``Principal``.
- ``Principal``: the agent a request acts for; ``admin`` marks the admin token, which
  acts as the kernel's root agent; ``scope`` is ``all``, or ``metrics`` for a token that
  opens ``/metrics`` and nothing else (for a Prometheus scraper).
- ``is_loopback(host)``: the daemon answers only loopback peers unless it was started
  with remote access allowed (``Guard`` middleware).
- ``host_allowed(host_header, allowed, allow_remote)``: the Host header names this
  machine (``localhost``, a loopback address) or a name of the allow-list; anything
  else is a page on another site reaching the daemon through DNS rebinding.

Routes decode and forward: a principal only names the agent; what the agent may do is
decided by the kernel's capability check, never here.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from llmos.errors import LLMOSError, NotFound, map_foreign

__all__ = ["Principal", "TokenStore", "AuthError", "is_loopback", "host_allowed", "ADMIN_AGENT",
           "ADMIN_TOKEN_FILE", "TOKENS_FILE", "SCOPES", "LOOPBACK_NAMES"]

ADMIN_AGENT = "root"              # the kernel's built-in agent that the admin token acts as
ADMIN_TOKEN_FILE = "admin.token"
TOKENS_FILE = "tokens.json"
_TOKEN_PREFIX = "llmos-"          # makes a leaked token easy to recognise in logs and scanners
SCOPES = ("all", "metrics")       # what a token opens: everything its agent may do, or /metrics only
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class AuthError(LLMOSError):
    """Missing or unknown bearer token (HTTP 401)."""

    code = "unauthorized"


@dataclass(frozen=True)
class Principal:
    agent: str          # kernel agent id the request acts for
    admin: bool = False  # presented the admin token
    scope: str = "all"   # "metrics": the token opens /metrics only


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600 from the first byte."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
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
        self._lock = threading.Lock()
        self._admin: str | None = None                 # the admin token; read once
        self._agents: dict[str, dict] | None = None    # digest -> {agent, label, created}

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
            token = _TOKEN_PREFIX + "admin-" + secrets.token_urlsafe(32)
            _write_private(path, token + "\n")
            return token
        except OSError as e:
            raise map_foreign(e, context="admin token") from e

    # ── agent tokens ───────────────────────────────────────────────────────
    @property
    def tokens_path(self) -> Path:
        return self.home / TOKENS_FILE

    def _table(self) -> dict[str, dict]:
        if self._agents is None:
            try:
                data = json.loads(self.tokens_path.read_text()) if self.tokens_path.exists() else {}
            except (OSError, ValueError) as e:
                raise map_foreign(e, context=f"token file {self.tokens_path}") from e
            self._agents = {k: v for k, v in data.items() if isinstance(v, dict) and "agent" in v}
        return self._agents

    def _save(self) -> None:
        try:
            _write_private(self.tokens_path, json.dumps(self._agents, indent=1, sort_keys=True))
        except OSError as e:
            raise map_foreign(e, context="token file") from e

    def issue(self, agent: str, label: str = "", *, scope: str = "all") -> tuple[str, str]:
        """Create a token for ``agent``; return ``(token, token_id)``. The token is shown once."""
        if scope not in SCOPES:
            raise LLMOSError(f"scope: expected one of {', '.join(SCOPES)}, got {scope!r}")
        token = _TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = _digest(token)
        with self._lock:
            table = self._table()
            table[digest] = {"agent": agent, "label": label, "created": time.time(), "scope": scope}
            self._save()
        return token, digest[:16]

    def list(self, agent: str | None = None) -> list[dict]:
        """Token ids (never the tokens) with their agent, label and creation time."""
        with self._lock:
            rows = [{"id": d[:16], **v} for d, v in self._table().items()]
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
        raise NotFound(f"no token with id {token_id!r}", hint="list them with GET /api/v1/agents/{agent}/tokens")

    def resolve(self, token: str | None) -> Principal:
        """The principal for a presented token, or AuthError."""
        if not token:
            raise AuthError("missing bearer token",
                            hint="send 'Authorization: Bearer <token>'; the admin token is in "
                                 f"{self.admin_path}")
        if hmac.compare_digest(token.encode("utf-8", "surrogatepass"),
                               self.admin_token().encode()):
            return Principal(ADMIN_AGENT, admin=True)
        with self._lock:
            row = self._table().get(_digest(token))
        if row is None:
            raise AuthError("unknown or revoked token",
                            hint="create one with POST /api/v1/agents/{agent}/tokens")
        return Principal(str(row["agent"]), scope=str(row.get("scope", "all")))


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1, and in-process test transports."""
    if host in (None, "", "testclient", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The name in a Host header, without port or IPv6 brackets, lowercased."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h[1:]
    if h.count(":") == 1:
        h = h.split(":", 1)[0]
    return h.rstrip(".")


def host_allowed(header: str | None, allowed: tuple[str, ...] | frozenset[str] = (), *,
                 allow_remote: bool = False) -> bool:
    """True when the Host header names this machine: a loopback name or address, a name
    of ``allowed``, or (with remote access allowed) any IP address literal."""
    if not header:
        return False
    name = _host_name(header)
    if name in LOOPBACK_NAMES or name.endswith(".localhost") or name in {a.lower() for a in allowed}:
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    return ip.is_loopback or allow_remote
