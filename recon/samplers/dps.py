"""Diffusion Posterior Sampling (DPS).

Chung, Kim, Mccann, Klasky, Ye, "Diffusion Posterior Sampling for General Noisy Inverse Problems",
ICLR 2023, Algorithm 1 (Gaussian noise), written over an EDM / Karras-sigma variance-exploding
discretisation ``x = x0 + sigma * eps`` instead of the paper's DDPM (VP) chain.

Each step: ``x0_hat = D(x, sigma)`` (one network evaluation, with autograd), an ancestral step of the
unconditional sampler from ``x`` towards the next level using ``x0_hat``, and a likelihood step
``- zeta_i grad_x ||y - A x0_hat||^2`` backpropagated through the denoiser, with the paper's step
size ``zeta_i = zeta' / ||y - A x0_hat||`` (Appendix C of the paper).

Two adaptations, both reducing to the paper's rule in its setting:

* Operator scale: the gradient scales with ``||A||`` while the paper's operators (masks, blurs,
  averaging) have ``||A|| ~ 1``; the step is divided by the operator norm (power iteration) so one
  ``zeta'`` serves CT projectors and Fourier operators of any scale.
* Noise-aware: with a measurement noise std the residual is whitened, ``r_w = (y - A x0_hat) / std``,
  and the likelihood step is multiplied by ``max(0, 1 - m / ||r_w||^2)`` where ``m`` is the number of
  real measurement components: the expected ``||r_w||^2`` at the true image. The data stop pulling
  once the residual reaches the noise level (Morozov's discrepancy principle), so noisy data are
  not over-fitted.
"""

from __future__ import annotations

import torch

from priors.sampling import StepCallback
from recon.linalg import batch_norm
from recon.samplers.common import ancestral_step, start_chain

__all__ = ["sample", "DEFAULTS"]

DEFAULTS = {"zeta": 1.0, "eta": 1.0, "rho": 7.0}


def sample(
    prior,
    op,
    y: torch.Tensor,
    *,
    nfe: int = 50,
    generator: torch.Generator,
    noise_std: float | torch.Tensor | None = None,
    callback: StepCallback | None = None,
    zeta: float = DEFAULTS["zeta"],
    eta: float = DEFAULTS["eta"],
    discrepancy: bool = True,
    normalize_by_operator: bool = True,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = DEFAULTS["rho"],
    sigmas: torch.Tensor | None = None,
    x_init: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw one posterior sample per batch item with DPS (Chung et al., ICLR 2023, Algorithm 1).

    Args:
        prior: a :class:`priors.base.Prior`; its denoiser must be differentiable in ``x``.
        op: linear operator on normalised images ``[B, *op.domain_shape]``; autograd through
            ``op.forward`` must equal ``op.adjoint`` (the operator contract).
        y: ``[B, *op.range_shape]`` normalised measurements.
        nfe: network evaluations (each also costs one backward pass) = number of noise levels.
        generator: the only source of randomness.
        noise_std: measurement noise std (scalar or broadcastable to ``y``; for complex data
            ``sqrt(E|n|^2)``, see :meth:`~recon.samplers.data_term.DataTerm.build`). ``None``: noise-free (no discrepancy stop).
        callback: ``callback(step, sigma, x, x0_hat)`` after every step.
        zeta: the paper's ``zeta'`` (step scale; 1.0 as in most of the paper's experiments). Radon
            operators are far worse conditioned than masked Fourier ones, so after the ``||A||``
            normalisation sparse-view CT tolerates a larger step, but a larger one overshoots with
            few NFE and diverges on MR, hence the conservative default
            (``benchmarks/sampler-settings.md``).
        eta: stochasticity of the unconditional step (1 = ancestral, as the paper's DDPM chain).
        discrepancy: apply the noise-level stop described in the module docstring.
        normalize_by_operator: divide the step by ``||A||`` (see the module docstring).
        sigma_min, sigma_max, rho, sigmas: schedule (defaults 0.005, 20, 7).
        x_init: optional warm start ``[B, *op.domain_shape]`` in normalised units (e.g. a classical
            reconstruction): the chain starts at ``x_init + sigma_max * noise`` instead of pure noise
            (Come-Closer-Diffuse-Faster; :func:`~recon.samplers.common.initial_state`). Pair it with
            a ``sigma_max`` well below the default.

    Returns:
        ``[B, *op.domain_shape]`` sample in the normalised domain.
    """
    chain = start_chain(prior, op, y, n_levels=nfe, generator=generator, noise_std=noise_std,
                        sigma_min=sigma_min, sigma_max=sigma_max, rho=rho, sigmas=sigmas)
    data, real_dtype = chain.data, chain.real_dtype
    A = data.weighted_op
    yw = data.weighted_y
    with torch.no_grad():
        a_norm = A.norm(dtype=real_dtype, device=chain.device) if normalize_by_operator else 1.0
        # Expected ||r_w||^2 at the truth: one unit per real measurement component actually taken
        # (unsampled k-space entries are exactly zero in y and in A x, so they are not counted).
        m = (yw != 0).reshape(y.shape[0], -1).sum(dim=1).to(real_dtype)
        if y.is_complex():
            m = 2 * m
    a_norm = max(a_norm, torch.finfo(real_dtype).tiny)

    x = chain.start(x_init)
    for i, s, s_next in chain.levels():
        x_in = x.detach().requires_grad_(True)
        with torch.enable_grad():
            x0_hat = chain.denoise(x_in, s)
            r = yw - A(x0_hat)
            r_norm = batch_norm(r)
            (grad,) = torch.autograd.grad((r_norm**2).sum(), x_in)
        with torch.no_grad():
            x0_hat = x0_hat.detach()
            r_norm = r_norm.detach()
            zeta_i = zeta / (r_norm.clamp_min(torch.finfo(real_dtype).tiny) * a_norm)
            if discrepancy and data.noisy:
                zeta_i = zeta_i * (1.0 - m / r_norm.clamp_min(1e-30) ** 2).clamp_min(0.0)
            if s_next == 0.0:
                x_next = x0_hat
            else:
                down, up = ancestral_step(s, s_next, eta)
                x_next = x0_hat + down * (x - x0_hat) / s
                if up > 0:
                    x_next = x_next + up * chain.noise()
            x = x_next - zeta_i.view(chain.batch_view) * grad
        if callback is not None:
            callback(i, s, x, x0_hat)
    return x.detach()
