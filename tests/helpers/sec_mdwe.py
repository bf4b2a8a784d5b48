"""Emulate systemd's ``MemoryDenyWriteExecute=yes`` in this process.

systemd (v252, Debian 12) implements MDWE as a seccomp filter, not with
prctl(PR_SET_MDWE): it refuses with EPERM

* ``mmap`` with both PROT_WRITE and PROT_EXEC,
* ``mprotect`` / ``pkey_mprotect`` with PROT_EXEC (any mapping: this is what
  breaks JITs and libraries that need an executable stack),
* ``shmat`` with SHM_EXEC.

This module installs the same filter with ctypes (after PR_SET_NO_NEW_PRIVS,
like NoNewPrivileges=yes), so a test can run the camera stack under it.
x86_64 and aarch64 only. ``deny_resources=True`` also refuses (EPERM, like
``SystemCallFilter=~@resources`` + ``SystemCallErrorNumber=EPERM``) the @resources
set of systemd 252 - x86_64 numbers only.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
RET_ALLOW = 0x7FFF0000
RET_EPERM = 0x00050000 | errno.EPERM

LD_W_ABS, JEQ_K, JSET_K, RET_K, AND_K = 0x20, 0x15, 0x45, 0x06, 0x54

ARCHES = {
    # machine: (AUDIT_ARCH, mmap, mprotect, pkey_mprotect, shmat)
    "x86_64": (0xC000003E, 9, 10, 329, 30),
    "aarch64": (0xC00000B7, 222, 226, 288, 196),
}
# systemd 252 @resources: ioprio_set mbind migrate_pages move_pages sched_setaffinity sched_setattr
# sched_setparam sched_setscheduler set_mempolicy set_mempolicy_home_node setpriority setrlimit
RESOURCES_X86_64 = (251, 237, 256, 279, 203, 314, 142, 144, 238, 450, 141, 160)
PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000
OFF_NR, OFF_ARCH, OFF_ARG2 = 0, 4, 16 + 8 * 2   # struct seccomp_data, little endian: low word of args[2]


def supported() -> bool:
    return platform.machine() in ARCHES and os.name == "posix"


def _program(deny_resources: bool = False) -> list[tuple[int, int, int, int]]:
    arch, mmap_nr, mprot_nr, pkey_nr, shmat_nr = ARCHES[platform.machine()]
    extra = RESOURCES_X86_64 if deny_resources and platform.machine() == "x86_64" else ()
    # Labels are resolved to relative jumps below.
    prog: list = [
        ("ld", OFF_ARCH),
        ("jeq", arch, None, "allow"),
        ("ld", OFF_NR),
        *[("jeq", nr, "deny", None) for nr in extra],
        ("jeq", mmap_nr, "mmap", None),
        ("jeq", mprot_nr, "prot", None),
        ("jeq", pkey_nr, "prot", None),
        ("jeq", shmat_nr, "shm", None),
        ("ret", RET_ALLOW),
        ("label", "mmap"), ("ld", OFF_ARG2), ("and", PROT_WRITE | PROT_EXEC),
        ("jeq", PROT_WRITE | PROT_EXEC, "deny", "allow"),
        ("label", "prot"), ("ld", OFF_ARG2), ("jset", PROT_EXEC, "deny", "allow"),
        ("label", "shm"), ("ld", OFF_ARG2), ("jset", SHM_EXEC, "deny", "allow"),
        ("label", "deny"), ("ret", RET_EPERM),
        ("label", "allow"), ("ret", RET_ALLOW),
    ]
    labels, out, idx = {}, [], 0
    for ins in prog:
        if ins[0] == "label":
            labels[ins[1]] = idx
        else:
            idx += 1
    idx = 0
    for ins in prog:
        op = ins[0]
        if op == "label":
            continue

        def rel(target):
            return 0 if target is None else labels[target] - idx - 1
        if op == "ld":
            out.append((LD_W_ABS, 0, 0, ins[1]))
        elif op == "and":
            out.append((AND_K, 0, 0, ins[1]))
        elif op == "ret":
            out.append((RET_K, 0, 0, ins[1]))
        elif op in ("jeq", "jset"):
            out.append((JEQ_K if op == "jeq" else JSET_K, rel(ins[2]), rel(ins[3]), ins[1]))
        idx += 1
    return out


def install(deny_resources: bool = False) -> None:
    """Apply the filter to this process (irreversible, inherited by children)."""
    if not supported():
        raise OSError(f"MDWE emulation: unsupported machine {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    prog = _program(deny_resources)
    buf = b"".join(struct.pack("<HBBI", *ins) for ins in prog)
    filt = ctypes.create_string_buffer(buf, len(buf))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    fprog = SockFprog(len(prog), ctypes.cast(filt, ctypes.c_void_p))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


def active() -> bool:
    """True when W+X mappings are refused (proves the filter is in force)."""
    import mmap
    try:
        m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except PermissionError:
        return True
    m.close()
    return False
