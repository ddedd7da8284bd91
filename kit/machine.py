"""What machine this is, in the words BENCHMARKS.md uses: the CPU, its flags, the device.

One CPU name covers machines with and without native bfloat16 here, so every description
says which (the trainer's precision and every benchmark depend on it).
"""
import os
import platform
from pathlib import Path


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
