"""The agent registry: who may call the kernel, with which capabilities (journaled).

Map:
- ``AgentRegistry.load()``: read agents from the journal (root is built in, never stored).
- ``create(name, caps, creator)``: a new agent whose capabilities must lie within the
  creator's (checked by the caller through ``access.may(..., CapsRef)``). Its tokens
  live in the one token store (``kernel.tokens``), not here.
- ``get`` / ``find`` / ``list`` / ``descendants(agent)`` / ``ancestors(agent)`` (the
  creator tree: quotas are shared down it, ``agent.disable`` follows it).
- ``take_legacy_tokens()``: token digests older journals kept per agent, handed over
  once to the token store (and cleared here) so they can be listed and revoked.

Capabilities are immutable once created: there is no update path, so nothing an
agent reads (model output, tool output) can widen what it may do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from llmos.errors import InvalidArgument, NotFound
from llmos.kernel.access import ROOT, ROOT_ID, Agent, Capabilities

if TYPE_CHECKING:
    from llmos.kernel.storage import Journal

__all__ = ["AgentRegistry", "NAME_RE"]

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class AgentRegistry:
    def __init__(self, journal: Journal, clock_time: Callable[[], float]) -> None:
        self._journal = journal
        self._now = clock_time
        self._agents: dict[str, Agent] = {ROOT_ID: ROOT}     # id -> agent; create() only
        self._tokens: dict[str, str] = {}                    # legacy token sha256 -> agent id
        self._children: dict[str, list[str]] = {}            # creator id -> agents it made

    def load(self) -> None:
        for aid, caps, created, creator, token_hash in self._journal.query(
                "SELECT id, caps, created_s, creator, token_hash FROM agents"):
            self._agents[aid] = Agent(aid, Capabilities.from_dict(json.loads(caps)), created, creator)
            if creator:
                self._children.setdefault(creator, []).append(aid)
            if token_hash:
                self._tokens[token_hash] = aid

    def get(self, agent_id: str) -> Agent:
        agent = self._agents.get(agent_id) if isinstance(agent_id, str) else None
        if agent is None:
            raise NotFound(f"no agent named {agent_id!r}", hint="run `llmos agents` to list them")
        return agent

    def find(self, agent_id: object) -> Agent | None:
        return self._agents.get(agent_id) if isinstance(agent_id, str) else None

    def list(self) -> list[Agent]:
        return sorted(self._agents.values(), key=lambda a: (a.id != ROOT_ID, a.id))

    def descendants(self, agent_id: str) -> list[str]:
        """``agent_id`` and every agent it created, directly or not."""
        out, todo = [agent_id], [agent_id]
        while todo:
            for child in self._children.get(todo.pop(), ()):
                if child not in out:
                    out.append(child)
                    todo.append(child)
        return out

    def ancestors(self, agent_id: str) -> list[str]:
        """The creators above ``agent_id``, nearest first, root left out."""
        out: list[str] = []
        ag = self._agents.get(agent_id)
        while ag is not None and ag.creator and ag.creator != ROOT_ID and ag.creator not in out:
            out.append(ag.creator)
            ag = self._agents.get(ag.creator)
        return out

    def has_children(self, agent_id: str) -> bool:
        return bool(self._children.get(agent_id))

    def take_legacy_tokens(self) -> list[tuple[str, str]]:
        """``(sha256, agent)`` of tokens journaled by older versions; cleared from the journal."""
        rows = list(self._tokens.items())
        if rows:
            self._journal.write("UPDATE agents SET token_hash = NULL WHERE token_hash IS NOT NULL")
            self._tokens.clear()
        return rows

    def create(self, name: str, caps: Capabilities, creator: str) -> Agent:
        """Journal a new agent. The caller awaits durability and issues its token."""
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidArgument(f"name: expected lowercase letters, digits, '-' or '_' "
                                  f"(starting with a letter, at most 63), got {name!r}",
                                  field="name", expected="[a-z][a-z0-9_-]{0,62}")
        if name in self._agents:
            raise InvalidArgument(f"name: agent {name!r} already exists", field="name",
                                  expected="a new agent name")
        agent = Agent(name, caps, self._now(), creator)
        self._journal.write("INSERT INTO agents(id, caps, created_s, creator, token_hash) "
                            "VALUES (?,?,?,?,NULL)",
                            (name, json.dumps(caps.to_dict()), agent.created_s, creator))
        self._agents[name] = agent
        self._children.setdefault(creator, []).append(name)
        return agent
