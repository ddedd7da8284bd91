"""What this machine's operating system offers the grader's sandbox, decided once.

Linux has everything the sandbox uses: process groups, handing a descriptor to a child, resource
limits, the kernel's fences (Landlock, death with the parent) and ``/proc``. macOS has all but the
kernel's fences and ``/proc``; Windows has none of them. Each missing piece has a fallback (grader/sandbox.py
and grader/fence.py say which), and the report's first line says what was in force.

``KIT_HOST=macos`` or ``KIT_HOST=windows`` makes a Linux machine act as that platform, so the kit's
tests prove each fallback without the platform (tests/test_platforms.py).
"""
import os
import signal
import subprocess
import sys
from dataclasses import dataclass

NAMES = ("linux", "macos", "windows", "posix")


@dataclass(frozen=True)
class Host:
    name: str
    process_groups: bool  # start_new_session and killpg: a worker's children die with it
    pass_fds: bool  # the worker's log handed over as a descriptor (else as a file path)
    rlimits: bool  # the resource module: memory, CPU time, file size and process limits
    kernel_fences: bool  # Landlock and PR_SET_PDEATHSIG (Linux)
    proc: bool  # /proc: stray children found by their environment, stale folders by their owner's start


def _detect():
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "macos"
    return "windows" if os.name == "nt" else "posix"


def host():
    name = os.environ.get("KIT_HOST") or _detect()
    if name not in NAMES:
        name = _detect()
    posix = name != "windows"
    return Host(name, process_groups=posix, pass_fds=posix, rlimits=posix, kernel_fences=name == "linux",
                proc=name == "linux")


def kill(proc, wait=10.0):
    """SIGKILL ``proc`` and, where the platform has process groups, everything in its group (it was started in a
    session of its own); wait for it, with a deadline. Never raises."""
    try:
        if host().process_groups:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError, OSError):
        pass
    try:
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        pass
