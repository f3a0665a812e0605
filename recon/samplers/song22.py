"""Predictor-corrector sampling with measurement-space data consistency.

Song, Shen, Xing, Ermon, "Solving Inverse Problems in Medical Imaging with Score-Based Generative
Models", ICLR 2022, Algorithm 1 (predictor-corrector sampling in which every predictor and corrector
update is followed by the data-consistency step), written over an EDM / Karras-sigma
variance-exploding schedule.

Data consistency (the paper's Sec. 3). At noise level ``sigma`` the measurement is first noised to
that level, ``y_sigma = y + sigma * A z`` (the distribution of ``A x_sigma`` given ``y`` when
``x_sigma = x0 + sigma z``), and the sample is moved towards it with weight ``lambda``. The paper
writes this for ``A = Lambda T`` with ``T`` unitary (a Fourier transform, or the Radon transform in
its Fourier-slice form) as replacing the measured coefficients by ``(1 - lambda) Lambda T x +
lambda y_sigma``. For such ``A`` (orthonormal rows) that is exactly

    x' = x + lambda * A^+ (y_sigma - A x),

and this is the form used here for any linear operator. ``A^+ r`` (the minimum-norm least-squares
correction) is computed by a few CG iterations on the normal equations started at zero, which
converge to ``A^+ r`` for any ``A`` -- unlike ``op.pinv`` (FBP for sparse-view Radon is not a
pseudo-inverse). ``projection="pinv"`` uses ``op.pinv`` instead, which is exact and cheaper for
single-coil Cartesian Fourier.

Noise-aware variant: with a measurement noise std (covariance ``V``) the projection becomes
pathwise (Matheron) conditioning of the current sample on the noisy data,

    d = argmin_d ||V^{-1/2}(y_sigma - n' - A(x + d))||^2 + ||d||^2 / tau^2,
    n' ~ N(0, V),  tau^2 = sigma_data^2 + sigma^2,

(CG on the whitened normal equations plus ``I / tau^2``). ``tau^2`` is the variance of ``x_sigma`` under
an isotropic Gaussian prior of variance ``sigma_data^2``; for such a prior ``x + d`` is an exact draw of
``x_sigma`` conditioned on the data (Matheron's rule). Measurements are weighted by their inverse
variance, and the fresh noise ``n'`` keeps samples from fitting the noise in ``y`` (their residual
stays at the noise level instead of going to zero). As ``V -> 0`` this is the paper's projection.

Budget. The paper used about 2000 network evaluations per slice. From pure noise the sampler needs
hundreds (at 50 NFE the result is still visibly noisy); started from a classical reconstruction
(``reconstruct``'s default warm start) 50 NFE suffice. Measurements:
``benchmarks/sampler-settings.md``.
"""

from __future__ import annotations

import torch

from priors.sampling import StepCallback
from recon.linalg import batch_norm, conjugate_gradient
from recon.samplers.common import start_chain

__all__ = ["sample", "DEFAULTS"]

DEFAULTS = {"lam": 1.0, "snr": 0.16, "corrector_steps": 1, "cg_iters": 5, "rho": 7.0}


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
    lam: float = DEFAULTS["lam"],
    snr: float = DEFAULTS["snr"],
    corrector_steps: int = DEFAULTS["corrector_steps"],
    cg_iters: int = DEFAULTS["cg_iters"],
    projection: str = "cg",
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = DEFAULTS["rho"],
    sigmas: torch.Tensor | None = None,
    x_init: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw one posterior sample per batch item (Song, Shen, Xing, Ermon, ICLR 2022, Algorithm 1).

    Args:
        prior: a :class:`priors.base.Prior`.
        op: linear operator on normalised images ``[B, *op.domain_shape]``.
        y: ``[B, *op.range_shape]`` normalised measurements.
        nfe: network evaluation budget; the number of noise levels is
            ``nfe // (1 + corrector_steps)`` (each level: ``corrector_steps`` Langevin corrector
            updates and one reverse-diffusion predictor update, one evaluation each).
        generator: the only source of randomness.
        noise_std: measurement noise std (normalised units), ``None`` for noise-free data.
        callback: ``callback(step, sigma, x, x0_hat)`` after every noise level.
        lam: the paper's ``lambda`` in [0, 1] (1: hard data consistency).
        snr: Langevin corrector signal-to-noise ratio (step ``2 (snr ||z|| / ||score||)^2``).
        corrector_steps: Langevin steps per level (0 gives a predictor-only sampler).
        cg_iters: CG iterations for ``A^+`` in each data-consistency step.
        projection: ``"cg"`` (default, any operator) or ``"pinv"`` (``op.pinv``).
        sigma_min, sigma_max, rho, sigmas: schedule (defaults 0.005, 20, 7).
        x_init: optional warm start ``[B, *op.domain_shape]`` in normalised units (e.g. a classical
            reconstruction): the chain starts at ``x_init + sigma_max * noise`` instead of pure noise
            (Come-Closer-Diffuse-Faster; :func:`~recon.samplers.common.initial_state`). Pair it with
            a ``sigma_max`` well below the default.

    Returns:
        ``[B, *op.domain_shape]`` sample in the normalised domain.
    """
    if projection not in ("cg", "pinv"):
        raise ValueError(f"projection must be 'cg' or 'pinv', got {projection!r}")
    if corrector_steps < 0:
        raise ValueError(f"corrector_steps must be >= 0, got {corrector_steps}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    n_levels = nfe // (1 + corrector_steps)
    if n_levels < 1 and sigmas is None:
        raise ValueError(f"nfe={nfe} is too small for {corrector_steps} corrector steps per level")
    chain = start_chain(prior, op, y, n_levels=n_levels, generator=generator, noise_std=noise_std,
                        sigma_min=sigma_min, sigma_max=sigma_max, rho=rho, sigmas=sigmas)
    data, noise, bview = chain.data, chain.noise, chain.batch_view
    A = data.weighted_op

    def noise_y() -> torch.Tensor:
        return chain.noise(tuple(y.shape), complex_=y.is_complex())

    def consistency(x: torch.Tensor, sigma: float) -> torch.Tensor:
        """``x + lam * A^+(y_sigma - A x)``, or its noise-aware form (module docstring)."""
        y_s = y if sigma == 0.0 else y + sigma * op(noise())
        r = y_s - op(x)
        if data.noisy:
            # Pathwise (Matheron) conditioning: subtracting a fresh draw of the measurement noise makes
            # the correction draw from the conditional instead of fitting the noise in y.
            rw = r * data.inv_std - noise_y()
            g = 1.0 / (sigma**2 + float(prior.sigma_data) ** 2)
            d = conjugate_gradient(lambda v: A.normal(v) + g * v, A.adjoint(rw), None, cg_iters)
        elif projection == "pinv":
            d = op.pinv(r)
        else:
            d = conjugate_gradient(op.normal, op.adjoint(r), None, cg_iters)
        return x + lam * d

    x = chain.start(x_init)
    for i, s, s_next in chain.levels():
        # Corrector: Langevin MCMC at level s (score_sde ordering: corrector, then predictor).
        for _ in range(corrector_steps):
            score = (chain.denoise(x, s) - x) / s**2
            z = noise()
            step = 2.0 * (snr * batch_norm(z) / batch_norm(score).clamp_min(1e-30)) ** 2
            x = x + step.view(bview) * score + (2.0 * step).sqrt().view(bview) * z
            x = consistency(x, s)
        # Predictor: reverse-diffusion (ancestral VE) step s -> s_next.
        x0_hat = chain.denoise(x, s)
        if s_next == 0.0:
            x = x0_hat
        else:
            score = (x0_hat - x) / s**2
            ds2 = s**2 - s_next**2
            x = x + ds2 * score + ds2**0.5 * noise()
        x = consistency(x, s_next)
        if callback is not None:
            callback(i, s, x, x0_hat)
    return x
