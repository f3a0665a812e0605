"""Multiscale score statistics (Mahmood, Lopez, Fiore and Mayo, ICLR 2021, "Multiscale Score
Matching for Out-of-Distribution Detection", MSMA).

A noise-conditional score model evaluated on a clean image at several noise levels gives a vector of
score norms; images like the training data give vectors of a typical shape, outliers do not. The
score of an EDM prior follows from its denoiser by Tweedie, ``s(x, sigma) = (D(x, sigma) - x) /
sigma^2``, so the feature at noise level ``sigma_l`` is

    f_l(x) = log( sigma_l * ||s(x, sigma_l)||_2 / sqrt(N) ) = log( rms(D(x, sigma_l) - x) / sigma_l ),

``N`` the number of pixels: the score norm in units of the noise level, per pixel, on a log scale
(norms are positive and spread over decades; their logs are near Gaussian, which the reference
model in :mod:`priors.typicality.reference` assumes). No noise is drawn: the features of an image
are a deterministic function of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from priors.base import Prior
from priors.precision import network_precision

__all__ = ["DEFAULT_SIGMAS", "msma_features"]

#: Ten noise levels, log-spaced over the range the bundled priors were trained and validated on
#: (normalised units: the CT window [-1024, 2048] HU and the MR robust maximum are 1).
DEFAULT_SIGMAS: tuple[float, ...] = tuple(float(s) for s in np.geomspace(0.01, 5.0, 10))

_TINY = 1e-30


@torch.no_grad()
def msma_features(prior: Prior, x: torch.Tensor, sigmas: Sequence[float] = DEFAULT_SIGMAS) -> torch.Tensor:
    """Log score norms ``f [B, L]`` (float64) of ``x [B, C, H, W]`` (the prior's normalised domain).

    One denoiser call per noise level on the whole batch, in float32 whatever precision the prior
    is set to, so features and the shipped reference statistics are computed alike.
    """
    if x.ndim != 4:
        raise ValueError(f"expected images [B, C, H, W], got shape {tuple(x.shape)}")
    feats = []
    with network_precision(prior, None):
        for sigma in sigmas:
            r = prior.denoise(x, float(sigma)) - x
            rms = r.to(torch.float64).pow(2).mean(dim=(1, 2, 3)).sqrt()
            feats.append(torch.log(rms.clamp_min(_TINY) / float(sigma)))
    return torch.stack(feats, dim=1).cpu()
