"""Synthetic raw projection data: a small phantom projected with the project's Radon operator."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from operators.geometry import ParallelGeometry
from operators.radon import radon_from_geometry

N_ANGLES, N_DET, SIZE, ROWS = 90, 64, 48, 3


def geometry_dict(n_angles: int = N_ANGLES, n_det: int = N_DET, size: int = SIZE) -> dict:
    return {"type": "parallel", "image_size": [size, size], "pixel_size_mm": 1.0,
            "angles": {"start": 0.0, "stop": math.pi, "count": n_angles},
            "n_detectors": n_det, "detector_spacing_mm": 1.0}


def phantom(rows: int = ROWS, size: int = SIZE) -> np.ndarray:
    """``[rows, size, size]`` attenuation (1/mm): an off-centre disc with small inserts, one per row.

    Lengths scale with ``size`` (48 by default); attenuation scales as ``48 / size`` so the line
    integrals stay the same.
    """
    y, x = (np.mgrid[:size, :size] - (size - 1) / 2) * (SIZE / size)
    out = []
    for r in range(rows):
        img = 0.02 * ((x - 3) ** 2 + (y + 2) ** 2 < 16 ** 2)
        img += 0.03 * ((x + 6 - r) ** 2 + (y - 4) ** 2 < 4 ** 2)
        img += 0.04 * (np.abs(x - 8) < 2) * (np.abs(y + r) < 5)
        out.append(img * SIZE / size)
    return np.stack(out).astype(np.float32)


def _operator(n_angles: int, n_det: int, size: int):  # noqa: ANN202 - a RadonTransform
    return radon_from_geometry(ParallelGeometry.from_dict({**geometry_dict(n_angles, n_det, size),
                                                           "angles": list(np.arange(n_angles) * math.pi / n_angles)}))


def line_integrals(images: np.ndarray, n_angles: int = N_ANGLES, n_det: int = N_DET) -> np.ndarray:
    """``[rows, A, D]`` line integrals of ``images`` ``[rows, H, W]``."""
    op = _operator(n_angles, n_det, images.shape[-1])
    return op(torch.from_numpy(images)[:, None]).numpy()[:, 0].astype(np.float64)


def fbp(sino: np.ndarray, size: int = SIZE) -> np.ndarray:
    """FBP ``[rows, size, size]`` of sinograms ``[rows, A, D]`` over [0, pi)."""
    op = _operator(sino.shape[1], sino.shape[2], size)
    return op.pinv(torch.from_numpy(np.ascontiguousarray(sino, dtype=np.float32))[:, None]).numpy()[:, 0]


def shift_detector(sino: np.ndarray, offset: float) -> np.ndarray:
    """Move the rotation axis ``offset`` pixels along the detector (exact Fourier shift of each row)."""
    d = sino.shape[-1]
    pad = np.pad(sino, [(0, 0)] * (sino.ndim - 1) + [(d, d)], mode="edge")
    f = np.fft.fftfreq(pad.shape[-1])
    out = np.fft.ifft(np.fft.fft(pad, axis=-1) * np.exp(-2j * np.pi * f * offset), axis=-1).real
    return out[..., d:-d]


def counts(p: np.ndarray, flat: np.ndarray, dark: np.ndarray) -> np.ndarray:
    """Projection counts ``[A, rows, D]`` from line integrals ``[rows, A, D]`` and fields ``[rows, D]`` or ``[A, rows, D]``."""
    pa = p.transpose(1, 0, 2)
    return (flat - dark) * np.exp(-pa) + dark


def fields(rows: int = ROWS) -> tuple[np.ndarray, np.ndarray]:
    """``(flat, dark)`` ``[rows, D]`` with a detector-dependent gain."""
    rng = np.random.default_rng(1)
    flat = 20000.0 + 2000.0 * rng.random((rows, N_DET))
    dark = 100.0 + 5.0 * rng.random((rows, N_DET))
    return flat, dark


def write_sidecar(root: Path, **fields_: object) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "geometry.json").write_text(json.dumps({**geometry_dict(), "values": "counts", **fields_}))
