"""Unconditional sampling from an EDM prior: the deterministic / stochastic Heun sampler of
Karras et al. 2022 ("Elucidating the Design Space of Diffusion-Based Generative Models", Alg. 2),
and a PNG grid of samples - the way to see what a prior believes.

Each sampler is a plain function over ``prior.denoise(x, sigma)`` and a schedule tensor of sigmas;
all randomness comes from an explicit ``torch.Generator``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from priors.base import Prior
from priors.schedules import karras_sigmas

__all__ = ["StepCallback", "heun_sample", "sample", "sample_grid_png", "to_display", "save_grid_png"]

#: ``callback(step, sigma, x, x0_hat)``, called by every sampler (unconditional here, posterior in
#: :mod:`recon.samplers`) after each step: ``sigma`` is the noise level at which the denoiser
#: produced ``x0_hat``, ``x`` the state after the step; both tensors ``[B, C, H, W]`` in the
#: prior's normalised units.
StepCallback = Callable[[int, float, torch.Tensor, torch.Tensor], None]


@torch.no_grad()
def heun_sample(
    prior: Prior,
    x_init: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """EDM Heun sampler (Karras et al. 2022, Alg. 2).

    Args:
        prior: the denoiser ``D(x, sigma)``.
        x_init: ``[B, C, H, W]`` initial noise already scaled by ``sigmas[0]``.
        sigmas: decreasing schedule ``[n + 1]`` ending in 0 (a trailing 0 is appended if absent).
        generator: randomness for churn (only used when ``churn > 0``).
        churn: ``S_churn``; 0 gives the deterministic probability-flow ODE sampler.
        s_tmin, s_tmax, s_noise: the sigma window for churn and the extra-noise scale.
        callback: :data:`StepCallback` after every step, ``(i, sigma_hat, x, denoised)``.

    Returns ``x`` at sigma 0, ``[B, C, H, W]``. Cost: ``2 n - 1`` denoiser evaluations.
    """
    sig = sigmas.to(torch.float64)
    if sig[-1] != 0:
        sig = torch.cat([sig, sig.new_zeros(1)])
    n = len(sig) - 1
    x = x_init
    for i in range(n):
        s, s_next = float(sig[i]), float(sig[i + 1])
        gamma = min(churn / n, math.sqrt(2.0) - 1.0) if churn > 0 and s_tmin <= s <= s_tmax else 0.0
        s_hat = s * (1.0 + gamma)
        if gamma > 0:
            eps = torch.randn(x.shape, generator=generator, device=generator.device if generator else x.device)
            x = x + math.sqrt(s_hat**2 - s**2) * s_noise * eps.to(x.device, x.dtype)
        denoised = prior.denoise(x, s_hat)
        d = (x - denoised) / s_hat
        x_next = x + (s_next - s_hat) * d
        if s_next > 0:
            # Heun's second-order correction (skipped on the last step to sigma 0, where d is undefined).
            d2 = (x_next - prior.denoise(x_next, s_next)) / s_next
            x_next = x + (s_next - s_hat) * 0.5 * (d + d2)
        x = x_next
        if callback is not None:
            callback(i, s_hat, x, denoised)
    return x


@torch.no_grad()
def sample(
    prior: Prior,
    n: int,
    size: int | tuple[int, int],
    *,
    steps: int = 18,
    generator: torch.Generator | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = 7.0,
    churn: float = 0.0,
    batch_size: int | None = None,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """``n`` unconditional samples ``[n, C, H, W]`` in the prior's normalised domain.

    Karras schedule over ``steps`` sigmas from ``sigma_max`` (default ``min(prior.sigma_max, 80)``)
    to ``sigma_min`` (default ``prior.sigma_min``); batches of ``batch_size`` (default all at once).
    The initial noise is drawn on the generator's device, then moved to the prior's device.
    """
    h, w = (size, size) if isinstance(size, int) else size
    param = next(prior.parameters())
    gen = generator or torch.Generator().manual_seed(0)
    smax = sigma_max if sigma_max is not None else min(prior.sigma_max, 80.0)
    smin = sigma_min if sigma_min is not None else prior.sigma_min
    sigmas = karras_sigmas(steps, smin, smax, rho, append_zero=True)
    noise = torch.randn((n, prior.image_channels, h, w), generator=gen, device=gen.device)
    out = []
    bs = batch_size or n
    for start in range(0, n, bs):
        x0 = (noise[start : start + bs] * smax).to(param.device, param.dtype)
        out.append(heun_sample(prior, x0, sigmas, generator=gen, churn=churn, callback=callback).cpu())
    return torch.cat(out)


def to_display(prior: Prior, x: torch.Tensor, window: tuple[float, float] | None = None) -> np.ndarray:
    """Map normalised samples ``[B, C, H, W]`` to display values in [0, 1] (``[B, H, W]``, channel 0
    or the magnitude of 2 channels).

    CT: back to HU, then the display window (default [-1000, 1000] HU, the window CT figures are reported on).
    MR / others: the normalised magnitude clipped to [0, 1] (or ``window`` in normalised units).
    """
    x = x.detach().float().cpu()
    img = x.norm(dim=1) if x.shape[1] == 2 else x[:, 0]
    norm = prior.normalization
    if norm.kind == "window":
        hu = norm.to_physical(img)
        lo, hi = window or (-1000.0, 1000.0)
        disp = (hu - lo) / (hi - lo)
    else:
        lo, hi = window or (0.0, 1.0)
        disp = (img - lo) / (hi - lo)
    return disp.clamp(0, 1).numpy()


def save_grid_png(images: np.ndarray, path: str | Path, nrow: int | None = None, pad: int = 2) -> Path:
    """Tile ``images [B, H, W]`` in [0, 1] into one 8-bit grayscale PNG (written atomically)."""
    from PIL import Image

    b, h, w = images.shape
    nrow = nrow or int(math.ceil(math.sqrt(b)))
    ncol_rows = int(math.ceil(b / nrow))
    grid = np.ones((ncol_rows * (h + pad) + pad, nrow * (w + pad) + pad), dtype=np.float32)
    for k in range(b):
        r, c = divmod(k, nrow)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = images[k]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(np.round(grid * 255).astype(np.uint8), mode="L").save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


def sample_grid_png(
    prior: Prior,
    n: int,
    path: str | Path,
    size: int | tuple[int, int] | None = None,
    generator: torch.Generator | None = None,
    *,
    steps: int = 18,
    window: tuple[float, float] | None = None,
    batch_size: int | None = None,
    nrow: int | None = None,
) -> Path:
    """Draw ``n`` unconditional samples (EDM Heun, ``steps`` sigmas) and save them as a PNG grid.

    ``size`` defaults to the prior's ``image_size`` (or 64). CT samples are shown in HU through
    ``window`` (default [-1000, 1000]); MR as normalised magnitude.
    """
    size = size or getattr(prior, "image_size", None) or 64
    x = sample(prior, n, size, steps=steps, generator=generator, batch_size=batch_size)
    return save_grid_png(to_display(prior, x, window), path, nrow=nrow)
