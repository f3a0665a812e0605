"""The prior contract samplers see: a denoiser ``D(x, sigma) -> x0_hat`` (EDM / k-diffusion style).

``score(x, sigma) = (D(x, sigma) - x) / sigma**2`` (Tweedie). Images are ``[B, C, H, W]`` in the
prior's normalised domain; ``sigma`` is a Python float, a 0-d tensor or a tensor of shape ``[B]``.
"""

from __future__ import annotations

import abc
from typing import Any

import torch
from torch import nn

from priors.normalization import Normalization


def sigma_as_batch(sigma: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Broadcast ``sigma`` (float, 0-d or ``[B]``) to shape ``[B, 1, 1, 1]`` in ``x``'s dtype/device."""
    s = torch.as_tensor(sigma, dtype=x.real.dtype if x.is_complex() else x.dtype, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    s = s.reshape(-1)
    if s.shape[0] != x.shape[0]:
        raise ValueError(f"sigma has {s.shape[0]} values for a batch of {x.shape[0]}")
    return s.view(-1, *([1] * (x.ndim - 1)))


class Prior(nn.Module, abc.ABC):
    """A score-based prior over images in a normalised domain.

    Attributes:
        sigma_min, sigma_max: the noise range the prior was trained on.
        sigma_data: the data standard deviation used for preconditioning.
        modality: ``"ct"``, ``"mr"`` or ``"any"``.
        normalization: map between physical units and the normalised domain.
        image_channels: channels ``C`` of the images the prior models.
        denoiser_error_ratio: the denoiser's mean squared error per pixel relative to
            ``r^2 = sigma^2 sigma_data^2 / (sigma^2 + sigma_data^2)``, the error of the optimal
            denoiser for an isotropic Gaussian of variance ``sigma_data^2`` (1 for such a prior,
            and the default). Samplers that weigh the denoised image against the data use it.
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5
    modality: str = "any"
    image_channels: int = 1
    normalization: Normalization = Normalization()
    denoiser_error_ratio: float = 1.0

    @abc.abstractmethod
    def denoise(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Posterior mean ``E[x0 | x]`` for ``x = x0 + sigma * n``; same shape as ``x``."""

    def score(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """``grad log p_sigma(x) = (D(x, sigma) - x) / sigma**2``."""
        s = sigma_as_batch(sigma, x)
        return (self.denoise(x, sigma) - x) / s**2

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable description (architecture, sigma range, normalisation, ...)."""
        return {
            "modality": self.modality,
            "sigma_min": self.sigma_min,
            "sigma_max": self.sigma_max,
            "sigma_data": self.sigma_data,
            "normalization": self.normalization.to_dict(),
        }
