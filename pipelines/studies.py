"""A measurement directory (sinograms or k-space) turned into operators ready for reconstruction.

``load_study(path)`` recognises a sinogram directory (``geometry.json``) or a k-space directory
(``kspace.json`` or a k-space data file) and returns a :class:`Study`: the measurements as torch
tensors in physical units, one operator per group of slices that share it, the noise model, and
the identity/reference needed to write DICOM back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recon.errors import InputError
from recon.io.kspace_read import SIDECAR as KSPACE_SIDECAR
from recon.io.kspace_read import read_kspace_dir
from recon.io.sinogram_read import measurement_file, read_sinogram_dir
from recon.io.sinogram_sidecar import GEOMETRY_FILE

GROUND_TRUTH_KEY = "ground_truth"

#: What the sinogram reader did to measured projections, carried into the report.
CORRECTION_RECORDS = ("projections", "center_of_rotation", "defects_interpolated", "ring_removal", "units")


@dataclass
class Study:
    """Measurements of ``n`` slices and how to build their forward operator.

    Attributes:
        modality: ``"ct"`` or ``"mr"``.
        measurements: CT float32 ``[n, 1, A, D]`` line integrals; MR complex64 ``[n, C, H, W]``.
        operator_for: ``operator_for(indices) -> LinearOperator`` for a batch of slice indices
            (CT: one shared operator; MR: per-slice mask and coil maps).
        batch_key: slices with equal keys share an operator and may be reconstructed together.
        noise_variance: per-measurement noise variance for noise-aware data consistency
            (``[n, *range]``, CT Poisson: ``exp(p) / I0``), or None when noise-free / unknown.
        slice_names: a label per slice.
        identity / reference: patient/study identity and the reference DICOM directory, if any.
        ground_truth: reference images on the reconstruction grid (HU / magnitude) when the study
            was simulated, else None.
        pixel_spacing_mm: reconstruction pixel spacing (row, col).
        path: the directory.
        slice_spacing_mm: the step between neighbouring slices (mm) when they form one contiguous,
            regularly spaced stack (declared as ``slice_spacing_mm`` in the sidecar, or read from
            the reference series' positions), else None: the slices are then independent.
    """

    modality: str
    measurements: torch.Tensor
    operator_for: Callable[[list[int]], Any]
    batch_key: Callable[[int], Any]
    noise_variance: torch.Tensor | None
    slice_names: list[str]
    identity: dict[str, str] | None
    reference: Path | None
    ground_truth: np.ndarray | None
    pixel_spacing_mm: tuple[float, float]
    path: Path
    description: dict[str, Any] = field(default_factory=dict)
    slice_spacing_mm: float | None = None

    @property
    def n_slices(self) -> int:
        return int(self.measurements.shape[0])

    def batches(self, indices: list[int], batch_size: int) -> Iterator[list[int]]:
        """Consecutive groups of at most ``batch_size`` slices that share an operator."""
        group: list[int] = []
        for i in indices:
            if group and (len(group) >= batch_size or self.batch_key(i) != self.batch_key(group[0])):
                yield group
                group = []
            group.append(i)
        if group:
            yield group


def is_sinogram_dir(path: Path) -> bool:
    return (path / GEOMETRY_FILE).is_file()


def load_study(path: str | Path) -> Study:
    """Read a sinogram or k-space directory, or a scanner file the sinogram reader recognises
    (:func:`recon.io.sinogram_read.measurement_file`: an HTC 2022 ``.mat``, or a directory holding
    one); raises :class:`InputError` naming the problem."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such measurement directory")
    if (path.is_dir() and is_sinogram_dir(path)) or measurement_file(path) is not None:
        return _ct_study(path)  # read_sinogram_dir reads a scanner file itself
    if path.is_dir() and not any(path.iterdir()):
        raise InputError(path, "measurement directory is empty")
    if path.is_dir() and not (path / KSPACE_SIDECAR).exists() and not any(
        p.name.startswith(("kspace", "ksp")) or p.suffix in (".h5", ".hdf5", ".cfl") for p in path.iterdir()
    ):
        raise InputError(path, f"neither {GEOMETRY_FILE} (sinograms) nor {KSPACE_SIDECAR} / k-space data found")
    return _mr_study(path)


#: Slices further apart than this (mm) are not treated as one volume: neighbours share too little.
MAX_VOLUME_SPACING_MM = 5.0


def stack_spacing(declared: Any, reference: Path | None, n_slices: int) -> float | None:
    """The slice step (mm) of a contiguous, regularly spaced stack of ``n_slices``, or None.

    ``declared`` (the sidecar's ``slice_spacing_mm``) wins; otherwise the reference DICOM series
    must hold the same number of slices with known, uniform positions.
    """
    from recon.io.dicom_read import read_series

    if n_slices < 2:
        return None
    if declared is not None:
        spacing = float(declared)
    else:
        if reference is None:
            return None
        try:
            series = read_series(reference)
        except InputError:
            return None  # moved or deleted: no geometry to rely on
        if series.n_slices != n_slices or not series.geometry_known or not series.uniform_spacing:
            return None
        spacing = abs(float(series.slice_spacing_mm or 0.0))
    return spacing if 0.0 < spacing <= MAX_VOLUME_SPACING_MM else None


def _ground_truth(path: Path, extra: dict[str, Any], n: int) -> np.ndarray | None:
    name = extra.get(GROUND_TRUTH_KEY)
    if not name:
        return None
    gt_path = path / name
    if not gt_path.is_file():
        return None
    try:
        gt = np.load(gt_path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(gt_path, f"unreadable ground truth ({e})") from None
    if gt.ndim != 3 or gt.shape[0] != n:
        raise InputError(gt_path, f"ground truth has shape {gt.shape}, expected [{n}, H, W]")
    return gt.astype(np.float32)


def _ct_study(path: Path) -> Study:
    from operators.radon import radon_from_geometry

    study = read_sinogram_dir(path)
    geometry = study.geometry_object()
    op = radon_from_geometry(geometry)
    y = torch.from_numpy(np.ascontiguousarray(study.data))
    variance = None
    i0 = study.acquisition.get("i0")
    noise = study.acquisition.get("noise") or {}
    if i0 is None and isinstance(noise, dict):
        i0 = noise.get("i0")
    if i0:
        from operators.noise import line_integral_noise_variance

        e_std = float(noise.get("electronic_noise_std", 0.0)) if isinstance(noise, dict) else 0.0
        variance = line_integral_noise_variance(y, float(i0), electronic_noise_std=e_std)
    px = float(geometry.pixel_size_mm)
    return Study(
        modality="ct",
        measurements=y,
        operator_for=lambda idx: op,
        batch_key=lambda i: 0,
        noise_variance=variance,
        slice_names=study.slice_names,
        identity=study.identity,
        reference=study.reference,
        ground_truth=_ground_truth(path, study.sidecar, study.n_slices),
        pixel_spacing_mm=(px, px),
        path=path,
        description={"type": geometry.kind, "views": geometry.n_angles, "i0": i0,
                     "hu_calibrated": study.hu_calibrated,
                     **{k: study.acquisition[k] for k in CORRECTION_RECORDS if k in study.acquisition}},
        slice_spacing_mm=stack_spacing(study.sidecar.get("slice_spacing_mm"), study.reference, study.n_slices),
    )


def _mr_study(path: Path) -> Study:
    from operators.coils import estimate_coil_maps
    from operators.fourier import CartesianFourier

    study = read_kspace_dir(path)
    k = torch.from_numpy(np.ascontiguousarray(study.kspace))
    masks = torch.from_numpy(np.ascontiguousarray(study.mask))
    maps = None if study.coil_maps is None else torch.from_numpy(np.ascontiguousarray(study.coil_maps))
    estimated: dict[int, torch.Tensor] = {}

    def coil_maps(i: int) -> torch.Tensor | None:
        if study.n_coils == 1:
            return None
        if maps is not None:
            return maps[i]
        if i not in estimated:
            estimated[i] = estimate_coil_maps(k[i]).to(torch.complex64)
        return estimated[i]

    def operator_for(idx: list[int]) -> CartesianFourier:
        # slices of one batch share the mask (see batch_key); coil maps are per slice
        mask = masks[idx[0]]
        if study.n_coils == 1:
            return CartesianFourier(mask)
        return CartesianFourier(mask, coil_maps=torch.stack([coil_maps(i) for i in idx]))

    # multi-coil slices carry their own coil maps: one slice per batch (its samples form the batch);
    # single-coil slices with the same mask are batched together
    mask_ids: dict[bytes, int] = {}
    if study.n_coils > 1:
        keys = list(range(study.n_slices))
    else:
        keys = [mask_ids.setdefault(masks[i].numpy().tobytes(), len(mask_ids)) for i in range(study.n_slices)]
    variance = None
    noise_std = study.meta.get("noise_std_absolute")
    if noise_std:
        variance = torch.full(k.shape, float(noise_std) ** 2)
    spacing = study.meta.get("pixel_spacing_mm") or [1.0, 1.0]
    root = path if path.is_dir() else path.parent
    return Study(
        modality="mr",
        measurements=k,
        operator_for=operator_for,
        batch_key=lambda i: keys[i],
        noise_variance=variance,
        slice_names=study.slice_names,
        identity=study.identity,
        reference=study.reference,
        ground_truth=_ground_truth(root, study.meta, study.n_slices),
        pixel_spacing_mm=(float(spacing[0]), float(spacing[1])),
        path=root,
        description={"coils": study.n_coils, "acceleration": round(study.acceleration, 3)},
        slice_spacing_mm=stack_spacing(study.meta.get("slice_spacing_mm"), study.reference, study.n_slices),
    )
