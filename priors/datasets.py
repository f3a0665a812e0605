"""2-D slice datasets for prior training, and a patient-level train/validation split.

Slices arrive in physical units (HU for CT, magnitude for MR), are normalised by the prior's
:class:`~priors.normalization.Normalization`, padded to a square and resized once to the training
size, and kept in memory as ``[N, C, S, S]`` float32. Each draw then applies augmentations and a
random ``P x P`` crop (patch-based training, Hu et al. 2024: a fully convolutional prior learned
from patches is applied to whole slices).

Augmentations are deliberately conservative for medical images:

* random left-right flip (p = 0.5): anatomy is near-symmetric and both orientations occur;
* MR only: random global intensity scaling in ``[1 - s, 1 + s]`` (default s = 0.1), because MR
  magnitude has no absolute scale; CT keeps its physical HU scale untouched;
* no up-down flips and no arbitrary rotations by default: axial slices have a fixed
  anterior-posterior orientation and a patient table, and rotations would teach the prior
  anatomy it never sees (and interpolation blur). ``rot90=True`` enables them for experiments.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from priors.normalization import Normalization

__all__ = ["SliceDataset", "split_by_patient", "normalize_slices", "resize_square"]


def split_by_patient(patient_ids: Sequence[str], val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split slice indices so that no patient is in both parts.

    Args:
        patient_ids: one id per slice.
        val_fraction: fraction of *patients* held back (rounded; at least one when > 0 and there
            are at least two patients; never all of them).
        seed: the permutation of patients is ``numpy.random.default_rng(seed)`` over sorted ids, so
            the split depends only on the set of ids, the fraction and the seed.

    Returns ``(train_indices, val_indices)``: sorted int64 arrays of slice indices.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ids = np.asarray([str(p) for p in patient_ids])
    patients = np.array(sorted(set(ids.tolist())))
    n_val = int(round(val_fraction * len(patients)))
    if val_fraction > 0 and len(patients) >= 2:
        n_val = min(max(n_val, 1), len(patients) - 1)
    else:
        n_val = 0
    perm = np.random.default_rng(seed).permutation(len(patients))
    val_patients = set(patients[perm[:n_val]].tolist())
    is_val = np.array([p in val_patients for p in ids], dtype=bool)
    return np.flatnonzero(~is_val).astype(np.int64), np.flatnonzero(is_val).astype(np.int64)


def resize_square(img: np.ndarray, size: int, fill: float) -> np.ndarray:
    """Pad ``img [H, W]`` centrally to a square with ``fill`` (keeps the aspect ratio), then resize to
    ``[size, size]`` with anti-aliasing (skimage, bilinear)."""
    from skimage.transform import resize

    h, w = img.shape
    n = max(h, w)
    if h != w:
        out = np.full((n, n), fill, dtype=np.float32)
        out[(n - h) // 2 : (n - h) // 2 + h, (n - w) // 2 : (n - w) // 2 + w] = img
        img = out
    if n == size:
        return img.astype(np.float32, copy=False)
    return resize(img, (size, size), order=1, anti_aliasing=n > size, preserve_range=True).astype(np.float32)


def normalize_slices(
    slices: np.ndarray, normalization: Normalization, volume_ids: Sequence[str] | None = None
) -> np.ndarray:
    """Map ``slices [N, H, W]`` (physical units) into the normalised domain.

    ``"window"`` (CT): affine HU window, clipped to [0, 1] - the prior models the window only.
    ``"percentile"`` (MR): magnitude divided by the ``percentile`` of each *volume* (slices sharing a
    ``volume_id``; every slice its own volume when ``volume_ids`` is ``None``), so relative contrast
    between slices of one scan survives.
    """
    x = np.asarray(slices, dtype=np.float32)
    if normalization.kind == "window":
        scale, offset = normalization.affine()
        return np.clip((x - offset) / scale, 0.0, 1.0).astype(np.float32)
    out = np.empty_like(x)
    vids = np.asarray(volume_ids if volume_ids is not None else [str(i) for i in range(len(x))])
    for v in np.unique(vids):
        sel = vids == v
        scale, _ = normalization.affine(x[sel])
        out[sel] = np.abs(x[sel]) / scale
    return out


class SliceDataset(Dataset):
    """In-memory 2-D slices for prior training.

    Args:
        slices: ``[N, H, W]`` array or a list of ``[H, W]`` arrays (sizes may differ), physical units.
        normalization: the prior's normalisation (CT window / MR percentile).
        size: training slice size ``S`` (every slice is padded to square and resized to ``S x S``).
        patch_size: crop size ``P`` (``None`` or ``S``: whole slices).
        volume_ids: per-slice volume id for MR per-volume normalisation.
        flip_lr: random left-right flips.
        intensity_scale: MR random global scaling half-range (ignored for ``"window"``).
        rot90: random multiples of 90 degrees (off by default, see module docstring).
        generator: source of randomness for ``__getitem__`` (``sample_batch`` takes its own).

    ``dataset[i]`` is an augmented ``[1, P, P]`` float32 tensor; ``dataset.images`` the
    un-augmented full-size ``[N, 1, S, S]`` normalised slices.
    """

    def __init__(
        self,
        slices: np.ndarray | Sequence[np.ndarray],
        normalization: Normalization,
        size: int,
        patch_size: int | None = None,
        *,
        volume_ids: Sequence[str] | None = None,
        flip_lr: bool = True,
        intensity_scale: float = 0.1,
        rot90: bool = False,
        generator: torch.Generator | None = None,
    ):
        if len(slices) == 0:
            raise ValueError("no slices to train on")
        self.normalization = normalization
        self.size = int(size)
        self.patch_size = int(patch_size) if patch_size else self.size
        if self.patch_size > self.size:
            raise ValueError(f"patch size {self.patch_size} exceeds image size {self.size}")
        self.flip_lr = flip_lr
        self.intensity_scale = intensity_scale if normalization.kind == "percentile" else 0.0
        self.rot90 = rot90
        self.generator = generator or torch.Generator().manual_seed(0)
        normed = []
        vids = list(volume_ids) if volume_ids is not None else None
        if normalization.kind == "percentile":
            # Per-volume scale needs all slices of a volume at once; slices may differ in size.
            groups: dict[str, list[int]] = {}
            for i in range(len(slices)):
                groups.setdefault(vids[i] if vids else str(i), []).append(i)
            normed_by_index: dict[int, np.ndarray] = {}
            for idx in groups.values():
                stack = [np.asarray(slices[i], dtype=np.float32) for i in idx]
                scale, _ = normalization.affine(np.concatenate([s.ravel() for s in stack]))
                for i, s in zip(idx, stack, strict=True):
                    normed_by_index[i] = np.abs(s) / scale
            normed = [normed_by_index[i] for i in range(len(slices))]
        else:
            normed = [normalize_slices(np.asarray(s, dtype=np.float32)[None], normalization)[0] for s in slices]
        # Background after normalisation is the window floor (0) for CT and 0 magnitude for MR.
        arr = np.stack([resize_square(s, self.size, 0.0) for s in normed])
        self.images = torch.from_numpy(arr[:, None].copy())

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> SliceDataset:
        """Move the in-memory slices (e.g. to the GPU, so batches never leave it)."""
        self.images = self.images.to(device)
        return self

    def _augment(self, x: torch.Tensor, generator: torch.Generator, crop: int | None = None) -> torch.Tensor:
        """``x [B, 1, S, S]`` -> augmented random crops ``[B, 1, P, P]`` (``P = crop or patch_size``)."""
        b = x.shape[0]
        s, p = self.size, crop or self.patch_size
        if p > s:
            raise ValueError(f"crop size {p} exceeds image size {s}")
        u = torch.rand(b, 4, generator=generator)
        if p < s:
            tops = (u[:, 0] * (s - p + 1)).long().clamp_(max=s - p).tolist()
            lefts = (u[:, 1] * (s - p + 1)).long().clamp_(max=s - p).tolist()
            x = torch.stack([x[i, :, t : t + p, le : le + p] for i, (t, le) in enumerate(zip(tops, lefts, strict=True))])
        if self.flip_lr:
            flip = (u[:, 2] < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if self.rot90:
            k = (u[:, 3] * 4).long().clamp_(max=3).tolist()
            x = torch.stack([torch.rot90(x[i], k[i], dims=(-2, -1)) for i in range(b)])
        if self.intensity_scale > 0:
            scale = 1.0 + (torch.rand(b, generator=generator) * 2 - 1) * self.intensity_scale
            x = x * scale.to(x.device, x.dtype)[:, None, None, None]
        return x

    def __getitem__(self, index: int) -> torch.Tensor:
        return self._augment(self.images[index : index + 1], self.generator)[0]

    def sample_batch(self, batch_size: int, generator: torch.Generator, crop: int | None = None) -> torch.Tensor:
        """A batch ``[B, 1, P, P]`` of augmented crops of uniformly drawn slices (with replacement);
        ``P`` is ``crop`` when given (mixed patch sizes), else the dataset's patch size.

        All randomness comes from ``generator`` (a CPU generator), so a training step is
        reproducible from the generator's state alone.
        """
        idx = torch.randint(len(self), (batch_size,), generator=generator)
        return self._augment(self.images[idx.to(self.images.device)], generator, crop)

