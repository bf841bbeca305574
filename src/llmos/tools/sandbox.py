"""The sandbox the python and shell tools run in: bubblewrap, rlimits, a wall-clock timeout.

Map:
- ``SandboxLimits``: CPU s, address space, processes, file size, open files, /tmp size,
  wall-clock timeout, output kept (defaults from ``params``); and what the allocator
  granted: ``cores`` (CPU affinity), ``gpus`` (``CUDA_VISIBLE_DEVICES``).
- ``SandboxResult``: exit code, stdout/stderr (cut at the output limit), which limit
  stopped the run and a one-line reason, wall-clock seconds.
- ``Sandbox``: ``check()`` (probe once; SandboxError with a hint when no sandbox can be
  made), ``run(argv, workdir=, network=, limits=, inputs=, read_roots=, write_roots=,
  hide=, stop=)``, ``python_argv()``, ``info()``. ``default_sandbox()`` is the shared
  instance the exec tools use.
- ``memory_limit_how()``: how a run's memory limit is enforced here (a cgroup v2
  ``memory.max`` where one can be made, else ``RLIMIT_AS``).

NOTE: how a run is confined (``Sandbox.argv``)::

    bwrap --unshare-all [--share-net] --unshare-user --uid 65534 --gid 65534
          --disable-userns --die-with-parent --new-session --hostname sandbox
          --ro-bind /usr /usr   (/bin /lib /lib64 /sbin: links or read-only binds as on the host)
          --ro-bind /etc/{ld.so.cache,ld.so.conf,ld.so.conf.d,alternatives,localtime,fonts}
                    (+ resolv.conf, hosts, nsswitch.conf, ssl, ca-certificates with network)
          --proc /proc --dev /dev --size S --tmpfs /dev/shm --remount-ro /dev
          --size T --tmpfs /tmp   --ro-bind <python prefix, venv> (read-only)
          --ro-bind <read root> ...  --bind <write root> ...  --bind <workspace> <workspace>
                    (mounts sorted parents first; ``/`` as a root is never mounted)
          --tmpfs <hidden dir> --remount-ro <hidden dir>   (the state directory, when a root
                    holds it; a hidden file gets /dev/null)
          --chdir <workspace> --clearenv --setenv ... --remount-ro /
          --seccomp FD   (tools/seccomp.py: ptrace, mount, kexec, bpf, keyrings, unshare, ...
                    answer EPERM)
          -- <python> -I -S -c <launcher> <limits> -- <command...>

Nothing else of the host is visible: no home directory (unless a root lies there), no
/etc/shadow, no /run, no host /tmp, never the kernel's state directory. The sandbox uid is 65534 with no capabilities. The launcher sets
RLIMIT_CPU/AS/FSIZE/NPROC/NOFILE/CORE *inside* the new user namespace, where the process
count covers this sandbox only, pins itself to the granted CPUs (``sched_setaffinity``;
inherited by everything it starts), then execs the command. Where a cgroup v2 with the
memory controller is writable, each run also gets its own cgroup with ``memory.max`` =
the memory limit (which counts what the run really uses, across its processes);
RLIMIT_AS stays as well. ``CUDA_VISIBLE_DEVICES`` is set to the granted GPUs. The kernel exempts real uid 0
from RLIMIT_NPROC, so when LLM OS runs as root each run also gets its own pids cgroup
(v1 ``/sys/fs/cgroup/pids`` or a v2 hierarchy with the pids controller); as root with
no such cgroup the sandbox refuses. The wall-clock timeout, and a ``Stop``
(``proc.kill``), kill bwrap's process group; ``--die-with-parent`` and the PID namespace
take every process in the sandbox with it.
"""

from __future__ import annotations

import contextlib
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from llmos import params
from llmos.errors import SandboxError
from llmos.tools import seccomp

if TYPE_CHECKING:
    from llmos.tools.registry import Stop

__all__ = ["SandboxLimits", "SandboxResult", "Sandbox", "default_sandbox", "SANDBOX_UID"]

SANDBOX_UID = 65534                 # uid/gid inside the sandbox ("nobody")
INPUTS_DIR = "/run/sandbox"         # where run(inputs=...) files appear, read-only
OUTPUT_KILL_FACTOR = 16             # a run writing more than this x output_bytes is stopped
PROBE_TIMEOUT_S = 10.0
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "fonts", "mime.types")
_ETC_NET = ("resolv.conf", "hosts", "nsswitch.conf", "gai.conf", "host.conf", "ssl", "ca-certificates",
            "ca-certificates.conf")
_MEMORY_MARKS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")
_FORK_MARKS = ("Cannot fork", "fork: retry", "can't fork", "fork: Resource temporarily unavailable")
_NPROC_MARKS = ("Resource temporarily unavailable", *_FORK_MARKS)

_LAUNCHER = r"""
import os, resource as r, sys
a = sys.argv
cpu, mem, fsize, nproc, nofile = (int(v) for v in a[1:6])
def lim(k, soft, hard):
    cur = r.getrlimit(k)[1]
    if cur != r.RLIM_INFINITY:
        soft, hard = min(soft, cur), min(hard, cur)
    try:
        r.setrlimit(k, (soft, hard))
    except (ValueError, OSError) as e:
        sys.stderr.write("sandbox: cannot set a limit: %s\n" % e); os._exit(125)
lim(r.RLIMIT_CPU, cpu, cpu + 1); lim(r.RLIMIT_AS, mem, mem); lim(r.RLIMIT_FSIZE, fsize, fsize)
lim(r.RLIMIT_NPROC, nproc, nproc); lim(r.RLIMIT_NOFILE, nofile, nofile); lim(r.RLIMIT_CORE, 0, 0)
if a[6] != "-":
    try:
        os.sched_setaffinity(0, {int(c) for c in a[6].split(",")})
    except (ValueError, OSError) as e:
        sys.stderr.write("sandbox: cannot pin to CPUs %s: %s\n" % (a[6], e)); os._exit(125)
try:
    os.execvp(a[8], a[8:])
except OSError as e:
    sys.stderr.write("sandbox: cannot run %s: %s\n" % (a[8], e.strerror)); os._exit(127)
"""


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = params.SANDBOX_TIMEOUT_S        # wall clock, whole run
    cpu_s: int = params.SANDBOX_CPU_S                  # CPU seconds per process (RLIMIT_CPU)
    memory_bytes: int = params.SANDBOX_MEMORY_BYTES    # address space per process (RLIMIT_AS)
    nproc: int = params.SANDBOX_NPROC                  # processes and threads in the sandbox
    fsize_bytes: int = params.SANDBOX_FSIZE_BYTES      # largest file it may write (RLIMIT_FSIZE)
    output_bytes: int = params.SANDBOX_OUTPUT_BYTES    # stdout and stderr kept, each
    nofile: int = 256                                  # open files per process
    tmp_bytes: int = 64 << 20                          # size of the private /tmp (tmpfs, in RAM)
    shm_bytes: int = 16 << 20                          # size of /dev/shm (tmpfs, in RAM)
    cores: tuple[int, ...] | None = None               # CPU ids the run may use (affinity); None: any
    gpus: tuple[str, ...] | None = None                # CUDA_VISIBLE_DEVICES; (): none; None: unset

    def scaled(self, timeout_s: float) -> SandboxLimits:
        """These limits with another timeout; the CPU limit keeps its share of it."""
        cpu = max(1, math.ceil(self.cpu_s * timeout_s / self.timeout_s))
        return replace(self, timeout_s=float(timeout_s), cpu_s=cpu)


@dataclass
class SandboxResult:
    exit_code: int                    # the command's exit status; -N when killed by signal N
    stdout: str                       # first output_bytes of stdout (UTF-8, bad bytes replaced)
    stderr: str
    truncated: bool = False           # some output was dropped
    limit: str | None = None          # what stopped it: timeout, cpu, memory, nproc, fsize, output
    reason: str | None = None         # one line for the person, when a limit stopped it
    duration_s: float = 0.0           # wall clock

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.limit is None

    def to_dict(self) -> dict:
        return {"exit_code": self.exit_code, "stdout": self.stdout, "stderr": self.stderr,
                "truncated": self.truncated, "limit": self.limit, "reason": self.reason,
                "duration_s": round(self.duration_s, 3)}


class _MemoryCgroup:
    """A cgroup v2 with ``memory.max`` for one run (where a writable one with the memory
    controller exists: as root on a v2 host, or a delegated subtree)."""

    def __init__(self, base: str, limit: int) -> None:
        self.path = Path(base) / f"llmos-mem-{os.getpid()}-{uuid.uuid4().hex[:10]}"
        self.path.mkdir()
        try:
            (self.path / "memory.max").write_text(f"{limit}\n")
            with contextlib.suppress(OSError):
                (self.path / "memory.swap.max").write_text("0\n")
        except OSError:
            self.path.rmdir()
            raise

    @staticmethod
    def find_base() -> str | None:
        """A v2 directory whose children get the memory controller, or None."""
        cands = ["/sys/fs/cgroup"]
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/cgroup").read_text().splitlines():
                if line.startswith("0::"):
                    own = "/sys/fs/cgroup" + line[3:].strip()
                    cands += [own, os.path.dirname(own)]
        for base in dict.fromkeys(cands):
            try:
                if "memory" not in Path(base, "cgroup.subtree_control").read_text().split():
                    continue
                _MemoryCgroup(base, 1 << 30).close()
            except OSError:
                continue
            return base
        return None

    @property
    def procs_file(self) -> str:
        return str(self.path / "cgroup.procs")

    def oom_kills(self) -> int:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in (self.path / "memory.events").read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
        return 0

    def close(self) -> None:
        _PidsCgroup.close(self)      # same teardown: kill what is left, remove the directory


_mem_base: str | None | bool = False      # False: not probed yet
_mem_lock = threading.Lock()


def memory_cgroup_base() -> str | None:
    """Where per-run memory cgroups are made (probed once); None: RLIMIT_AS only."""
    global _mem_base
    with _mem_lock:
        if _mem_base is False:
            _mem_base = _MemoryCgroup.find_base()
        return _mem_base  # type: ignore[return-value]


def memory_limit_how() -> str:
    """How a run's memory limit is enforced on this machine, in words."""
    base = memory_cgroup_base()
    return f"cgroup v2 memory.max under {base} (and RLIMIT_AS)" if base else \
        "RLIMIT_AS (no writable cgroup v2 with the memory controller here)"


class _PidsCgroup:
    """A pids cgroup for one run: as root the kernel ignores RLIMIT_NPROC, this does not."""

    BASES = ("/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified", "/sys/fs/cgroup")

    def __init__(self, base: str, limit: int) -> None:
        self.path = Path(base) / f"llmos-sandbox-{os.getpid()}-{uuid.uuid4().hex[:10]}"
        self.path.mkdir()
        try:
            (self.path / "pids.max").write_text(f"{limit}\n")
        except OSError:
            self.path.rmdir()
            raise

    @classmethod
    def find_base(cls) -> str | None:
        for base in cls.BASES:
            try:
                cg = cls(base, 1)
            except OSError:
                continue
            cg.close()
            return base
        return None

    @property
    def procs_file(self) -> str:
        return str(self.path / "cgroup.procs")

    def hits(self) -> int:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in (self.path / "pids.events").read_text().splitlines():
                if line.startswith("max "):
                    return int(line.split()[1])
        return 0

    def close(self) -> None:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                pids = [int(p) for p in Path(self.procs_file).read_text().split()]
            except OSError:
                return
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.02)


@dataclass
class Sandbox:
    """Runs commands confined by bubblewrap. ``python`` is the interpreter inside (default:
    the one running LLM OS, with its venv); ``bwrap`` the bubblewrap binary (default: PATH)."""

    limits: SandboxLimits = field(default_factory=SandboxLimits)
    python: str | None = None          # interpreter used inside; None: sys.executable
    bwrap: str | None = None           # None: found on PATH
    extra_ro: tuple[str, ...] = ()     # more host paths to show read-only
    _checked: SandboxError | bool = field(default=False, init=False, repr=False)  # probe result, cached
    _cgroup_base: str | None = field(default=None, init=False, repr=False)       # root only
    _features: str = field(default="", init=False, repr=False)                   # bwrap --help text
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    # ── probing ──────────────────────────────────────────────────────────────
    def check(self) -> None:
        """Raise SandboxError (with a hint) unless a sandbox can be made here. Cached."""
        with self._lock:
            if self._checked is False:
                try:
                    self._probe()
                    self._checked = True
                except SandboxError as exc:
                    self._checked = exc
        if isinstance(self._checked, SandboxError):
            raise self._checked

    def _probe(self) -> None:
        exe = self.bwrap or shutil.which("bwrap")
        if not exe or not os.access(exe, os.X_OK):
            raise SandboxError("bubblewrap (bwrap) is not installed, so code cannot run in a sandbox",
                               hint="install it: sudo apt-get install bubblewrap (make does it as root)")
        self.bwrap = exe
        try:
            self._features = subprocess.run([exe, "--help"], capture_output=True, text=True,
                                            timeout=PROBE_TIMEOUT_S).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise SandboxError(f"bubblewrap does not start: {exc}") from exc
        if os.geteuid() == 0:
            self._cgroup_base = _PidsCgroup.find_base()
            if self._cgroup_base is None:
                raise SandboxError(
                    "running as root, where the kernel ignores the sandbox's process limit, "
                    "and no pids cgroup could be made",
                    hint="run LLM OS as a normal user, or give it a writable pids cgroup "
                         "(/sys/fs/cgroup/pids or cgroup v2 with the pids controller)")
        with tempfile.TemporaryDirectory(prefix="llmos-probe-") as d:
            res = self._run(self.python_argv() + ["-I", "-S", "-c", "pass"], Path(d), False,
                            replace(self.limits, timeout_s=PROBE_TIMEOUT_S), None)
        if res.exit_code != 0:
            why = (res.stderr.strip().splitlines() or [res.reason or f"exit {res.exit_code}"])[-1]
            raise SandboxError(f"bubblewrap cannot make a sandbox here: {why}",
                               hint="user namespaces may be off: check sysctl user.max_user_namespaces "
                                    "and kernel.unprivileged_userns_clone (or the AppArmor rule for bwrap)")

    def info(self) -> dict:
        """How runs are confined here (for ``llmos doctor`` and the docs)."""
        self.check()
        return {"bwrap": self.bwrap, "python": self.python_argv()[0], "uid": SANDBOX_UID,
                "process_limit": f"pids cgroup under {self._cgroup_base}" if self._cgroup_base
                else "RLIMIT_NPROC in the sandbox's user namespace",
                "limits": self.limits.__dict__.copy(),
                "seccomp": ("default profile: EPERM for " + ", ".join(seccomp.DENIED_NAMES))
                if seccomp.program() else "none (no table for this architecture)",
                "argv": self.argv(["CMD"], Path("/WORKSPACE"), network=False, limits=self.limits)}

    # ── the command line ─────────────────────────────────────────────────────
    def python_argv(self) -> list[str]:
        return [self.python or sys.executable]

    def _python_ro(self) -> list[str]:
        """Host trees the interpreter needs (outside /usr): its prefix and its venv."""
        exe = self.python or sys.executable
        paths = {os.path.realpath(os.path.dirname(os.path.dirname(os.path.realpath(exe))))}
        if self.python is None:
            paths |= {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}
        else:
            paths.add(os.path.realpath(os.path.dirname(os.path.dirname(exe))))
        return sorted(p for p in paths if p not in ("/", "/usr") and not p.startswith("/usr/"))

    def argv(self, command: Sequence[str], workdir: Path, *, network: bool, limits: SandboxLimits,
             inputs_dir: str | None = None, read_roots: Sequence[str | Path] = (),
             write_roots: Sequence[str | Path] = (), hide: Sequence[str | Path] = (),
             seccomp_fd: int | None = None) -> list[str]:
        feat = self._features
        a = [self.bwrap or "bwrap", "--unshare-all"]
        if network:
            a.append("--share-net")
        a += ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
        if "--disable-userns" in feat:
            a.append("--disable-userns")
        a += ["--die-with-parent", "--new-session", "--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
        for d in _SYSTEM_DIRS:
            if os.path.islink(d):
                a += ["--symlink", os.readlink(d), d]
            elif os.path.isdir(d):
                a += ["--ro-bind", d, d]
        for name in _ETC + (_ETC_NET if network else ()):
            p = f"/etc/{name}"
            if os.path.exists(p):
                a += ["--ro-bind", os.path.realpath(p), p]
        size = ["--size"] if "--size" in feat else []
        a += ["--proc", "/proc", "--dev", "/dev"]
        a += [*size, *([str(limits.shm_bytes)] if size else []), "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
        a += [*size, *([str(limits.tmp_bytes)] if size else []), "--tmpfs", "/tmp"]
        mounts = [(p, "--ro-bind") for p in (*self._python_ro(), *self.extra_ro)]
        writable = {os.path.realpath(os.fspath(w)) for w in write_roots}
        mounts += [(r, "--ro-bind") for r in sorted({os.path.realpath(os.fspath(r)) for r in read_roots})
                   if r not in writable and os.path.isdir(r)]
        mounts += [(w, "--bind") for w in sorted(writable) if os.path.isdir(w)]
        mounts.append((str(workdir), "--bind"))
        mounts = [m for m in dict.fromkeys(mounts) if m[0] != "/"]
        # parents first, so a deeper mount (a venv inside the workspace) lands on top
        for p, how in sorted(mounts, key=lambda m: (m[0].count("/"), m[1] == "--bind")):
            a += [how, p, p]
        for h in sorted({os.path.realpath(os.fspath(h)) for h in hide}):
            if any(h == m or h.startswith(m.rstrip("/") + "/") for m, _ in mounts):
                if os.path.isdir(h):
                    a += ["--tmpfs", h, "--remount-ro", h]
                elif os.path.exists(h):
                    a += ["--ro-bind", "/dev/null", h]
        if inputs_dir:
            a += ["--ro-bind", inputs_dir, INPUTS_DIR]
        venv_bin = os.path.dirname(self.python_argv()[0])
        env = {"PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp",
               "LANG": "C.UTF-8", "USER": "sandbox", "LOGNAME": "sandbox", "PYTHONUNBUFFERED": "1",
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(workdir),   # workspace modules import
               "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp/matplotlib",
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        if limits.gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(limits.gpus)
        a += ["--chdir", str(workdir), "--clearenv"]
        for k, v in env.items():
            a += ["--setenv", k, v]
        a += ["--remount-ro", "/"]
        if seccomp_fd is not None:
            a += ["--seccomp", str(seccomp_fd)]
        a += ["--"]
        a += [*self.python_argv(), "-I", "-S", "-c", _LAUNCHER, str(limits.cpu_s), str(limits.memory_bytes),
              str(limits.fsize_bytes), str(limits.nproc), str(limits.nofile),
              ",".join(map(str, limits.cores)) if limits.cores else "-", "--", *command]
        return a

    # ── running ──────────────────────────────────────────────────────────────
    def run(self, command: Sequence[str], *, workdir: Path, network: bool = False,
            limits: SandboxLimits | None = None,
            inputs: Mapping[str, str | bytes] | None = None,
            read_roots: Sequence[str | Path] = (), write_roots: Sequence[str | Path] = (),
            hide: Sequence[str | Path] = (), stop: Stop | None = None) -> SandboxResult:
        """Run ``command`` confined. ``workdir`` and ``write_roots`` are bound writable,
        ``read_roots`` read-only, ``hide`` (the kernel's state) covered by an empty
        read-only mount. ``inputs`` (name -> content) appear read-only under /run/sandbox/.
        ``stop`` (``proc.kill``) kills the run at once; the call then raises Cancelled."""
        self.check()
        roots = Roots(tuple(map(str, read_roots)), tuple(map(str, write_roots)), tuple(map(str, hide)))
        return self._run(list(command), Path(workdir), network, limits or self.limits, inputs, roots, stop)

    def _run(self, command: list[str], workdir: Path, network: bool, lim: SandboxLimits,
             inputs: Mapping[str, str | bytes] | None, roots: Roots | None = None,
             stop: Stop | None = None) -> SandboxResult:
        tmp = tempfile.mkdtemp(prefix="llmos-inputs-") if inputs else None
        roots = roots or Roots()
        cg = mem = None
        filt = seccomp.program()
        sfd = _memfd(filt) if filt else None
        try:
            if tmp:
                os.chmod(tmp, 0o755)
                for name, content in (inputs or {}).items():
                    data = content.encode() if isinstance(content, str) else content
                    Path(tmp, os.path.basename(name)).write_bytes(data)
            argv = self.argv(command, workdir, network=network, limits=lim, inputs_dir=tmp,
                             read_roots=roots.read, write_roots=roots.write, hide=roots.hide,
                             seccomp_fd=sfd)
            if self._cgroup_base:
                cg = _PidsCgroup(self._cgroup_base, lim.nproc + 2)   # + bwrap's two processes
                argv = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', cg.procs_file, *argv]
            base = memory_cgroup_base()
            if base:
                mem = _MemoryCgroup(base, lim.memory_bytes)
                argv = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', mem.procs_file, *argv]
            res = self._supervise(argv, lim, cg, str(workdir), stop, () if sfd is None else (sfd,))
            if mem is not None and mem.oom_kills() and res.limit is None:
                res.limit, res.reason = "memory", f"ran out of its memory limit ({lim.memory_bytes >> 20} MiB)"
            return res
        finally:
            if sfd is not None:
                os.close(sfd)
            if mem:
                mem.close()
            if cg:
                cg.close()
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)

    def _supervise(self, argv: list[str], lim: SandboxLimits, cg: _PidsCgroup | None,
                   cwd: str, stop: Stop | None = None, pass_fds: tuple[int, ...] = ()) -> SandboxResult:
        t0 = time.monotonic()
        if stop is not None:
            stop.check("the run")
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env={"PATH": "/usr/bin:/bin"}, cwd=cwd,
                                    start_new_session=True, close_fds=True, pass_fds=pass_fds)
        except OSError as exc:
            raise SandboxError(f"cannot start bubblewrap: {exc.strerror}") from exc
        if stop is not None:
            stop.attach(proc.pid)       # proc.kill: SIGKILL to this process group, from now on
        bufs = {"out": bytearray(), "err": bytearray()}
        seen, stopped = 0, None
        sel = selectors.DefaultSelector()
        for f, name in ((proc.stdout, "out"), (proc.stderr, "err")):
            os.set_blocking(f.fileno(), False)
            sel.register(f, selectors.EVENT_READ, name)
        deadline = t0 + lim.timeout_s
        try:
            while sel.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    stopped = "timeout"
                    break
                for key, _ in sel.select(timeout=min(left, 0.5)):
                    chunk = os.read(key.fd, 1 << 16)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    seen += len(chunk)
                    buf = bufs[key.data]
                    buf += chunk[: max(0, lim.output_bytes - len(buf))]
                if seen > lim.output_bytes * OUTPUT_KILL_FACTOR:
                    stopped = "output"
                    break
        finally:
            if stopped:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
            sel.close()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
            if stop is not None:
                stop.detach(proc.pid)
        if stop is not None:
            stop.check("the run")
        rc = proc.returncode              # bwrap reports a command killed by signal N as 128 + N
        exit_code = -(rc - 128) if rc > 128 else rc
        res = SandboxResult(exit_code=exit_code, stdout=bufs["out"].decode("utf-8", "replace"),
                            stderr=bufs["err"].decode("utf-8", "replace"),
                            truncated=seen > len(bufs["out"]) + len(bufs["err"]),
                            duration_s=time.monotonic() - t0)
        _explain(res, stopped, lim, cg.hits() if cg else 0)
        return res


@dataclass(frozen=True)
class Roots:
    """The host folders one run sees besides the system and the interpreter."""

    read: tuple[str, ...] = ()       # bound read-only
    write: tuple[str, ...] = ()      # bound writable
    hide: tuple[str, ...] = ()       # covered (the kernel's state), when inside a bound root


def _memfd(data: bytes) -> int:
    """A sealed-in-practice anonymous file holding ``data``, positioned at 0 (for --seccomp)."""
    fd = os.memfd_create("llmos-seccomp", 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _explain(res: SandboxResult, stopped: str | None, lim: SandboxLimits, pid_hits: int) -> None:
    """Fill ``limit`` and ``reason`` from how the run ended."""
    sig = -res.exit_code if res.exit_code < 0 else 0
    tail = res.stderr[-4000:]
    if stopped == "timeout":
        res.limit, res.reason = "timeout", f"stopped after the {lim.timeout_s:g} s time limit"
    elif stopped == "output":
        res.limit, res.reason = "output", f"stopped: wrote more than {lim.output_bytes * OUTPUT_KILL_FACTOR} bytes"
    elif sig == signal.SIGXCPU:
        res.limit, res.reason = "cpu", f"stopped at the CPU time limit ({lim.cpu_s} s)"
    elif sig == signal.SIGXFSZ or "File too large" in tail:
        res.limit, res.reason = "fsize", f"a file passed the size limit ({lim.fsize_bytes} bytes)"
    elif res.exit_code != 0 and any(m in tail for m in _MEMORY_MARKS):
        res.limit, res.reason = "memory", f"ran out of its memory limit ({lim.memory_bytes >> 20} MiB)"
    elif pid_hits or any(m in tail for m in _FORK_MARKS) or (
            res.exit_code != 0 and any(m in tail for m in _NPROC_MARKS)):
        res.limit, res.reason = "nproc", f"hit the process limit ({lim.nproc} processes)"
    elif sig:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        res.reason = f"killed by signal {name}" + (
            " (the CPU hard limit, or the system ran out of memory)" if sig == signal.SIGKILL else "")
    if res.truncated and res.limit is None:
        res.reason = (res.reason + "; " if res.reason else "") + f"output cut at {lim.output_bytes} bytes"


_default: Sandbox | None = None
_default_lock = threading.Lock()


def default_sandbox() -> Sandbox:
    """The process-wide sandbox (probed once, on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Sandbox()
        return _default
