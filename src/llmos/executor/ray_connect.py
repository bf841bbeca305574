"""Joining a Ray cluster as a driver, or starting a local head, and leaving it.

Map:
- ``connect(value, num_cpus=)``: ``--ray auto`` joins the cluster ``RAY_ADDRESS`` names,
  else the one ``ray start`` left on this machine if it answers, else starts a local head
  in this process; ``--ray HOST:PORT`` joins that cluster. Returns a ``RayConnection``.
  A cluster that does not answer is a ``ConfigError`` of one line (checked with a
  plain TCP connect first, so a wrong address fails in seconds, not after Ray's minute);
  one that answers but refuses us (token authentication without ``RAY_AUTH_MODE=token``,
  which Ray never turns on by itself for an explicit address) fails in about 20 s.
- ``RayConnection``: the address, whether this process started the head, the PIDs of
  the head's processes, the ``ClusterView``; ``close()`` leaves the cluster and, for a
  head started here, stops its processes and the workers they started by their PIDs
  (never by name).
- ``ray_installed()``: whether the ``ray`` extra is installed (nothing imports Ray before).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from llmos.errors import ConfigError
from llmos.executor.ray_request import parse_address
from llmos.hal.cluster import ClusterView, ray_reader

__all__ = ["RayConnection", "connect", "ray_installed", "probe", "LOCAL_OBJECT_STORE_BYTES",
           "PROBE_TIMEOUT_S"]

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0                      # s to wait for the cluster's GCS port to accept
LOCAL_OBJECT_STORE_BYTES = 256 << 20       # a local head's object store: tool results are small
CURRENT_CLUSTER = Path("/tmp/ray/ray_current_cluster")   # where `ray start --head` notes its address
INSTALL_HINT = "install the extra: pip install 'llmos[ray]' (or serve without --ray)"


def ray_installed() -> bool:
    return importlib.util.find_spec("ray") is not None


def probe(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when ``HOST:PORT`` accepts a TCP connection within ``timeout_s``, else why not."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return None
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except OSError as e:
        return e.strerror or type(e).__name__


@dataclass
class RayConnection:
    """This process as a driver of one Ray cluster. Owner: whoever called ``connect``."""

    address: str                               # the cluster's GCS address HOST:PORT
    started_head: bool                         # True: this process started the head (close stops it)
    pids: tuple[int, ...] = ()                 # the started head's processes (gcs, raylet, ...)
    view: ClusterView = field(default=None)    # type: ignore[assignment]
    owner: bool = True                         # this connect() called ray.init (close leaves)
    closed: bool = False

    def close(self) -> None:
        """Leave the cluster; a head started here is stopped, by its processes' PIDs."""
        if self.closed or not self.owner:
            return
        self.closed = True
        import ray

        workers = _descendants(self.pids) if self.started_head else ()
        with contextlib.suppress(Exception):
            ray.shutdown()                     # stops the processes it started, by their handles
        if not self.started_head:
            return
        deadline = time.monotonic() + 5.0
        left = [p for p in (*self.pids, *workers) if _alive(p)]   # the head, then its workers
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = [p for p in left if _alive(p)]
        for pid in left:                       # what ray.shutdown left behind: by PID
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            log.warning("ray: killed process %d (the head's or a worker) that outlived shutdown", pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:       # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _descendants(pids: tuple[int, ...]) -> tuple[int, ...]:
    """The PIDs the head's processes started (Ray's workers and agents), taken before shutdown:
    they outlive their raylet by up to a minute when nobody stops them."""
    import psutil

    out: list[int] = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            out += [c.pid for c in psutil.Process(pid).children(recursive=True)]
    return tuple(p for p in dict.fromkeys(out) if p not in pids)


def _head_pids() -> tuple[int, ...]:
    """PIDs of the processes a local ``ray.init`` started (its node's process table)."""
    try:
        from ray._private import worker

        node = worker._global_node
        procs = node.all_processes if node is not None else {}
        return tuple(info.process.pid for infos in procs.values() for info in infos
                     if getattr(info, "process", None) is not None)
    except Exception:          # private API moved: close() still calls ray.shutdown()
        return ()


def _current_cluster() -> str | None:
    """The address `ray start --head` noted on this machine, when it still answers."""
    try:
        addr = CURRENT_CLUSTER.read_text().strip()
    except OSError:
        return None
    return addr if addr and probe(addr, 1.0) is None else None


def connect(value: str, *, num_cpus: int | None = None, num_gpus: int | None = None) -> RayConnection:
    """Join the cluster ``value`` names (see the module map). ConfigError of one line when
    Ray is missing or the cluster does not answer."""
    wanted = parse_address(value)
    if wanted is None:
        raise ConfigError("--ray: expected auto or HOST:PORT", hint="e.g. llmos serve --ray auto")
    address = (os.environ.get("RAY_ADDRESS") or None) if wanted == "auto" else wanted
    if address is not None:            # a wrong address fails here, in seconds, before Ray loads
        parse_address(address)
        why = probe(address)
        if why is not None:
            raise ConfigError(f"--ray {address}: no Ray cluster answers there ({why})",
                              hint="check the address (the head's GCS port, 6379 by default), "
                                   "or use --ray auto to start a local head")
    if not ray_installed():
        raise ConfigError("--ray: Ray is not installed", hint=INSTALL_HINT)
    import ray

    if ray.is_initialized():                   # this process already drives a cluster
        addr = getattr(ray.get_runtime_context(), "gcs_address", "") or wanted
        return RayConnection(addr, False, view=ClusterView(ray_reader(), address=addr), owner=False)
    if wanted == "auto" and address is None:
        address = _current_cluster()
    kw = {"include_dashboard": False, "log_to_driver": False, "configure_logging": True,
          "logging_level": logging.WARNING, "namespace": "llmos"}
    if address is not None:
        try:
            ray.init(address=address, **kw)
        except Exception as e:          # ConnectionError, RuntimeError (version mismatch) ...
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            auth = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
            raise ConfigError(f"--ray {address}: could not join the cluster: {first[:200]}",
                              hint="is it a Ray head of the same Ray and Python version?" if auth else
                              "a cluster with token authentication (Ray's default) needs RAY_AUTH_MODE=token "
                              "and its token in ~/.ray/auth_token or RAY_AUTH_TOKEN; else check that it "
                              "runs the same Ray and Python version") from None
        return RayConnection(address, False, view=ClusterView(ray_reader(), address=address))
    try:
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, object_store_memory=LOCAL_OBJECT_STORE_BYTES, **kw)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"--ray auto: could not start a local Ray head: {first[:200]}",
                          hint="see /tmp/ray/session_latest/logs") from None
    addr = getattr(ray.get_runtime_context(), "gcs_address", "") or "local"
    conn = RayConnection(addr, True, pids=_head_pids(), view=ClusterView(ray_reader(), address=addr))
    log.info("ray: started a local head at %s (%d processes)", addr, len(conn.pids))
    return conn
