"""Consent: who may run a risky tool step, and whose yes counts.

Map:
- ``check(kernel, call, tool, risk, confirmed)``: the last question ``specs`` asks of a
  tool call, after its paths and network checks:
    1. a tool mounted from an MCP server that takes no path argument reaches what no
       root describes: the agent needs an explicit ``mcp.<tool>`` (or ``mcp.*``) grant;
    2. a destructive, exec or network step needs the ``may.risky`` capability, even
       with the person's yes (a read-only helper never runs code, whoever clicks yes);
    3. it runs only with ``confirmed``, and ``confirmed`` counts only when the call is
       made on behalf of the person (``Call.person``): an agent's own syscall cannot
       approve itself.
- ``mounted(kernel, tool)``: the MCP server a tool was mounted from, or None.

NOTE. Confirmation is a fact about who is asking, not an argument: the API sets
``person`` only for the admin token; agents' tokens never are the person. The
daemon's runner is the person only after the person's yes (the runs API takes the
yes from the admin token alone).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmos.errors import NeedsConfirmation
from llmos.kernel.syscall import MCP_CAP_GROUP
from llmos.types import Risk

if TYPE_CHECKING:
    from llmos.kernel.syscall import Call

__all__ = ["check", "mounted", "RISKY"]

RISKY = "may.risky"     # capability: may run destructive, exec and network steps


def mounted(kernel: Any, tool: Any) -> str | None:
    """The configured MCP server ``tool`` comes from (``<server>.<tool>`` names), or None."""
    servers = {getattr(m, "name", None) for m in getattr(getattr(kernel, "config", None), "mcp", ()) or ()}
    prefix = str(getattr(tool, "name", "")).split(".", 1)[0]
    return prefix if prefix in servers else None


def check(kernel: Any, call: Call, tool: Any, risk: Risk, confirmed: bool) -> None:
    """Refuse the call unless the agent may run it and, when risky, the person said yes."""
    name = tool.name
    if mounted(kernel, tool) is not None and not tool.path_args:
        call.require(f"{MCP_CAP_GROUP}.{name}",
                     why=f"{name} is mounted from an MCP server and takes no path the roots could check")
    if not risk.needs_confirmation:
        return
    call.require(RISKY, why=f"{name} is a {risk.name.lower()} step")
    if not confirmed:
        raise NeedsConfirmation(
            f"{name} is a {risk.name.lower()} step; it needs the person's yes",
            reason=f"risk {risk.name.lower()} needs confirmation",
            hint="the person approves it: `llmos run --yes`, `llmos confirm`, or the dashboard")
    if not call.person:
        raise NeedsConfirmation(
            f"{name} is a {risk.name.lower()} step: confirmed=true counts only when the person "
            f"makes the call, not agent {call.agent.id!r}",
            reason="an agent cannot approve its own risky step",
            hint="submit it as a run; the person approves the pending step with `llmos confirm` "
                 "or in the dashboard")
