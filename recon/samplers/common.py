"""Parts shared by every posterior sampler.

Conventions (all samplers):

* The sampler state ``x`` lives in the operator's domain, ``[B, *op.domain_shape]``, in the prior's
  *normalised* units. ``op`` and ``y`` handed to a sampler already map normalised images to
  measurements (:func:`normalize_problem` builds them from physical data), so samplers contain no
  unit conversions.
* Complex images (MRI) are denoised by a real prior by treating the real and imaginary parts as two
  separate items of the prior's batch (score-MRI, Chung & Ye, Med. Image Anal. 2022): a prior
  trained on magnitude images is applied to the real part and to the imaginary part, and both are
  noised with per-component standard deviation ``sigma``. This keeps the prior's noise model exact
  (each part is ``part0 + sigma * n``) and needs no phase estimate; single- and multi-coil operators
  both work because samplers only call ``op.forward`` / ``adjoint`` / ``normal`` / ``pinv``.
* Measurement noise enters through :class:`~recon.samplers.data_term.DataTerm`: with a noise standard deviation (scalar or
  per measurement, e.g. from a Poisson dose model) the operator and data are whitened, so every
  least-squares step weights each measurement by its inverse variance and the data term is the
  exact negative log-likelihood ``0.5 * ||(y - A x) / std||^2``.
* Randomness only through the explicit ``torch.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from operators import LinearOperator
from priors.base import Prior
from priors.schedules import karras_sigmas
from recon.linalg import batch_norm
from recon.samplers.data_term import DataTerm

__all__ = [
    "Chain",
    "DenoiserView",
    "ancestral_step",
    "counting_denoiser_calls",
    "default_sigma_range",
    "karras_sigmas",
    "randn",
    "relative_residual",
    "noise_residual",
    "sampling_sigmas",
    "start_chain",
    "tweedie_variance",
]

#: Default diffusion range for inverse problems (Karras rho = 7, sigma 20 -> 0.005). sigma_max = 20
#: is far above the data scale (images in [0, 1]) so the start is indistinguishable from pure
#: noise, without spending steps at sigma = 80 where nothing is learned.
DEFAULT_SIGMA_MAX = 20.0
DEFAULT_SIGMA_MIN = 0.005
DEFAULT_RHO = 7.0


# --- schedules -----------------------------------------------------------------------------------
def default_sigma_range(prior: Prior, sigma_min: float | None = None, sigma_max: float | None = None) -> tuple[float, float]:
    """The sampling range: the defaults above clipped to the range the prior was trained on."""
    lo = DEFAULT_SIGMA_MIN if sigma_min is None else float(sigma_min)
    hi = DEFAULT_SIGMA_MAX if sigma_max is None else float(sigma_max)
    lo = max(lo, float(prior.sigma_min))
    hi = min(hi, float(prior.sigma_max))
    if not hi > lo > 0:
        raise ValueError(f"invalid sigma range [{lo}, {hi}]")
    return lo, hi


def sampling_sigmas(
    prior: Prior, n_steps: int, *, sigma_min: float | None = None, sigma_max: float | None = None,
    rho: float = DEFAULT_RHO, sigmas: torch.Tensor | None = None,
) -> torch.Tensor:
    """Decreasing sigmas ``[n_steps + 1]`` ending in 0 (the final step lands on the clean image).

    The Karras et al. (2022) schedule of :func:`priors.schedules.karras_sigmas`, the one used in
    training, over :func:`default_sigma_range`. ``sigmas`` (a user schedule, with or without the
    trailing 0) overrides it: schedules are data, not code paths.
    """
    if sigmas is not None:
        s = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
        if float(s[-1]) != 0.0:
            s = torch.cat([s, s.new_zeros(1)])
        if not bool((s[:-1] > 0).all()) or not bool((s[1:] <= s[:-1]).all()):
            raise ValueError("sigmas must be positive and non-increasing (with a final 0)")
        return s
    lo, hi = default_sigma_range(prior, sigma_min, sigma_max)
    s = karras_sigmas(n_steps, lo, hi, rho)
    return torch.cat([s, s.new_zeros(1)])


def ancestral_step(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """DDIM-eta step sizes in the variance-exploding parametrisation.

    Returns ``(sigma_down, sigma_up)`` with ``sigma_down^2 + sigma_up^2 = sigma_next^2`` and
    ``sigma_up = eta * sigma_next * sqrt(1 - sigma_next^2 / sigma^2)`` (DDIM's ``sigma_t(eta)``,
    Song, Meng, Ermon 2021, Eq. 16, rewritten for ``x = x0 + sigma * eps``): ``eta = 0`` is the
    deterministic DDIM / probability-flow step, ``eta = 1`` the ancestral (DDPM) step.
    """
    if sigma_next <= 0:
        return 0.0, 0.0
    up = eta * sigma_next * math.sqrt(max(0.0, 1.0 - (sigma_next / sigma) ** 2))
    up = min(up, sigma_next)
    down = math.sqrt(max(0.0, sigma_next**2 - up**2))
    return down, up


def tweedie_variance(sigma: float, sigma_data: float) -> float:
    """``r^2 = sigma^2 sigma_data^2 / (sigma^2 + sigma_data^2)``: the variance of ``x0 | x_sigma``
    for an isotropic Gaussian prior of variance ``sigma_data^2`` (Pseudoinverse-guided diffusion,
    Song, Vahdat, Mardani, Kautz, ICLR 2023, Sec. 3.2). Used as the width of the denoiser's error
    when combining the denoised estimate with the data."""
    return sigma**2 * sigma_data**2 / (sigma**2 + sigma_data**2)


def initial_state(sigma0: float, noise: torch.Tensor, x_init: torch.Tensor | None = None) -> torch.Tensor:
    """The sampler's starting point ``x_init + sigma0 * noise`` (``x_init = 0``: pure noise).

    A warm start (``x_init`` a classical reconstruction, ``sigma0`` well below the prior's
    ``sigma_max``) is "Come-Closer-Diffuse-Faster" (Chung, Sim, Ye, CVPR 2022; also SDEdit, Meng et
    al., ICLR 2022): forward-diffusing a good estimate to a moderate noise level and running the
    reverse process from there needs fewer steps than starting from noise, because the estimate's
    error is already small next to ``sigma0``. ``x_init`` is ``[B, *domain]`` in normalised units.
    """
    if x_init is None:
        return sigma0 * noise
    if x_init.shape != noise.shape:
        raise ValueError(f"x_init has shape {tuple(x_init.shape)}, expected {tuple(noise.shape)}")
    return x_init.to(noise) + sigma0 * noise


# --- random numbers ---------------------------------------------------------------------------------
def randn(shape: tuple[int, ...], *, complex_: bool, dtype: torch.dtype, device: torch.device,
          generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise from ``generator`` only.

    Complex noise has independent ``N(0, 1)`` real and imaginary parts (per-component unit variance,
    matching the real/imaginary split of the prior). Drawn on the generator's device and moved, so a
    CPU generator works with tensors on any device (and the stream does not depend on the device).
    """
    gdev = generator.device
    if complex_:
        re = torch.randn(shape, generator=generator, dtype=dtype, device=gdev)
        im = torch.randn(shape, generator=generator, dtype=dtype, device=gdev)
        z = torch.complex(re, im)
    else:
        z = torch.randn(shape, generator=generator, dtype=dtype, device=gdev)
    return z.to(device)


# --- the prior seen from the operator's domain ---------------------------------------------------------
class DenoiserView:
    """Applies a real prior's denoiser to images in the operator's (possibly complex) domain.

    Complex ``[B, C, H, W]`` images are split into ``[2B, C, H, W]`` real images (all real parts,
    then all imaginary parts) and recombined.
    """

    def __init__(self, prior: Prior, complex_: bool):
        self.prior = prior
        self.complex = complex_
        params = list(prior.parameters())
        # Networks run in their own dtype (float32); analytic priors take the state's dtype.
        self.dtype: torch.dtype | None = params[0].dtype if params else None

    def to_real(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.real, x.imag], dim=0) if self.complex else x

    def from_real(self, xr: torch.Tensor) -> torch.Tensor:
        if not self.complex:
            return xr
        b = xr.shape[0] // 2
        return torch.complex(xr[:b], xr[b:])

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        xr = self.to_real(x)
        out_dtype = xr.dtype
        if self.dtype is not None and xr.dtype != self.dtype:
            xr = xr.to(self.dtype)
        d = self.prior.denoise(xr, float(sigma))
        return self.from_real(d.to(out_dtype))


# --- what every sampler sets up ----------------------------------------------------------------------
@dataclass
class Chain:
    """The parts every sampler builds before its loop: schedule, data term, denoiser, noise source.

    Attributes:
        sigmas: decreasing noise levels ``[n_steps + 1]`` ending in 0 (:func:`sampling_sigmas`).
        data: the (noise-whitened) data term for ``y``.
        denoise: the prior's denoiser on the operator's (possibly complex) domain.
        shape: the state's shape ``(B, *op.domain_shape)``.
        real_dtype: the real dtype of the state (float32 for complex64 images).
        complex_: whether the state is complex.
        device: where the state lives.
        generator: the only source of randomness.
    """

    sigmas: torch.Tensor
    data: DataTerm
    denoise: DenoiserView
    shape: tuple[int, ...]
    real_dtype: torch.dtype
    complex_: bool
    device: torch.device
    generator: torch.Generator

    @property
    def batch_view(self) -> tuple[int, ...]:
        """Shape that broadcasts a per-item ``[B]`` tensor against the state."""
        return (-1, *([1] * (len(self.shape) - 1)))

    def noise(self, shape: tuple[int, ...] | None = None, complex_: bool | None = None) -> torch.Tensor:
        """Standard normal noise shaped like the state (or ``shape``), from the chain's generator."""
        return randn(self.shape if shape is None else shape, complex_=self.complex_ if complex_ is None else complex_,
                     dtype=self.real_dtype, device=self.device, generator=self.generator)

    def start(self, x_init: torch.Tensor | None) -> torch.Tensor:
        """The first state: ``x_init + sigmas[0] * noise`` (:func:`initial_state`)."""
        return initial_state(float(self.sigmas[0]), self.noise(), x_init)

    def levels(self) -> list[tuple[int, float, float]]:
        """``[(step, sigma, sigma_next)]`` over the schedule."""
        s = [float(v) for v in self.sigmas]
        return [(i, s[i], s[i + 1]) for i in range(len(s) - 1)]


def start_chain(
    prior: Prior, op: LinearOperator, y: torch.Tensor, *, n_levels: int, generator: torch.Generator,
    noise_std: float | torch.Tensor | None, sigma_min: float | None, sigma_max: float | None, rho: float,
    sigmas: torch.Tensor | None,
) -> Chain:
    """Build the :class:`Chain` for sampling ``[B, *op.domain_shape]`` images from ``y`` with ``prior``.

    ``n_levels`` noise levels on the Karras schedule (or the explicit ``sigmas``); raises
    ``ValueError`` when neither gives a level.
    """
    if n_levels < 1 and sigmas is None:
        raise ValueError(f"nfe must be >= 1, got {n_levels}")
    return Chain(
        sigmas=sampling_sigmas(prior, n_levels, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho, sigmas=sigmas),
        data=DataTerm.build(op, y, noise_std),
        denoise=DenoiserView(prior, op.domain_complex),
        shape=(y.shape[0], *op.domain_shape),
        real_dtype=y.real.dtype if y.is_complex() else y.dtype,
        complex_=op.domain_complex,
        device=y.device,
        generator=generator,
    )


@contextmanager
def counting_denoiser_calls(prior: Prior) -> Iterator[list[int]]:
    """Count ``prior.denoise`` calls (network evaluations, whatever the batch) inside the block.

    Yields a one-element list holding the count; the prior is unchanged afterwards.
    """
    count = [0]
    inner = prior.denoise
    own = vars(prior).get("denoise")  # a denoiser set on the instance itself, restored afterwards

    def denoise(x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        count[0] += 1
        return inner(x, sigma)

    prior.denoise = denoise  # an instance attribute shadows the method for this block only
    try:
        yield count
    finally:
        if own is None:
            del prior.denoise
        else:
            prior.denoise = own


def relative_residual(op: LinearOperator, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``||A x - y|| / ||y||`` per item, ``[B]``."""
    return batch_norm(op(x) - y) / batch_norm(y).clamp_min(torch.finfo(torch.float32).tiny)


def noise_residual(op: LinearOperator, x: torch.Tensor, y: torch.Tensor,
                   noise_std: float | torch.Tensor | None) -> torch.Tensor | None:
    """Data misfit in units of the noise, ``sqrt(mean |A x - y|^2 / std^2)`` per item, ``[B]``.

    The ratio of Morozov's discrepancy principle (Morozov 1966): about 1 when ``x`` explains the
    data to the noise level, well above 1 when it does not (a structure the data contradict), below
    1 when it fits the noise. ``noise_std`` in the units of ``y``, a scalar or broadcastable to ``y``
    (complex data: ``sqrt(E|n|^2)``); ``None`` (or 0) for data without a noise model gives ``None``.
    """
    if noise_std is None:
        return None
    std = torch.as_tensor(noise_std, device=y.device, dtype=y.real.dtype if y.is_complex() else y.dtype)
    if std.numel() == 1 and float(std) == 0.0:
        return None
    r2 = (op(x) - y).abs().pow(2) / torch.broadcast_to(std, y.shape).pow(2)
    return r2.reshape(r2.shape[0], -1).mean(dim=1).sqrt()
