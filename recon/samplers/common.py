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
* Measurement noise enters through :class:`DataTerm`: with a noise standard deviation (scalar or
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

from operators import MU_WATER_PER_MM, LinearOperator, WrappedOperator
from priors.base import Prior
from priors.schedules import karras_sigmas
from recon.linalg import batch_norm, conjugate_gradient, z_laplacian

__all__ = [
    "Chain",
    "DataTerm",
    "DenoiserView",
    "WhitenedOperator",
    "ancestral_step",
    "counting_denoiser_calls",
    "default_sigma_range",
    "karras_sigmas",
    "randn",
    "relative_residual",
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


# --- data term -----------------------------------------------------------------------------------------
class WhitenedOperator(WrappedOperator):
    """``W^{1/2} A`` with ``W = diag(1 / std^2)``: unit-variance noise in its range.

    ``inv_std`` broadcasts against ``[B, *range_shape]``.
    """

    def __init__(self, op: LinearOperator, inv_std: torch.Tensor):
        super().__init__(op)
        self.inv_std = inv_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x) * self.inv_std

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.op.adjoint(y * self.inv_std)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.adjoint(self.op(x) * self.inv_std**2)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return self.op.pinv(y / self.inv_std)


@dataclass
class DataTerm:
    """The data-fidelity term ``0.5 * ||W^{1/2} (y - A x)||^2`` of one batch of problems.

    Attributes:
        op: the (normalised) forward operator ``A``.
        y: measurements ``[B, *op.range_shape]`` (normalised).
        inv_std: ``None`` for noise-free data (unweighted least squares), else the inverse noise
            standard deviation per real component, broadcast against ``y``.
    """

    op: LinearOperator
    y: torch.Tensor
    inv_std: torch.Tensor | None = None

    @classmethod
    def build(cls, op: LinearOperator, y: torch.Tensor, noise_std: float | torch.Tensor | None) -> DataTerm:
        """``noise_std``: ``None`` / 0 (noise-free), a scalar, or a tensor broadcastable to ``y``
        (per-measurement standard deviation, e.g. ``sqrt(exp(p) / I0)`` for CT line integrals
        ``p`` at ``I0`` photons). Same units as ``y``. For complex data it is ``sqrt(E|n|^2)``
        (circular noise, ``operators.noise.complex_gaussian_noise``'s convention), so each of the
        real and imaginary parts has standard deviation ``noise_std / sqrt(2)``; :attr:`inv_std`
        holds the inverse per-component standard deviation, so whitened residuals have unit
        variance per real component."""
        if noise_std is None:
            return cls(op, y, None)
        std = torch.as_tensor(noise_std, device=y.device)
        std = std.to(y.real.dtype if y.is_complex() else y.dtype)
        if std.numel() == 1 and float(std) == 0.0:
            return cls(op, y, None)
        if not bool((std > 0).all()) or not bool(torch.isfinite(std).all()):
            raise ValueError("noise_std must be positive and finite (or None for noise-free data)")
        try:
            torch.broadcast_shapes(std.shape, y.shape)
        except RuntimeError as e:
            raise ValueError(f"noise_std of shape {tuple(std.shape)} does not broadcast to y {tuple(y.shape)}") from e
        comp = std / math.sqrt(2.0) if y.is_complex() else std
        return cls(op, y, 1.0 / comp)

    @property
    def noisy(self) -> bool:
        return self.inv_std is not None

    @property
    def weighted_op(self) -> LinearOperator:
        """``W^{1/2} A`` (``A`` itself for noise-free data)."""
        return self.op if self.inv_std is None else WhitenedOperator(self.op, self.inv_std)

    @property
    def weighted_y(self) -> torch.Tensor:
        return self.y if self.inv_std is None else self.y * self.inv_std

    def residual(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``y - A x`` (unweighted)."""
        return (self.y if y is None else y) - self.op(x)

    def solve(
        self,
        x0: torch.Tensor,
        *,
        gamma: float | torch.Tensor = 0.0,
        n_iter: int = 5,
        y: torch.Tensor | None = None,
        tol: float | None = None,
        z_precision: float = 0.0,
        z_slices: int | None = None,
    ) -> torch.Tensor:
        """A few CG iterations on ``(A^H W A + gamma I + rho D_z^T D_z) x = A^H W y + gamma x0``,
        started at ``x0``.

        This minimises ``0.5 ||W^{1/2}(y - A x)||^2 + 0.5 gamma ||x - x0||^2 + 0.5 rho ||D_z x||^2``.
        With ``gamma = rho = 0`` it is CG on the normal equations from ``x0``: each iteration adds one
        Krylov direction of the data misfit to ``x0`` and, run to convergence, returns the
        data-consistent image closest to ``x0``. ``y`` replaces the stored data (e.g. a noised copy),
        in the same units.

        ``z_precision`` (``rho``) couples neighbouring slices: the batch is read as volumes of
        ``z_slices`` contiguous slices (default: the whole batch is one volume) and ``D_z`` is the
        slice-to-slice difference within each volume (:func:`recon.linalg.z_laplacian`); ``rho`` is
        the precision of a Gaussian prior on those differences (normalised units). CG then runs
        per volume, not per slice.
        """
        A = self.weighted_op
        yy = self.y if y is None else y
        yw = yy if self.inv_std is None else yy * self.inv_std
        rhs = A.adjoint(yw)
        g = gamma if isinstance(gamma, torch.Tensor) else float(gamma)
        no_gamma = isinstance(g, float) and g == 0.0
        if not no_gamma:
            rhs = rhs + g * x0
        if z_precision <= 0.0:
            return conjugate_gradient(A.normal if no_gamma else (lambda v: A.normal(v) + g * v), rhs, x0, n_iter, tol)
        n = x0.shape[0] if z_slices is None else int(z_slices)
        if n < 1 or x0.shape[0] % n:
            raise ValueError(f"z_slices={n} does not divide the batch of {x0.shape[0]} slices")
        stack = (x0.shape[0] // n, n, *x0.shape[1:])
        rho = float(z_precision)

        def normal(v: torch.Tensor) -> torch.Tensor:  # v: [V, n, ...]
            flat = v.reshape(x0.shape)
            out = A.normal(flat) if no_gamma else A.normal(flat) + g * flat
            return out.reshape(stack) + rho * z_laplacian(v)

        return conjugate_gradient(normal, rhs.reshape(stack), x0.reshape(stack), n_iter, tol).reshape(x0.shape)


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


# --- physical <-> normalised composition -------------------------------------------------------------
@dataclass
class NormalizedProblem:
    """A measurement expressed for a sampler working in the prior's normalised domain.

    For an operator image ``u`` (operator units: attenuation in 1/mm for CT, complex image for MR,
    the prior's physical unit otherwise) and a normalised image ``x``:
    ``u = offset + scale_b * x``. Then ``A u = y`` iff ``A x = (y - A(offset * 1)) / scale_b =: y_norm``,
    so the sampler uses the operator unchanged and the normalised data ``y``; the noise standard
    deviation is divided by ``scale_b`` too. Dividing the data instead of scaling the operator allows
    a different scale per slice (percentile-normalised MR) with one operator.

    Attributes:
        op: the operator (unchanged).
        y: ``[B, *range]`` normalised measurements.
        noise_std: noise std in normalised measurement units (``None``: noise-free).
        scale: ``[B]`` per-item scale (operator units per normalised unit).
        offset: operator-domain offset (float).
        phys_scale, phys_offset: prior physical unit from the normalised image:
            ``physical = phys_offset + phys_scale_b * x`` (HU for CT, magnitude units for MR).
        unit: the physical unit's name.
    """

    op: LinearOperator
    y: torch.Tensor
    noise_std: torch.Tensor | float | None
    scale: torch.Tensor
    offset: float
    phys_scale: torch.Tensor
    phys_offset: float
    unit: str

    def _b(self, v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v.to(device=like.device, dtype=like.real.dtype if like.is_complex() else like.dtype).view(
            -1, *([1] * (like.ndim - 1)))

    def to_operator_units(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised image ``[B, ...]`` -> operator units (``mu`` in 1/mm for CT)."""
        return self.offset + self._b(self.scale, x) * x

    def from_operator_units(self, u: torch.Tensor) -> torch.Tensor:
        """Operator-unit image ``[B, ...]`` -> normalised image (inverse of :meth:`to_operator_units`)."""
        return (u - self.offset) / self._b(self.scale, u)

    def to_physical(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised image ``[B, ...]`` -> the prior's physical unit; complex images -> magnitude."""
        if x.is_complex():
            x = x.abs()
        return self.phys_offset + self._b(self.phys_scale, x) * x


def normalize_problem(
    prior: Prior,
    op: LinearOperator,
    y: torch.Tensor,
    noise_std: float | torch.Tensor | None = None,
    *,
    modality: str | None = None,
    scale: float | torch.Tensor | None = None,
) -> NormalizedProblem:
    """Compose the prior's intensity normalisation (``physical = offset + scale * normalised``)
    with the operator.

    * CT (``modality == "ct"``, window normalisation in HU): the operator acts on attenuation
      ``mu = mu_w (1 + HU / 1000)`` in 1/mm, HU = ``low + (high - low) x``, so
      ``mu = mu_w (1 + low/1000) + mu_w (high - low) / 1000 * x``.
    * Window normalisation otherwise: the operator acts on the prior's physical unit directly.
    * Percentile normalisation (MR): the scale of each slice is the prior's percentile of
      ``|op.pinv(y)|`` (the zero-filled, coil-combined image), or ``scale`` when given; offset 0.

    Args:
        y: ``[B, *op.range_shape]`` physical measurements.
        noise_std: scalar or tensor broadcastable to ``y`` (physical measurement units).
    """
    norm = prior.normalization
    b = y.shape[0]
    real_dtype = y.real.dtype if y.is_complex() else y.dtype
    if norm.kind == "window":
        p_scale, p_offset = norm.affine()
        if modality == "ct":
            mu_w = MU_WATER_PER_MM
            s = mu_w * p_scale / 1000.0
            off = mu_w * (1.0 + p_offset / 1000.0)
        else:
            s, off = p_scale, p_offset
        scale_b = torch.full((b,), float(s), dtype=torch.float64)
        phys_b = torch.full((b,), float(p_scale), dtype=torch.float64)
        phys_off = float(p_offset)
        offset = float(off)
    else:
        if scale is not None:
            scale_b = torch.as_tensor(scale, dtype=torch.float64).reshape(-1).expand(b).clone()
        else:
            with torch.no_grad():
                ref = op.pinv(y)
            scale_b = torch.tensor([norm.affine(ref[i])[0] for i in range(b)], dtype=torch.float64)
        phys_b = scale_b.clone()
        phys_off = 0.0
        offset = 0.0
    y_n = y
    if offset != 0.0:
        shape = (1, *op.domain_shape)
        const = torch.full(shape, offset, dtype=real_dtype, device=y.device)
        if op.domain_complex:
            const = const.to(torch.complex64 if real_dtype == torch.float32 else torch.complex128)
        with torch.no_grad():
            y_n = y_n - op(const)
    sb = scale_b.to(device=y.device, dtype=real_dtype).view(-1, *([1] * (y.ndim - 1)))
    y_n = y_n / sb
    ns = None
    if noise_std is not None:
        ns_t = torch.as_tensor(noise_std, device=y.device).to(real_dtype)
        if ns_t.numel() == 1 and float(ns_t) == 0.0:
            ns = None
        else:
            ns = ns_t / sb
    return NormalizedProblem(op, y_n, ns, scale_b, offset, phys_b, phys_off, norm.unit)
