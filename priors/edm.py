"""EDM preconditioning around a noise-conditional network (Karras et al. 2022, "Elucidating the
Design Space of Diffusion-Based Generative Models", Table 1 and Sec. 5).

``D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))`` with

    c_skip = sigma_data^2 / (sigma^2 + sigma_data^2)
    c_out  = sigma * sigma_data / sqrt(sigma^2 + sigma_data^2)
    c_in   = 1 / sqrt(sigma^2 + sigma_data^2)
    c_noise = ln(sigma) / 4

so the network's input and training target have unit variance at every noise level, and
``D(x, sigma) -> x`` as ``sigma -> 0``. The score follows by Tweedie: ``(D - x) / sigma^2``
(Song et al. 2021).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from priors.base import Prior, sigma_as_batch
from priors.network import UNet, UNetConfig
from priors.normalization import Normalization
from priors.precision import autocast

__all__ = ["EDMPrior", "edm_coefficients", "default_max_batch"]

#: Pixels per network call in ``EDMPrior.denoise`` on a CPU when ``max_batch`` is unset (two
#: 256 x 256 slices). A U-Net call on more overflows the CPU's caches and each image then costs
#: more (``benchmarks/bench_denoiser_batch.py``, figures in ``benchmarks/volume.md``).
CPU_MAX_PIXELS = 2 * 256 * 256
#: Images per network call on an accelerator, which needs large batches to be busy; bounded because
#: the U-Net keeps a skip tensor per level for the whole batch.
ACCELERATOR_MAX_BATCH = 16


def default_max_batch(device: torch.device, pixels_per_image: int) -> int:
    """Images per network call when :attr:`EDMPrior.max_batch` is unset, for ``device`` and images
    of ``pixels_per_image`` pixels (at least 1)."""
    if device.type == "cpu":
        return max(1, CPU_MAX_PIXELS // pixels_per_image)
    return ACCELERATOR_MAX_BATCH


def edm_coefficients(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, ...]:
    """``(c_skip, c_out, c_in, c_noise)`` for ``sigma`` of any shape (same shape out)."""
    s2 = sigma**2
    sd2 = sigma_data**2
    c_skip = sd2 / (s2 + sd2)
    c_out = sigma * sigma_data / (s2 + sd2).sqrt()
    c_in = 1.0 / (s2 + sd2).sqrt()
    c_noise = sigma.log() / 4.0
    return c_skip, c_out, c_in, c_noise


class EDMPrior(Prior):
    """A score-based prior: a :class:`~priors.network.UNet` behind EDM preconditioning.

    Args:
        net: the network ``F``; built from ``net_config`` when omitted.
        net_config: architecture, used when ``net`` is ``None``.
        sigma_data: data standard deviation in the normalised domain (0.5 for images in [0, 1]).
        sigma_min, sigma_max: noise range the prior supports (samplers default to it).
        modality: ``"ct"``, ``"mr"`` or ``"any"``.
        normalization: physical units <-> normalised domain (HU window for CT, percentile for MR).
        image_size: the slice size ``H = W`` it was trained for (whole slices; ``None`` if unknown).
        patch_size: the training patch size (``None`` or ``image_size``: trained on whole slices).
        metadata: anything else to keep in the checkpoint config (training, data sources, licences).

    ``denoise(x [B, C, H, W], sigma float | 0-d | [B]) -> [B, C, H, W]``: any ``H, W``; sizes not
    divisible by the network's ``divisor`` are padded by edge replication and cropped back.
    """

    def __init__(
        self,
        net: UNet | None = None,
        *,
        net_config: UNetConfig | None = None,
        sigma_data: float = 0.5,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        modality: str = "any",
        normalization: Normalization | None = None,
        image_size: int | None = None,
        patch_size: int | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        super().__init__()
        # Channels-last weights make oneDNN (CPU) and cuDNN (tensor cores) pick their fast
        # convolution kernels; activations follow the weights' layout. Checkpoints are written
        # contiguous, so files do not depend on it.
        self.net = (net if net is not None else UNet(net_config or UNetConfig())).to(memory_format=torch.channels_last)
        self.sigma_data = float(sigma_data)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        if modality not in ("ct", "mr", "any"):
            raise ValueError(f"modality must be 'ct', 'mr' or 'any', got {modality!r}")
        self.modality = modality
        self.normalization = normalization or Normalization()
        self.image_channels = self.net.config.in_channels
        self.image_size = image_size
        self.patch_size = patch_size
        self.metadata: dict[str, Any] = dict(metadata or {})
        #: Largest batch one network call takes; ``denoise`` splits larger ones. ``None``: the
        #: device's default (:func:`default_max_batch`).
        self.max_batch: int | None = None
        #: dtype the network runs in during ``denoise`` (autocast); ``None``: the weights' dtype.
        #: Set for a block with :func:`priors.precision.network_precision`.
        self.compute_dtype: torch.dtype | None = None

    @property
    def denoiser_error_ratio(self) -> float:
        """The EDM-weighted validation loss recorded at training (1 when none is recorded).

        EDM weights the squared error at ``sigma`` by ``lambda = 1 / r^2`` (``r^2`` as in
        :class:`~priors.base.Prior`), so the weighted loss is exactly the denoiser's error relative to
        ``r^2``; the recorded value averages it over the validation sigmas (0.01-10).
        """
        val = (self.metadata.get("training") or {}).get("val_loss")
        try:
            val = float(val)
        except (TypeError, ValueError):
            return 1.0
        return val if 0.0 < val < float("inf") else 1.0

    @property
    def net_config(self) -> UNetConfig:
        return self.net.config

    def precondition(self, net: torch.nn.Module, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``D`` computed with an explicit network (the trainer passes its DDP-wrapped or EMA copy).

        ``x [B, C, H, W]`` and ``sigma [B, 1, 1, 1]`` in the same dtype; returns ``[B, C, H, W]``.
        """
        c_skip, c_out, c_in, c_noise = edm_coefficients(sigma, self.sigma_data)
        f = net(c_in * x, c_noise.reshape(-1))
        return c_skip * x + c_out * f.to(x.dtype)

    def denoise(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Posterior mean ``E[x0 | x0 + sigma n = x]``; ``x [B, C, H, W]`` in the normalised domain."""
        if x.ndim != 4 or x.shape[1] != self.image_channels:
            raise ValueError(f"expected [B, {self.image_channels}, H, W], got {tuple(x.shape)}")
        param = next(self.net.parameters())
        work = x.to(device=param.device, dtype=param.dtype)
        s = sigma_as_batch(sigma, work)
        h, w = work.shape[-2:]
        d = self.net.config.divisor
        ph, pw = (-h) % d, (-w) % d
        if ph or pw:
            # Edge replication: zero padding would look like an air border to a CT prior.
            work = F.pad(work, (0, pw, 0, ph), mode="replicate")
        step = self.max_batch or default_max_batch(work.device, work.shape[-2] * work.shape[-1])
        with autocast(work.device, self.compute_dtype):
            parts = [self.precondition(self.net, work[i : i + step], s[i : i + step])
                     for i in range(0, work.shape[0], step)]
        out = parts[0] if len(parts) == 1 else torch.cat(parts)
        if ph or pw:
            out = out[..., :h, :w]
        return out.to(device=x.device, dtype=x.dtype)

    @property
    def config(self) -> dict[str, Any]:
        cfg = super().config
        cfg.update(
            {
                "preconditioning": "edm",
                "image_channels": self.image_channels,
                "image_size": self.image_size,
                "patch_size": self.patch_size,
                "architecture": self.net.config.to_dict(),
            }
        )
        return cfg

    def extra_repr(self) -> str:
        return (
            f"modality={self.modality}, sigma=[{self.sigma_min:g}, {self.sigma_max:g}], "
            f"sigma_data={self.sigma_data:g}, params={self.net.num_parameters() / 1e6:.2f}M"
        )

