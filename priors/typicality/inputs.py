"""Images in a prior's physical units -> the prior's normalised input, as the prior was trained.

The prior saw slices normalised by its :class:`~priors.normalization.Normalization` (CT: HU window
clipped to [0, 1]; MR: magnitude over a robust maximum), padded to a square with the normalised
background 0 and resized to its training size (:func:`priors.datasets.resize_square`). A typicality
score must see images prepared the same way, or it measures the preparation instead of the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from priors.base import Prior
from priors.datasets import normalize_slices, resize_square

__all__ = ["as_slices", "prepare_images"]

Images = torch.Tensor | np.ndarray | Sequence[np.ndarray]


def as_slices(images: Images) -> list[np.ndarray]:
    """``[B, H, W]``, ``[B, 1, H, W]`` (tensor or array) or a list of ``[H, W]`` -> list of float32 ``[H, W]``.

    Complex images become their magnitude.
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu()
        images = (images.abs() if images.is_complex() else images).numpy()
    if isinstance(images, np.ndarray):
        arr = np.abs(images) if np.iscomplexobj(images) else images
        if arr.ndim == 4 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise ValueError(f"expected images [B, H, W] or [B, 1, H, W], got shape {tuple(images.shape)}")
        return [np.asarray(a, dtype=np.float32) for a in arr]
    out = []
    for a in images:
        a = np.abs(a) if np.iscomplexobj(a) else np.asarray(a)
        if a.ndim != 2:
            raise ValueError(f"expected [H, W] slices, got shape {a.shape}")
        out.append(a.astype(np.float32))
    return out


def prepare_images(
    prior: Prior, images: Images, *, volume_ids: Sequence[str] | None = None, size: int | None = None
) -> torch.Tensor:
    """The prior's input ``[B, 1, S, S]`` float32 (normalised domain) for images in physical units.

    Args:
        prior: its ``normalization`` and ``image_size`` (``S``) are used.
        images: ``B`` slices in the prior's physical unit (HU for CT, magnitude for MR), any ``H, W``.
        volume_ids: MR only: slices sharing an id share one percentile scale. The default, every
            slice its own scale, is what reconstruction uses (``recon.samplers.common``).
        size: ``S``; default ``prior.image_size`` (the slice size kept as is when the prior has none).
    """
    slices = as_slices(images)
    if not slices:
        raise ValueError("no images to score")
    vids = [str(v) for v in volume_ids] if volume_ids is not None else [str(i) for i in range(len(slices))]
    if len(vids) != len(slices):
        raise ValueError(f"{len(vids)} volume ids for {len(slices)} images")
    normed: list[np.ndarray] = [np.abs(s) for s in slices]  # all-zero MR volumes have no scale: kept as 0
    lit = {v for v, s in zip(vids, slices, strict=True) if s.any()}
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, s in enumerate(slices):
        if prior.normalization.kind == "window" or vids[i] in lit:
            by_shape.setdefault(s.shape, []).append(i)
    for idx in by_shape.values():
        stack = normalize_slices(np.stack([slices[i] for i in idx]), prior.normalization, [vids[i] for i in idx])
        for k, i in enumerate(idx):
            normed[i] = stack[k]
    target = size or getattr(prior, "image_size", None)
    out = [resize_square(s, int(target), 0.0) if target else s for s in normed]
    shapes = {s.shape for s in out}
    if len(shapes) > 1:
        raise ValueError(f"slices of different sizes {sorted(shapes)} need a prior with an image_size (or size=)")
    return torch.from_numpy(np.stack(out)[:, None].copy())
