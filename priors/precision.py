"""Reduced-precision network evaluation for sampling (bfloat16 autocast).

Sampling spends nearly all its time in the U-Net's convolutions. On CPUs with native bfloat16
arithmetic (AVX512-BF16 or AMX) and on CUDA GPUs with bf16 support, running those convolutions under
``torch.autocast(dtype=torch.bfloat16)`` is 1.5-2x faster; elementwise EDM preconditioning, the
data-consistency steps and the returned images stay in float32. bfloat16 keeps float32's exponent
range, so no loss scaling is needed; its ~3 significant digits perturb the denoiser output far below
the noise levels a sampler works at (``benchmarks/bench_samplers.py --precision`` compares).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

__all__ = ["PRECISIONS", "add_precision_argument", "autocast", "cpu_has_native_bf16", "network_precision", "resolve_precision"]

#: Accepted values of the ``precision`` option.
PRECISIONS = ("auto", "fp32", "bf16")


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU advertises AVX512-BF16 or AMX-BF16 (Linux ``/proc/cpuinfo``; else False).

    Without them oneDNN emulates bfloat16 and autocast gains nothing, so ``"auto"`` stays in float32.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return bool({"avx512_bf16", "amx_bf16"} & flags)
    return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """``"fp32"`` -> ``None`` (the weights' dtype), ``"bf16"`` -> ``torch.bfloat16``,
    ``"auto"`` -> bfloat16 where ``device`` computes it natively, else ``None``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    return None


@contextmanager
def network_precision(prior: torch.nn.Module, dtype: torch.dtype | None) -> Iterator[None]:
    """Evaluate ``prior``'s network in ``dtype`` (autocast) inside the block; restores the old setting."""
    previous = getattr(prior, "compute_dtype", None)
    prior.compute_dtype = dtype
    try:
        yield
    finally:
        prior.compute_dtype = previous


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype`` on ``device`` (a disabled context when ``dtype`` is None)."""
    return torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def add_precision_argument(parser) -> None:
    """The ``--precision`` option shared by the commands that run a sampler."""
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="auto",
        help="network arithmetic for samplers: auto (bfloat16 where the CPU/GPU computes it natively), fp32 or bf16",
    )
