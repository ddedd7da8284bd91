"""What machine this is, in the words BENCHMARKS.md uses: the CPU, its flags, the device.

One CPU name covers machines with and without native bfloat16 here, so every description
says which (the trainer's precision and every benchmark depend on it).
"""
import math
import os
import platform
from contextlib import contextmanager
from pathlib import Path

from kit.outcome import T


def cpu_flags():
    """The CPU's feature flags (``/proc/cpuinfo``), empty where the platform does not say."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_bf16():
    """Native bfloat16 arithmetic (AVX512-BF16 or AMX): bf16 matrix products about 3x faster than float32.

    Elsewhere bf16 is emulated and far slower (BENCHMARKS.md)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


@contextmanager
def torch_threads(n):
    """torch computes with ``n`` threads inside, as before after."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe(device="cpu"):
    """One line for BENCHMARKS.md: the CPU (or GPU), its cores and bf16 flags, the OS, Python, torch."""
    import torch
    if device == "cuda":
        return (f"{torch.cuda.get_device_name()}, {os.cpu_count()} CPU cores, {platform.system()} "
                f"{platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}")
    flags = sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})
    bf16 = "native bf16" if cpu_has_bf16() else "no native bf16"
    return (f"{cpu_model()}, {os.cpu_count()} cores, {bf16} (flags: {' '.join(flags) or 'none of avx2/avx512'}), "
            f"{platform.system()} {platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}")


# -- memory: is the machine (its memory cgroup) short of it? ------------------------------------------

def _cgroups():
    """``(controllers, path)`` of each line of /proc/self/cgroup (controllers "" for cgroup v2's), [] without."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    return [tuple(line.split(":", 2)[1:]) for line in lines if line.count(":") >= 2]


def memory_cgroup():
    """(version, folder) of this process's memory cgroup, or None."""
    groups = _cgroups()
    for controllers, path in groups:
        if "memory" in controllers.split(","):
            folder = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            return (1, folder) if folder.is_dir() else None
    for controllers, path in groups:
        if controllers == "":
            folder = Path("/sys/fs/cgroup") / path.lstrip("/")
            return (2, folder) if (folder / "memory.max").is_file() else None
    return None


def _read(path):
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def oom_kills(cgroup=None):
    """How many processes the kernel has killed for lack of memory in this process's memory cgroup (or in
    ``cgroup``, a ``(version, folder)``) so far (0: unknown)."""
    found = cgroup or memory_cgroup()
    if found is None:
        return 0
    version, folder = found
    text = _read(folder / ("memory.events" if version == 2 else "memory.oom_control"))
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "oom_kill" and value.strip().isdigit():
            return int(value)
    return 0


def memory_short(margin=0.95):
    """How short of memory the machine is (a ``Text``), or None: the cgroup at its limit, or the kernel stalling
    every task on memory (PSI)."""
    found = memory_cgroup()
    if found is not None:
        version, folder = found
        limit = _read(folder / ("memory.max" if version == 2 else "memory.limit_in_bytes")).strip()
        used = _read(folder / ("memory.current" if version == 2 else "memory.usage_in_bytes")).strip()
        if limit.isdigit() and used.isdigit() and int(limit) < 1 << 50 and int(used) >= margin * int(limit):
            return T("its memory limit of {mb} MB is reached", mb=int(limit) >> 20)
    for line in _read("/proc/pressure/memory").splitlines():
        if line.startswith("full "):
            fields = dict(kv.split("=") for kv in line.split()[1:])
            if float(fields.get("avg10", 0)) > 20.0:
                return T("it spends most of its time waiting for memory")
    return None


def memory_limit_mb():
    """The memory this process may use, in MB: its memory cgroup's limit where it has one, else the machine's."""
    found = memory_cgroup()
    if found is not None:
        version, folder = found
        limit = _read(folder / ("memory.max" if version == 2 else "memory.limit_in_bytes")).strip()
        if limit.isdigit() and int(limit) < 1 << 50:
            return int(limit) >> 20
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) >> 10
    return 4096


# -- CPU: how much of it a quota grants -----------------------------------------------------------------

def cpu_quota():
    """The CPUs this process's cgroup (or one above it) may use per period, where a quota says (Gradescope's 0.5
    CPU, ``docker --cpus``, a batch's cgroup); None where none does."""
    quotas = []
    for controllers, path in _cgroups():
        if controllers == "":  # cgroup v2: cpu.max is "max 100000" or "50000 100000"
            root, files = Path("/sys/fs/cgroup"), [("cpu.max", None)]
        elif "cpu" in controllers.split(","):
            root, files = Path("/sys/fs/cgroup") / controllers, [("cpu.cfs_quota_us", "cpu.cfs_period_us")]
            if not root.is_dir():
                root = Path("/sys/fs/cgroup/cpu")
        else:
            continue
        folder = root / path.lstrip("/")
        while True:
            try:
                for quota, period in files:
                    if period is None:
                        q, p = (folder / quota).read_text().split()
                    else:
                        q, p = (folder / quota).read_text(), (folder / period).read_text()
                    if q.strip() not in ("max", "-1"):
                        quotas.append(int(q) / int(p))
            except (OSError, ValueError):
                pass
            if folder == root or folder.parent == folder:
                break
            folder = folder.parent
    return min(quotas) if quotas else None


def usable_threads(threads):
    """``threads``, at most as many as the CPU quota grants (at least one): two threads in half a CPU spin against
    each other (measured in a 0.5-CPU cgroup: 1.8 s a window in float32, against 57 ms with one thread; the earlier
    kit's whole grading there took up to 197 s, BENCHMARKS.md, section final)."""
    quota = cpu_quota()
    return max(1, min(threads, math.ceil(quota))) if quota else threads
