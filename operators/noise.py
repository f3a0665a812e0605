"""Measurement noise and dose models: CT photon counting, HU <-> attenuation, MRI k-space noise.

CT (transmission) model, per detector reading of a ray with line integral ``p``:

    counts ~ Poisson(I0 * exp(-p)) + N(0, electronic_noise_std^2)
    p_noisy = -log(max(counts, eps) / I0)

``I0`` is the unattenuated photon count per detector element and view (the dose knob; total dose
scales with views x I0). The log needs positive counts, so counts are clipped below at
``eps = 0.1`` photons by default (:data:`COUNT_FLOOR`): a reading of zero photons then maps to the
finite line integral ``log(I0 / 0.1)`` instead of inf; the clip biases only rays that are nearly
opaque at that dose. To first order (delta method) ``Var[p_noisy] = exp(p) / I0`` (+ electronic
variance ``exp(2 p) sigma_e^2 / I0^2``), which :func:`line_integral_noise_variance` returns for
noise-aware data consistency.

Hounsfield units: ``HU = 1000 (mu - mu_water) / mu_water`` (air -1000, water 0), so
``mu = mu_water (1 + HU / 1000)``. Default ``mu_water`` = :data:`MU_WATER_PER_MM` = 0.0193 /mm, the
linear attenuation coefficient of liquid water at 70 keV, the usual effective energy of a 120 kVp CT
spectrum: the NIST X-ray mass attenuation tables (Hubbell & Seltzer, NISTIR 5632) give for water
mu/rho = 0.2059 cm^2/g at 60 keV and 0.1837 cm^2/g at 80 keV; log-log interpolation to 70 keV gives
0.1937 cm^2/g, times rho = 1 g/cm^3 -> 0.0193 /mm.
The attenuation of air is taken as zero.

MRI: :func:`complex_gaussian_noise` adds circularly-symmetric complex Gaussian noise to k-space.

All randomness comes from an explicit ``torch.Generator``; functions accept torch tensors (and the
HU conversions numpy arrays as well) and return the same type.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

__all__ = [
    "MU_WATER_PER_MM",
    "COUNT_FLOOR",
    "transmission_noise",
    "line_integral_noise_variance",
    "counts_to_line_integrals",
    "simulate_counts",
    "hu_to_mu",
    "mu_to_hu",
    "complex_gaussian_noise",
]

#: Linear attenuation of water at 70 keV, 1/mm (NIST XCOM; see the module docstring).
MU_WATER_PER_MM = 0.0193
#: Lower clip (photons) applied to dark-corrected counts before the log (see the module docstring).
COUNT_FLOOR = 0.1

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


def _check_tensor(t: torch.Tensor, name: str, fn: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.is_complex() or not t.is_floating_point():
        raise ValueError(f"{fn}: {name} has dtype {t.dtype}, expected a real floating-point tensor")
    if not torch.isfinite(t).all():
        raise ValueError(f"{fn}: {name} contains NaN or inf")


def _check_positive(value: float, name: str, fn: str) -> float:
    v = float(value)
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{fn}: {name} is {value!r}, expected a finite number > 0")
    return v


def _check_generator(generator: torch.Generator, fn: str) -> None:
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"{fn}: generator must be a torch.Generator, got {type(generator).__name__}")


def simulate_counts(
    line_integrals: torch.Tensor,
    i0: float,
    *,
    electronic_noise_std: float = 0.0,
    generator: torch.Generator,
) -> torch.Tensor:
    """Detector counts ``Poisson(I0 exp(-p)) + N(0, electronic_noise_std^2)`` (same shape and dtype as ``p``).

    Args:
        line_integrals: dimensionless line integrals ``p`` (any shape, e.g. ``[B, 1, n_angles, n_det]``).
        i0: unattenuated photons per detector element and view.
        electronic_noise_std: standard deviation of additive Gaussian noise, in photons.
        generator: the only source of randomness; must live on ``p``'s device.
    """
    fn = "simulate_counts"
    _check_tensor(line_integrals, "line_integrals", fn)
    i0 = _check_positive(i0, "i0", fn)
    _check_generator(generator, fn)
    if not (np.isfinite(electronic_noise_std) and electronic_noise_std >= 0):
        raise ValueError(f"{fn}: electronic_noise_std is {electronic_noise_std!r}, expected a finite number >= 0")
    # Poisson sampling in float64: float32 loses integer precision above 2^24 photons
    rate = i0 * torch.exp(-line_integrals.to(torch.float64))
    counts = torch.poisson(rate, generator=generator)
    if electronic_noise_std > 0:
        noise = torch.randn(counts.shape, generator=generator, dtype=counts.dtype, device=counts.device)
        counts = counts + electronic_noise_std * noise
    return counts.to(line_integrals.dtype)


def counts_to_line_integrals(
    counts: torch.Tensor,
    i0: float | torch.Tensor | None = None,
    dark: float | torch.Tensor = 0.0,
    flat: float | torch.Tensor | None = None,
    *,
    eps: float = COUNT_FLOOR,
) -> torch.Tensor:
    """The log transform of raw detector readings: ``p = -log(max(counts - dark, eps) / (flat - dark))``.

    Readings follow ``counts = I0 exp(-p) + dark`` (plus noise): ``dark`` is the reading with the
    source off, ``flat`` the air scan (source on, no object), so ``flat - dark = I0``. This is the
    one log transform of the project: simulated data and measured sinogram directories both use it.

    Args:
        counts: raw readings in photons, any shape (e.g. ``[B, 1, n_angles, n_detectors]``); real
            floating point. The result has its shape and dtype.
        i0: unattenuated photons per reading above the dark level (scalar or a tensor broadcastable
            to ``counts``); the flat field is then ``i0 + dark``. Ignored when ``flat`` is given.
        dark: dark-field reading(s), scalar or broadcastable tensor, subtracted from ``counts`` and
            ``flat``.
        flat: flat-field reading(s), scalar or tensor broadcastable to ``counts`` (e.g. one per
            detector ``[n_detectors]`` or per reading ``[n_angles, n_detectors]``).
        eps: floor in photons on the dark-corrected counts, :data:`COUNT_FLOOR` by default: a ray
            with fewer than ``eps`` photons above the dark level (photon starvation) gets the
            finite ``p = log((flat - dark) / eps)`` instead of inf; every other ray is unchanged.

    Raises:
        ValueError: NaN or inf inputs, ``eps <= 0``, neither ``i0`` nor ``flat`` given, or a
            reference intensity ``flat - dark`` (or ``i0``) that is not positive everywhere.
    """
    fn = "counts_to_line_integrals"
    _check_tensor(counts, "counts", fn)
    eps = _check_positive(eps, "eps", fn)
    dark_t = _as_real(dark, "dark", fn, counts)
    if flat is not None:
        ref = _as_real(flat, "flat", fn, counts) - dark_t
    elif i0 is not None:
        ref = _as_real(i0, "i0", fn, counts)
    else:
        raise ValueError(f"{fn}: give i0 (photons above the dark level) or flat (the air-scan reading)")
    if not bool((ref > 0).all()):
        raise ValueError(f"{fn}: reference intensity (flat - dark, or i0) must be > 0 everywhere")
    return -torch.log(torch.clamp(counts - dark_t, min=eps) / ref)


def _as_real(value: float | torch.Tensor, name: str, fn: str, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a finite real tensor in ``like``'s dtype and device."""
    if isinstance(value, torch.Tensor):
        _check_tensor(value, name, fn)
        return value.to(device=like.device, dtype=like.dtype)
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{fn}: {name} is {value!r}, expected a finite number")
    return torch.as_tensor(v, dtype=like.dtype, device=like.device)


def transmission_noise(
    line_integrals: torch.Tensor,
    i0: float,
    *,
    electronic_noise_std: float = 0.0,
    generator: torch.Generator,
    eps: float = COUNT_FLOOR,
) -> torch.Tensor:
    """Low-dose CT: noisy line integrals from noise-free ones by Poisson photon counting.

    ``counts ~ Poisson(I0 exp(-p)) (+ N(0, sigma_e^2))``, then ``-log(max(counts, eps) / I0)``.
    Same shape and dtype as ``line_integrals``; ``eps`` documented in the module docstring.
    """
    counts = simulate_counts(line_integrals, i0, electronic_noise_std=electronic_noise_std, generator=generator)
    return counts_to_line_integrals(counts, i0, eps=eps)


def line_integral_noise_variance(
    line_integrals: torch.Tensor, i0: float, *, electronic_noise_std: float = 0.0
) -> torch.Tensor:
    """First-order variance of the log-transformed data: ``exp(p) / I0 + exp(2p) sigma_e^2 / I0^2``.

    Delta method: ``Var[-log(N / I0)] ~ Var[N] / E[N]^2`` with ``Var[N] = I0 exp(-p) + sigma_e^2``.
    Accurate while the expected count ``I0 exp(-p)`` is well above ~10 photons.
    """
    fn = "line_integral_noise_variance"
    _check_tensor(line_integrals, "line_integrals", fn)
    i0 = _check_positive(i0, "i0", fn)
    e = torch.exp(line_integrals)
    return e / i0 + (e * electronic_noise_std / i0) ** 2


def hu_to_mu(hu: ArrayT, mu_water: float = MU_WATER_PER_MM) -> ArrayT:
    """Hounsfield units -> linear attenuation (1/mm): ``mu = mu_water (1 + HU / 1000)``."""
    mu_water = _check_positive(mu_water, "mu_water", "hu_to_mu")
    return mu_water * (1.0 + hu / 1000.0)


def mu_to_hu(mu: ArrayT, mu_water: float = MU_WATER_PER_MM) -> ArrayT:
    """Linear attenuation (1/mm) -> Hounsfield units: ``HU = 1000 (mu - mu_water) / mu_water``."""
    mu_water = _check_positive(mu_water, "mu_water", "mu_to_hu")
    return 1000.0 * (mu - mu_water) / mu_water


def complex_gaussian_noise(kspace: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """``kspace + n`` with ``n`` circularly-symmetric complex Gaussian, ``E|n|^2 = sigma^2``.

    Real and imaginary parts each have standard deviation ``sigma / sqrt(2)``. ``kspace`` is complex
    (e.g. ``[B, n_coils, H, W]`` complex64); the result has the same shape and dtype.
    """
    fn = "complex_gaussian_noise"
    if not isinstance(kspace, torch.Tensor) or not kspace.is_complex():
        raise ValueError(f"{fn}: kspace must be a complex torch.Tensor, got {getattr(kspace, 'dtype', type(kspace))}")
    if not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"{fn}: sigma is {sigma!r}, expected a finite number >= 0")
    _check_generator(generator, fn)
    real_dtype = kspace.real.dtype
    n = torch.randn((2, *kspace.shape), generator=generator, dtype=real_dtype, device=kspace.device)
    return kspace + (sigma / np.sqrt(2.0)) * torch.complex(n[0], n[1])
