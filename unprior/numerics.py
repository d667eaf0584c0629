"""Portable CPU numerics: the same weights from the same seed on every x86-64 machine with AVX2.

torch picks its CPU code paths by instruction set at run time, in three libraries: ATen's vectorised kernels
(``ATEN_CPU_CAPABILITY``: default / avx2 / avx512), MKL's GEMM (``MKL_CBWR``) and oneDNN's convolutions and
matmuls (``ONEDNN_MAX_CPU_ISA``). Each path sums floats in another order, so a model trained on an AVX-512 CPU and
the same model trained on an AVX2-only CPU of the same cloud machine kind end up with different weights. For the
embedded world's tiny models the difference is not small: the test suite's base model answered POPE at 0.83 with
AVX-512 kernels and at 0.56 with AVX2 kernels (same seed, one thread; docs/world.md, "Portable numerics").

So unprior pins all three to AVX2 (the common subset of the machines we run on; ``default`` / ``COMPATIBLE`` /
``SSE41`` where a CPU lacks AVX2 or FMA) when it is imported, unless the user already set a variable or asks for
``UNPRIOR_CPU_KERNELS=native``. Pinning is what the README numbers, the tests and the base cache key assume; the
signature (:func:`numerics_signature`) goes into every cache key that depends on trained weights and into results
files, so a model trained on other kernels is never reused as if it were the same.

The variables are read lazily by the libraries (at their first kernel call), so pinning works even when torch was
imported first, as long as no CPU kernel ran yet; :func:`numerics_signature` reports the capability ATen really
uses. Thread count also changes summation order; it is part of the signature.

Two small pieces of the same promise that every layer shares: :func:`stable_seed` (a seed from any values, the same
in every process and on every machine) and :func:`cosine_lr` (the warm-up + cosine learning-rate schedule of the
base model's SFT and of ``unprior train``).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import platform
from collections.abc import Iterator
from functools import cache
from typing import Any

KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")
PORTABLE = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
BASELINE = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"}


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def kernel_mode() -> str:
    """``portable`` (the default) or ``native`` (``UNPRIOR_CPU_KERNELS=native``: every library picks its own)."""
    mode = os.environ.get("UNPRIOR_CPU_KERNELS", "portable").strip().lower() or "portable"
    if mode not in ("portable", "native"):
        raise ValueError(f"UNPRIOR_CPU_KERNELS must be 'portable' or 'native', got {mode!r}")
    return mode


def pin_cpu_kernels() -> dict[str, str]:
    """Set the three kernel-path variables that are not set yet (portable mode, x86-64 only); return what was set."""
    if kernel_mode() == "native" or platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    wanted = PORTABLE if {"avx2", "fma"} <= cpu_flags() else BASELINE
    chosen = {k: v for k, v in wanted.items() if k not in os.environ}
    os.environ.update(chosen)
    return chosen


def numerics_signature(threads: int | None = None) -> dict[str, Any]:
    """What decides the float summation order of a CPU training run: kernel paths, torch version, thread count.

    Goes into the base model's cache key and into results files. ``threads`` defaults to torch's current count.
    """
    import torch  # every `unprior ... --help` loads this module

    return {
        "machine": platform.machine(),
        "torch": torch.__version__.split("+")[0],
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl_cbwr": os.environ.get("MKL_CBWR", "auto"),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "auto"),
        "threads": threads or torch.get_num_threads(),
    }


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch (OpenMP/MKL) threads, then restore the previous count; ``n = 0`` keeps it."""
    import torch  # every `unprior ... --help` loads this module

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from any values, stable across processes and machines (unlike ``hash``)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def cosine_lr(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
