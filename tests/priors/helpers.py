"""Small synthetic data and tiny priors shared by the prior tests."""

from __future__ import annotations

import numpy as np
import torch

from priors.datasets import SliceDataset
from priors.edm import EDMPrior
from priors.network import preset
from priors.normalization import CT_WINDOW


def synthetic_ct(n: int = 8, size: int = 32, seed: int = 0) -> list[np.ndarray]:
    """``n`` slices ``[size, size]`` in HU: air background, a water-like disc, a bright 'bone' blob."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = []
    for _ in range(n):
        cx, cy, r = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), rng.uniform(0.2, 0.35)
        img = np.full((size, size), -1000.0, dtype=np.float32)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r**2] = rng.uniform(-50, 60)
        bx, by = cx + rng.uniform(-0.1, 0.1), cy + rng.uniform(-0.1, 0.1)
        img[(xx - bx) ** 2 + (yy - by) ** 2 < (r / 4) ** 2] = 1000.0
        out.append(img)
    return out


def tiny_prior(seed: int = 0, **kw) -> EDMPrior:
    """A tiny untrained prior whose last layer is perturbed so that ``F != 0``."""
    torch.manual_seed(seed)
    prior = EDMPrior(net_config=preset("tiny"), modality="ct", normalization=CT_WINDOW, image_size=32, **kw)
    with torch.no_grad():
        for p in prior.net.conv_out.parameters():
            p.normal_(0, 0.05)
    return prior.eval()


def tiny_dataset(n: int = 8, size: int = 32, patch: int | None = 16, seed: int = 0) -> SliceDataset:
    return SliceDataset(synthetic_ct(n, size + 8, seed), CT_WINDOW, size, patch)
