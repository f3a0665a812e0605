"""Decomposed Diffusion Sampling (DDS).

Chung, Lee, Ye, "Decomposed Diffusion Sampler for Accelerating Large-Scale Inverse Problems",
ICLR 2024, Algorithm 1, written here in the variance-exploding (EDM / Karras) parametrisation
``x = x0 + sigma * eps``.

At every noise level: denoise (one network evaluation), refine the denoised estimate with a few
conjugate-gradient iterations on the data term started at the denoised estimate (no backpropagation
through the network: CG from ``x0_hat`` stays in the Krylov space of the data misfit around the
denoised image, which the paper argues approximates the tangent space of the clean-data manifold),
then re-noise to the next level with a DDIM-eta step. About 50 NFE suffice.

Noise-aware data consistency. With a measurement noise level the CG step solves the proximal problem

    x0' = argmin_x  0.5 ||(y - A x) / std||^2 + 0.5 / r_t^2 ||x - x0_hat||^2,
    r_t^2 = sigma_t^2 sigma_data^2 / (sigma_t^2 + sigma_data^2),

i.e. CG on ``(A^H W A + I / r_t^2) x = A^H W y + x0_hat / r_t^2`` with ``W = diag(1 / std^2)``.
``r_t^2`` is the variance of ``x0`` given ``x_t`` under an isotropic Gaussian prior of variance
``sigma_data^2``, so the step is the posterior mean of ``x0`` given both the denoised image (treated
as an observation of ``x0`` with error ``r_t``) and the data: measurements are weighted by their
inverse variance (Poisson low-dose rays with few photons count less), and at low noise levels, where
the denoiser is accurate, the data cannot drag the image further than their noise justifies -- low-dose
data are not over-fitted. A trained denoiser is more accurate than the Gaussian one: its error
variance is ``kappa r_t^2`` with ``kappa`` the prior's ``denoiser_error_ratio`` (for an EDM prior
its EDM-weighted validation loss), so the weight is ``1 / (kappa r_t^2)`` (``gamma_scale =
1 / kappa``; the measurements behind this and the other defaults: ``benchmarks/sampler-settings.md``).
For noise-free data (``noise_std=None``) the limit ``W -> inf`` is plain CG on the normal equations
``A^H A x = A^H y`` from ``x0_hat`` (the paper's choice), whose converged solution is the
data-consistent image closest to ``x0_hat``. For an isotropic Gaussian prior both forms give exactly
``E[x0 | x_t, y]``; with ``eps_source="refined"`` the sampler is then a DDIM discretisation of the
exact posterior diffusion (the tests use this).
"""

from __future__ import annotations

import torch

from priors.sampling import StepCallback
from recon.samplers.common import ancestral_step, start_chain, tweedie_variance

__all__ = ["sample", "DEFAULTS"]

#: Defaults for about 50 NFE. More CG iterations fit the data more closely at one ``op.normal`` each
#: per step; 10 is where the gain stops on held-out slices (``benchmarks/sampler-settings.md``).
DEFAULTS = {"eta": 0.85, "cg_iters": 10, "sigma_min": 0.005, "sigma_max": 20.0, "rho": 7.0}


@torch.no_grad()
def sample(
    prior,
    op,
    y: torch.Tensor,
    *,
    nfe: int = 50,
    generator: torch.Generator,
    noise_std: float | torch.Tensor | None = None,
    callback: StepCallback | None = None,
    eta: float = DEFAULTS["eta"],
    cg_iters: int = DEFAULTS["cg_iters"],
    gamma: float | None = None,
    gamma_scale: float | None = None,
    eps_source: str = "network",
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = DEFAULTS["rho"],
    sigmas: torch.Tensor | None = None,
    x_init: torch.Tensor | None = None,
    cg_tol: float | None = None,
    z_precision: float = 0.0,
    z_slices: int | None = None,
) -> torch.Tensor:
    """Draw one posterior sample per batch item with DDS (Chung, Lee, Ye, ICLR 2024, Algorithm 1).

    Args:
        prior: a :class:`priors.base.Prior` (denoiser ``D(x, sigma)`` on ``[B', C, H, W]``).
        op: linear operator mapping normalised images ``[B, *op.domain_shape]`` to ``y``.
        y: ``[B, *op.range_shape]`` measurements in normalised units (see
            :func:`recon.samplers.normalization.normalize_problem`).
        nfe: network evaluations = number of noise levels (one denoiser call per level).
        generator: the only source of randomness.
        noise_std: measurement noise std (scalar or broadcastable to ``y``, normalised units; for complex
            data ``sqrt(E|n|^2)``, see :meth:`~recon.samplers.data_term.DataTerm.build`). ``None``: noise-free data.
        callback: ``callback(step, sigma, x, x0_hat)`` after every step (``x0_hat``: the
            denoiser's estimate before the CG refinement).
        eta: DDIM stochasticity (0 deterministic, 1 ancestral); 0.85 by default.
        cg_iters: CG iterations per step (10 by default; each costs one ``op.normal``).
        gamma: fixed proximal weight instead of the noise-aware ``1 / r_t^2`` (whitened units when
            ``noise_std`` is given); ``None`` chooses automatically (0 for noise-free data).
        gamma_scale: multiplies the automatic weight (> 1 trusts the prior more). ``None``: the inverse
            of the prior's ``denoiser_error_ratio`` (module docstring), 1 for a prior without one.
        eps_source: ``"network"`` (paper: re-noise along the network's noise estimate
            ``(x - x0_hat) / sigma``) or ``"refined"`` (``(x - x0') / sigma``, the noise implied by
            the data-consistent estimate: the exact conditional DDIM step when CG computes
            ``E[x0 | x_t, y]``).
        sigma_min, sigma_max, rho: Karras schedule (defaults 0.005, 20, 7, clipped to the prior's range).
        sigmas: an explicit schedule (overrides the above; ``nfe`` is then its length).
        x_init: optional warm start ``[B, *op.domain_shape]`` in normalised units (e.g. a classical
            reconstruction): the chain starts at ``x_init + sigma_max * noise`` instead of pure noise
            (Come-Closer-Diffuse-Faster; :func:`~recon.samplers.common.initial_state`). Pair it with
            a ``sigma_max`` well below the default.
        cg_tol: optional relative CG tolerance (early exit per item).
        z_precision: couples neighbouring slices in the data-consistency step (DDS for volumes,
            Chung, Lee, Ye 2024, Sec. 4.3, with a quadratic instead of a TV z-penalty): the batch is
            read as volumes of ``z_slices`` contiguous slices (default: one volume) and the CG step
            adds ``0.5 * z_precision * ||D_z x||^2`` (:meth:`~recon.samplers.data_term.DataTerm.solve`).
            0 (default): every slice on its own.
        z_slices: slices per volume when the batch holds several volumes (e.g. one per sample).

    Returns:
        ``[B, *op.domain_shape]`` sample in the normalised domain (complex for complex operators).
    """
    if eps_source not in ("network", "refined"):
        raise ValueError(f"eps_source must be 'network' or 'refined', got {eps_source!r}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    chain = start_chain(prior, op, y, n_levels=nfe, generator=generator, noise_std=noise_std,
                        sigma_min=sigma_min, sigma_max=sigma_max, rho=rho, sigmas=sigmas)
    data = chain.data
    if gamma_scale is None:
        gamma_scale = 1.0 / float(getattr(prior, "denoiser_error_ratio", 1.0))
    x = chain.start(x_init)
    for i, s, s_next in chain.levels():
        x0_hat = chain.denoise(x, s)
        if gamma is not None:
            g = float(gamma)
        elif data.noisy:
            g = float(gamma_scale) / tweedie_variance(s, float(prior.sigma_data))
        else:
            g = 0.0
        x0 = data.solve(x0_hat, gamma=g, n_iter=cg_iters, tol=cg_tol, z_precision=z_precision, z_slices=z_slices)
        if s_next == 0.0:
            x = x0
        else:
            eps = (x - (x0_hat if eps_source == "network" else x0)) / s
            down, up = ancestral_step(s, s_next, eta)
            x = x0 + down * eps
            if up > 0:
                x = x + up * chain.noise()
        if callback is not None:
            callback(i, s, x, x0_hat)
    return x
