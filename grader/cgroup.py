"""A memory cgroup of the grader's making: one per worker, and one per grading run by grader/runner.py.

The kernel's own accounting bounds everything the processes inside touch, whatever they do: their
children, shared memory (memfd, /dev/shm) and tmpfs pages included, which RLIMIT_AS does not count.
An out-of-memory kill then lands inside the group that went over its limit, never on a neighbour,
and the group's own counter says it happened. Killing a group kills exactly what it holds.

Creating one needs root and a writable cgroup file system (v1's memory hierarchy, or v2 with the
memory controller enabled below this process's group); where either is missing ``Group.create``
returns None and the caller keeps its fallback (resource limits per process). ``limit_mb`` says
which bound was in force (grader/sandbox.py words it in the report's first line).
"""
import os
import secrets
import signal
import time
from pathlib import Path

from kit import machine


class Group:
    """One memory cgroup: ``add`` processes, ``kill`` them all, ``oom_kills`` since it was made, ``remove`` it."""

    def __init__(self, version, folder, limit_mb):
        self.version, self.folder, self.limit_mb = version, folder, limit_mb

    @classmethod
    def create(cls, prefix, limit_mb):
        """A new group below this process's own with a hard memory limit, or None where none can be made."""
        if not hasattr(os, "geteuid") or os.geteuid() != 0 or os.environ.get("KIT_NO_CGROUP"):
            return None
        own = machine.memory_cgroup()
        if own is None:
            return None
        version, parent = own
        _sweep(parent)
        folder = parent / f"{prefix}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            if version == 2 and "memory" not in (parent / "cgroup.subtree_control").read_text().split():
                return None  # v2: the controller is not delegated below this group (no internal processes rule)
            folder.mkdir()
        except OSError:
            return None
        group = cls(version, folder, limit_mb)
        try:
            limit = str(int(limit_mb) << 20)
            if version == 1:
                (folder / "memory.limit_in_bytes").write_text(limit)
                swap = folder / "memory.memsw.limit_in_bytes"
                if swap.exists():
                    swap.write_text(limit)  # no way around the limit through swap
            else:
                (folder / "memory.max").write_text(limit)
                if (folder / "memory.swap.max").exists():
                    (folder / "memory.swap.max").write_text("0")
        except OSError:
            group.remove()
            return None
        return group

    def add(self, pid):
        """Move ``pid`` into the group; False when it is gone (or cannot be moved)."""
        try:
            (self.folder / "cgroup.procs").write_text(str(pid))
            return True
        except OSError:
            return False

    def _subtree(self):
        """This group's folder and every group made below it (a worker's, inside a grading's), deepest first."""
        return [Path(root) for root, _, _ in os.walk(self.folder, topdown=False)]

    def pids(self):
        """Every process in the group or a group below it (v1 lists each group's own only)."""
        out = []
        for folder in self._subtree():
            try:
                out += [int(x) for x in (folder / "cgroup.procs").read_text().split()]
            except (OSError, ValueError):
                pass
        return out

    def kill(self, deadline=10.0):
        """SIGKILL everything in the group, pass after pass until it is empty (a fork during a pass is caught by
        the next); v2 has the kernel's own ``cgroup.kill``."""
        if self.version == 2 and (self.folder / "cgroup.kill").exists():
            try:
                (self.folder / "cgroup.kill").write_text("1")
            except OSError:
                pass
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            pids = [p for p in self.pids() if p != os.getpid()]
            if not pids:
                return True
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.01)
        return False

    def oom_kills(self):
        return machine.oom_kills((self.version, self.folder))

    def remove(self):
        """Kill what is left and remove the folder (the kernel refuses while a process is inside)."""
        self.kill()
        for _ in range(100):
            try:
                for folder in self._subtree():  # the groups below first: the kernel refuses a parent that has any
                    folder.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)


def rmdir(folder, tries=50, wait=0.1):
    """Remove a cgroup's folder once the kernel lets it go (it refuses while an exiting process is still counted)."""
    for _ in range(tries):
        try:
            Path(folder).rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            time.sleep(wait)
    return False


def _sweep(parent):
    """Remove the empty groups that gradings killed from outside left behind (``kit-...-PID-...``, PID gone)."""
    try:
        children = [d for d in parent.iterdir() if d.name.startswith("kit-") and d.is_dir()]
    except OSError:
        return
    for d in children:
        try:
            pid = int(d.name.split("-")[-2])
            os.kill(pid, 0)
            continue  # its grading is still running
        except (ValueError, IndexError):
            continue
        except ProcessLookupError:
            pass
        except OSError:
            continue
        Group(0, d, 0).remove()


def descendants(pid):
    """``pid`` and every process below it (by parent links in /proc), parents first."""
    children = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def prefer_killing(pid):
    """Make ``pid`` the kernel's first choice when memory runs out (oom_score_adj 1000): a submission that
    exhausts a shared limit is killed before the grader or a neighbour. Set by root, it cannot be lowered again."""
    try:
        Path(f"/proc/{pid}/oom_score_adj").write_text("1000")
        return True
    except OSError:
        return False
