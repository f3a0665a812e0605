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
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from priors.base import Prior
from priors.precision import network_precision

__all__ = ["DEFAULT_SIGMAS", "DEFAULT_PATCH", "msma_features"]

#: Ten noise levels, log-spaced over the range the bundled priors were trained and validated on
#: (normalised units: the CT window [-1024, 2048] HU and the MR robust maximum are 1).
DEFAULT_SIGMAS: tuple[float, ...] = tuple(float(s) for s in np.geomspace(0.01, 5.0, 10))
#: Side of the patches of the local channel, in pixels of the prior's input.
DEFAULT_PATCH = 8

_TINY = 1e-30


@torch.no_grad()
def msma_features(
    prior: Prior, x: torch.Tensor, sigmas: Sequence[float] = DEFAULT_SIGMAS, patch: int = DEFAULT_PATCH
) -> torch.Tensor:
    """Log score norms ``[B, 2L]`` (float64, CPU) of ``x [B, C, H, W]`` (the prior's normalised domain):
    ``[g_1 .. g_L, m_1 .. m_L]`` for the ``L`` noise levels (see the module docstring).

    One denoiser call per noise level on the whole batch, in float32 whatever precision the prior
    is set to, so features and the shipped reference statistics are computed alike.
    """
    if x.ndim != 4:
        raise ValueError(f"expected images [B, C, H, W], got shape {tuple(x.shape)}")
    k = max(1, min(int(patch), x.shape[-2], x.shape[-1]))
    whole, local = [], []
    with network_precision(prior, None):
        for sigma in sigmas:
            r2 = (prior.denoise(x, float(sigma)) - x).to(torch.float64).pow(2).mean(dim=1, keepdim=True)
            patches = F.avg_pool2d(r2, k, stride=max(1, k // 2)).flatten(1).amax(dim=1)
            whole.append(torch.log(r2.mean(dim=(1, 2, 3)).sqrt().clamp_min(_TINY) / float(sigma)))
            local.append(torch.log(patches.sqrt().clamp_min(_TINY) / float(sigma)))
    return torch.cat([torch.stack(whole, dim=1), torch.stack(local, dim=1)], dim=1).cpu()
