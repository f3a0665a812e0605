"""Noise schedules as data: tensors of sigmas (Karras et al. 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models", Eq. 5), and the training-time sigma distributions.

Sampling schedules are decreasing 1-D tensors ``[n]`` (optionally with a trailing 0); samplers only
ever iterate over such a tensor, so a new schedule is a new tensor, not a new code path.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "karras_sigmas",
    "loglinear_sigmas",
    "sample_lognormal_sigmas",
    "sample_loguniform_sigmas",
    "sample_training_sigmas",
]


def karras_sigmas(
    n: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    *,
    append_zero: bool = False,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The EDM schedule ``sigma_i = (s_max^(1/rho) + i/(n-1) (s_min^(1/rho) - s_max^(1/rho)))^rho``.

    Returns a strictly decreasing tensor ``[n]`` from ``sigma_max`` to ``sigma_min`` (``[n + 1]`` with a
    final 0 when ``append_zero``). ``rho = 7`` spends more steps at low noise (Karras et al. 2022, Eq. 5).
    """
    if n < 1:
        raise ValueError(f"need at least one sigma, got n={n}")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
    if n == 1:
        sig = torch.tensor([sigma_max], dtype=torch.float64)
    else:
        ramp = torch.linspace(0, 1, n, dtype=torch.float64)
        lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
        sig = (hi + ramp * (lo - hi)) ** rho
        sig[0], sig[-1] = sigma_max, sigma_min  # exact endpoints despite floating-point powers
    if append_zero:
        sig = torch.cat([sig, sig.new_zeros(1)])
    return sig.to(dtype=dtype, device=device)


def loglinear_sigmas(
    n: int, sigma_min: float, sigma_max: float, *, dtype: torch.dtype = torch.float64, device=None
) -> torch.Tensor:
    """Geometric schedule (Song et al. 2021, VE SDE discretisation): ``[n]`` decreasing, log-spaced."""
    if n < 1:
        raise ValueError(f"need at least one sigma, got n={n}")
    return torch.logspace(math.log10(sigma_max), math.log10(sigma_min), n, dtype=torch.float64).to(dtype=dtype, device=device)


def sample_lognormal_sigmas(
    n: int, p_mean: float = -1.2, p_std: float = 1.2, *, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """EDM training distribution ``ln(sigma) ~ N(P_mean, P_std^2)`` (Karras et al. 2022, Table 1): ``[n]``.

    The default (-1.2, 1.2) puts the mass where the denoising loss can still be reduced
    (median sigma 0.30 for data of std 0.5).
    """
    z = torch.randn(n, generator=generator, device=generator.device if generator is not None else device)
    return (z * p_std + p_mean).exp().to(device)


def sample_loguniform_sigmas(
    n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, *, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """``ln(sigma) ~ U(ln sigma_min, ln sigma_max)`` (VE SDE, Song et al. 2021): ``[n]``.

    Spreads training equally over every noise decade; wastes capacity on very small and very large
    sigmas compared with the log-normal, but covers the whole sampling range.
    """
    u = torch.rand(n, generator=generator, device=generator.device if generator is not None else device)
    lo, hi = math.log(sigma_min), math.log(sigma_max)
    return (lo + u * (hi - lo)).exp().to(device)


def sample_training_sigmas(
    n: int,
    distribution: str,
    *,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    generator: torch.Generator | None = None,
    device=None,
) -> torch.Tensor:
    """Dispatch on ``distribution`` in ``{"lognormal", "loguniform"}``; returns ``[n]`` sigmas."""
    if distribution == "lognormal":
        return sample_lognormal_sigmas(n, p_mean, p_std, generator=generator, device=device)
    if distribution == "loguniform":
        return sample_loguniform_sigmas(n, sigma_min, sigma_max, generator=generator, device=device)
    raise ValueError(f"sigma distribution must be 'lognormal' or 'loguniform', got {distribution!r}")
