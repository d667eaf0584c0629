"""Portable CPU numerics: unprior pins torch's kernel paths before any kernel runs, and records what it used."""

import os
import subprocess
import sys

import pytest

from unprior import numerics
from unprior.io import cache_root

AVX2 = {"avx2", "fma"} <= numerics.cpu_flags()


def _fresh(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in (*numerics.KERNEL_ENV, "UNPRIOR_CPU_KERNELS")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                         check=True, timeout=120)  # fmt: skip
    return out.stdout.strip()


@pytest.mark.skipif(not AVX2, reason="the portable path is AVX2; this CPU has none")
@pytest.mark.parametrize("order", ["import unprior, torch", "import torch, unprior"])
def test_a_fresh_process_runs_avx2_kernels_whatever_the_cpu(order):
    code = f"{order}; torch.ones(3).sum(); print(torch.backends.cpu.get_cpu_capability())"
    assert _fresh(code) == "AVX2"


def test_native_mode_and_user_settings_are_respected(monkeypatch):
    for k in numerics.KERNEL_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("UNPRIOR_CPU_KERNELS", "native")
    assert numerics.pin_cpu_kernels() == {} and not any(k in os.environ for k in numerics.KERNEL_ENV)
    monkeypatch.setenv("UNPRIOR_CPU_KERNELS", "portable")
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    chosen = numerics.pin_cpu_kernels()
    if AVX2:
        assert chosen == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert os.environ["MKL_CBWR"] == "COMPATIBLE"
    monkeypatch.setenv("UNPRIOR_CPU_KERNELS", "fastest")
    with pytest.raises(ValueError, match="UNPRIOR_CPU_KERNELS"):
        numerics.pin_cpu_kernels()


def test_signature_names_the_kernels_and_threads(monkeypatch):
    sig = numerics.numerics_signature(threads=3)
    assert sig["threads"] == 3 and sig["aten_cpu_capability"] in ("DEFAULT", "AVX2", "AVX512", "ZVECTOR")
    monkeypatch.setenv("MKL_CBWR", "AVX512")
    assert numerics.numerics_signature(threads=3)["mkl_cbwr"] == "AVX512" != sig["mkl_cbwr"]


def test_an_unwritable_cache_moves_to_a_temporary_one(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("UNPRIOR_CACHE", str(blocker / "cache"))
    with pytest.warns(UserWarning, match="not writable"):
        root = cache_root()
    assert root != blocker / "cache" and root.is_dir()
    (root / "probe").write_text("ok")
