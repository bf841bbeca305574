"""The sandbox's default seccomp profile, as a classic BPF program for ``bwrap --seccomp FD``.

Map:
- ``DENIED``: the syscalls refused with EPERM (data, one table per architecture: the
  numbers differ). Kernel-wide or escape-prone calls a tool program never needs:
  ptrace, mount and the new mount API, kexec, bpf, keyrings, perf_event_open, unshare,
  setns, module loading, reboot, swap, clock setting, handle-based opens, process_vm_*.
- ``clone`` with a namespace flag (CLONE_NEWUSER, CLONE_NEWNS, ...) is refused with
  EPERM; ``clone3`` answers ENOSYS (its flags sit behind a pointer seccomp cannot read),
  so libc falls back to ``clone``, which is checked.
- ``program(arch=None) -> bytes``: the filter (``struct sock_filter[]``) for this machine,
  or None on an architecture without a table (the sandbox then runs without one and
  says so in ``Sandbox.info``).

NOTE: the program checks ``seccomp_data.arch`` first: a call made through another ABI
(x32 on x86_64, or a foreign arch) is refused (ENOSYS), so the number table cannot be
sidestepped. Every other syscall is allowed; the sandbox's namespaces, uid and rlimits
do the rest.
"""

from __future__ import annotations

import errno
import platform
import struct

__all__ = ["DENIED", "program", "DENIED_NAMES"]

# seccomp and BPF constants (linux/seccomp.h, linux/filter.h, linux/audit.h)
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
LD_W_ABS = 0x20            # BPF_LD | BPF_W | BPF_ABS
JEQ_K = 0x15               # BPF_JMP | BPF_JEQ | BPF_K
JGE_K = 0x35               # BPF_JMP | BPF_JGE | BPF_K
JSET_K = 0x45              # BPF_JMP | BPF_JSET | BPF_K
RET_K = 0x06               # BPF_RET | BPF_K
OFF_NR, OFF_ARCH, OFF_ARG0 = 0, 4, 16     # offsets in struct seccomp_data (arg0: low 32 bits, LE)
X32_BIT = 0x40000000
CLONE_NS_FLAGS = 0x7E020000   # NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET

DENIED_NAMES = ("ptrace", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount",
                "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "kexec_load",
                "kexec_file_load", "bpf", "keyctl", "add_key", "request_key", "perf_event_open",
                "unshare", "setns", "init_module", "finit_module", "delete_module", "reboot",
                "swapon", "swapoff", "acct", "quotactl", "settimeofday", "clock_settime",
                "adjtimex", "syslog", "vhangup", "open_by_handle_at", "name_to_handle_at",
                "process_vm_readv", "process_vm_writev", "userfaultfd")

# arch name -> (AUDIT_ARCH_*, {syscall: number}); numbers from the kernel's unistd tables
DENIED: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (0xC000003E, {
        "ptrace": 101, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
        "fspick": 433, "mount_setattr": 442, "kexec_load": 246, "kexec_file_load": 320,
        "bpf": 321, "keyctl": 250, "add_key": 248, "request_key": 249, "perf_event_open": 298,
        "unshare": 272, "setns": 308, "init_module": 175, "finit_module": 313,
        "delete_module": 176, "reboot": 169, "swapon": 167, "swapoff": 168, "acct": 163,
        "quotactl": 179, "settimeofday": 164, "clock_settime": 227, "adjtimex": 159,
        "syslog": 103, "vhangup": 153, "open_by_handle_at": 304, "name_to_handle_at": 303,
        "process_vm_readv": 310, "process_vm_writev": 311, "userfaultfd": 323,
        "clone": 56, "clone3": 435}),
    "aarch64": (0xC00000B7, {
        "ptrace": 117, "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
        "fspick": 433, "mount_setattr": 442, "kexec_load": 104, "kexec_file_load": 294,
        "bpf": 280, "keyctl": 219, "add_key": 217, "request_key": 218, "perf_event_open": 241,
        "unshare": 97, "setns": 268, "init_module": 105, "finit_module": 273,
        "delete_module": 106, "reboot": 142, "swapon": 224, "swapoff": 225, "acct": 89,
        "quotactl": 60, "settimeofday": 170, "clock_settime": 112, "adjtimex": 171,
        "syslog": 116, "vhangup": 58, "open_by_handle_at": 265, "name_to_handle_at": 264,
        "process_vm_readv": 270, "process_vm_writev": 271, "userfaultfd": 282,
        "clone": 220, "clone3": 435}),
}
_ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program(arch: str | None = None) -> bytes | None:
    """The filter for ``arch`` (default: this machine), or None when there is no table."""
    arch = (arch or platform.machine()).lower()
    arch = _ARCH_ALIASES.get(arch, arch)
    if arch not in DENIED:
        return None
    audit, nrs = DENIED[arch]
    eperm = RET_ERRNO | errno.EPERM
    enosys = RET_ERRNO | errno.ENOSYS
    deny = sorted({nrs[n] for n in DENIED_NAMES})
    # layout: [arch check] [x32 check] [one JEQ per denied nr] [clone3] [clone] ALLOW EPERM ENOSYS
    body: list[tuple[int, int, str | None]] = []          # (code, k, jump-true target label)
    body.append((JEQ_K, nrs["clone3"], "enosys"))
    for nr in deny:
        body.append((JEQ_K, nr, "eperm"))
    n_body = len(body)
    head = [_insn(LD_W_ABS, OFF_ARCH)]
    out = []
    # indices: 0 ld arch; 1 jeq arch (else -> enosys); 2 ld nr; 3 jge x32 (-> enosys);
    # 4.. body; then jeq clone (else allow); ld arg0; jset ns flags -> eperm; allow; eperm; enosys
    first = 4
    tail_at = first + n_body              # jeq clone
    allow_at = tail_at + 3
    eperm_at, enosys_at = allow_at + 1, allow_at + 2

    def jump(frm: int, to: int) -> int:
        off = to - frm - 1
        if not 0 <= off < 256:
            raise ValueError("seccomp program too long for a short jump")
        return off

    out.append(head[0])
    out.append(_insn(JEQ_K, audit, 0, jump(1, enosys_at)))
    out.append(_insn(LD_W_ABS, OFF_NR))
    out.append(_insn(JGE_K, X32_BIT, jump(3, enosys_at), 0))
    for i, (code, k, label) in enumerate(body):
        at = first + i
        out.append(_insn(code, k, jump(at, eperm_at if label == "eperm" else enosys_at), 0))
    out.append(_insn(JEQ_K, nrs["clone"], 0, jump(tail_at, allow_at)))
    out.append(_insn(LD_W_ABS, OFF_ARG0))
    out.append(_insn(JSET_K, CLONE_NS_FLAGS, jump(tail_at + 2, eperm_at), 0))
    out.append(_insn(RET_K, RET_ALLOW))
    out.append(_insn(RET_K, eperm))
    out.append(_insn(RET_K, enosys))
    return b"".join(out)
