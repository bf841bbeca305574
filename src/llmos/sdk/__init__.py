"""Python SDK: talk to a running LLM OS daemon over HTTP.

- ``Client`` / ``AsyncClient``: runs, processes, syscalls, agents, events, OpenAI endpoint.
- ``discover(config)``: a Client for the live daemon of a state directory, or None.
- ``DaemonError``: an HTTP error without a class in ``llmos.errors``.
"""

from llmos.sdk.client import AsyncClient, Client
from llmos.sdk.discover import async_discover, daemon_info, discover
from llmos.sdk.errors import DaemonError

__all__ = ["Client", "AsyncClient", "discover", "async_discover", "daemon_info", "DaemonError"]
