"""Multiscale score statistics (Mahmood, Lopez, Fiore and Mayo, ICLR 2021, "Multiscale Score
Matching for Out-of-Distribution Detection", MSMA), with a local channel for medical images.

A noise-conditional score model evaluated on a clean image at several noise levels gives a vector of
score norms; images like the training data give vectors of a typical shape, outliers do not. The
score of an EDM prior follows from its denoiser by Tweedie, ``s(x, sigma) = (D(x, sigma) - x) /
sigma^2``. With ``r_l = D(x, sigma_l) - x`` the features at noise level ``sigma_l`` are

    g_l(x) = log( rms(r_l) / sigma_l )                        (= log sigma_l ||s||_2 / sqrt(N), MSMA)
    m_l(x) = log( max over P x P patches of rms(r_l) / sigma_l )

the score norm in units of the noise level, per pixel, on a log scale (norms are positive and
spread over decades; their logs are near Gaussian, which the reference model in
:mod:`priors.typicality.reference` assumes). ``g`` is MSMA's whole-image norm. ``m`` is added
because what makes a medical slice atypical is often small - a metal implant or a lesion covers
well under 1 % of a slice and vanishes in a whole-image norm; the largest patch norm (patches of
``P = 8`` pixels, overlapping by half) keeps it. No noise is drawn: the features of an image are a
deterministic function of it.

The network runs in bfloat16 (where the device computes it natively, as the samplers do) at the
levels ``sigma >= FP32_BELOW_SIGMA`` and in float32 below: bfloat16 keeps about three significant
digits, and the residual of the smallest levels is the part of the output it would blur.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from priors.base import Prior
from priors.precision import network_precision, resolve_precision

__all__ = ["DEFAULT_SIGMAS", "DEFAULT_PATCH", "FP32_BELOW_SIGMA", "msma_features"]

#: Ten noise levels, log-spaced over the range the bundled priors were trained and validated on
#: (normalised units: the CT window [-1024, 2048] HU and the MR robust maximum are 1).
DEFAULT_SIGMAS: tuple[float, ...] = tuple(float(s) for s in np.geomspace(0.01, 5.0, 10))
#: Side of the patches of the local channel, in pixels of the prior's input.
DEFAULT_PATCH = 8
#: Noise levels below this (normalised units) always run the network in float32.
FP32_BELOW_SIGMA = 0.05

_TINY = 1e-30


@torch.no_grad()
def msma_features(
    prior: Prior, x: torch.Tensor, sigmas: Sequence[float] = DEFAULT_SIGMAS, patch: int = DEFAULT_PATCH,
    precision: str = "auto",
) -> torch.Tensor:
    """Log score norms ``[B, 2L]`` (float64, CPU) of ``x [B, C, H, W]`` (the prior's normalised domain):
    ``[g_1 .. g_L, m_1 .. m_L]`` for the ``L`` noise levels (see the module docstring).

    One denoiser call per noise level on the whole batch. ``precision`` (``"auto"``, ``"fp32"``,
    ``"bf16"``; :func:`priors.precision.resolve_precision`) applies to the levels
    ``sigma >= FP32_BELOW_SIGMA``; the smaller ones run in float32 whatever it says.
    """
    if x.ndim != 4:
        raise ValueError(f"expected images [B, C, H, W], got shape {tuple(x.shape)}")
    k = max(1, min(int(patch), x.shape[-2], x.shape[-1]))
    reduced = resolve_precision(precision, x.device)
    whole, local = [], []
    for sigma in sigmas:
        with network_precision(prior, reduced if sigma >= FP32_BELOW_SIGMA else None):
            r2 = (prior.denoise(x, float(sigma)) - x).to(torch.float64).pow(2).mean(dim=1, keepdim=True)
        patches = F.avg_pool2d(r2, k, stride=max(1, k // 2)).flatten(1).amax(dim=1)
        whole.append(torch.log(r2.mean(dim=(1, 2, 3)).sqrt().clamp_min(_TINY) / float(sigma)))
        local.append(torch.log(patches.sqrt().clamp_min(_TINY) / float(sigma)))
    return torch.cat([torch.stack(whole, dim=1), torch.stack(local, dim=1)], dim=1).cpu()
