"""Who is calling: per-agent bearer tokens, the admin token, and the loopback rule.

Map:
- ``TokenStore`` (``kernel.tokens``, re-exported): the one store of every token of the
  state directory. ``admin.token`` (mode 0600) is created on first start and read by
  local tools (CLI, SDK ``discover``); agent tokens, whether ``agent.create`` or the
  API made them, are SHA-256 digests in ``tokens.json`` (mode 0600), listed, revoked,
  and refused for a disabled agent. ``resolve(token)`` maps a token to a ``Principal``.
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

import ipaddress

from llmos.kernel.tokens import (
    ADMIN_AGENT,
    ADMIN_TOKEN_FILE,
    SCOPES,
    TOKENS_FILE,
    AuthError,
    Principal,
    TokenStore,
)

__all__ = ["Principal", "TokenStore", "AuthError", "is_loopback", "host_allowed", "ADMIN_AGENT",
           "ADMIN_TOKEN_FILE", "TOKENS_FILE", "SCOPES", "LOOPBACK_NAMES"]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


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
