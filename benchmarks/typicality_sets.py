"""Image sets for testing typicality scores: what a prior should find typical and what not.

Every builder returns a list of ``[H, W]`` float32 slices in the prior's physical unit (HU for the
CT prior, magnitude for the MR prior). Shared by ``benchmarks/typicality_auroc.py`` and the
typicality tests, so the figures in ``docs/typicality.md`` and the tests score the same images.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "with_metal",
    "as_ct_window",
    "ellipse_phantoms",
    "shepp_logan",
    "noise_slices",
    "crystal_slices",
    "ct_as_magnitude",
    "knee_slices",
    "I13_SIDECAR",
]

#: geometry.json of the Diamond I13-2 scan (its SOURCE.txt): 91 TIFFs, angles 10..100 of angles.txt.
I13_SIDECAR = {"type": "parallel", "image_size": [160, 160], "pixel_size_mm": 1.0, "n_detectors": 160,
               "detector_spacing_mm": 1.0, "angles": {"file": "angles.txt", "skip": 10, "count": 91},
               "angle_unit": "degree", "values": "counts", "projections": "tiffs", "dark": "dark_00001.tiff",
               "flat": "flat_00001.tiff"}
I13_FILES = ("tiffs", "angles.txt", "dark_00001.tiff", "flat_00001.tiff")


def with_metal(slice_hu: np.ndarray, radius_px: float, streaks: bool) -> np.ndarray:
    """Two metal discs (steel, 0.5 / mm) in a slice resampled to 256 x 256 at 1.5 mm; with ``streaks`` the
    slice is what a scanner shows: projected (360 views, 1e6 photons), Poisson counts, FBP. HU ``[256, 256]``."""
    from operators import ParallelBeam, hu_to_mu, mu_to_hu, transmission_noise, uniform_angles
    from priors.datasets import resize_square

    mu = hu_to_mu(resize_square(np.maximum(slice_hu, -1024.0), 256, -1024.0).astype(np.float64)).clip(0)
    yy, xx = np.mgrid[:256, :256]
    for cx in (93, 163):
        mu[(yy - 128) ** 2 + (xx - cx) ** 2 < radius_px**2] = 0.5
    if not streaks:
        return mu_to_hu(mu).astype(np.float32)
    op = ParallelBeam(256, uniform_angles(360), pixel_size_mm=1.5)
    p = op(torch.from_numpy(mu[None, None].astype(np.float32)))
    noisy = transmission_noise(p, 1e6, generator=torch.Generator().manual_seed(0))
    return mu_to_hu(op.pinv(noisy)[0, 0].numpy()).astype(np.float32)


def as_ct_window(image: np.ndarray, low: float = 0.5, high: float = 99.9) -> np.ndarray:
    """Map an image of any unit linearly so its ``low`` / ``high`` percentiles land on -1000 / 1000 HU:
    only its content, not its intensity range, can then tell it from CT."""
    a = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(a, [low, high])
    return ((a - lo) / max(hi - lo, 1e-12) * 2000.0 - 1000.0).astype(np.float32)


def shepp_logan() -> list[np.ndarray]:
    """The Shepp-Logan phantom (scikit-image, 400 x 400) on [-1000, 1000] HU."""
    from skimage.data import shepp_logan_phantom

    return [shepp_logan_phantom().astype(np.float32) * 2000.0 - 1000.0]


def ellipse_phantoms(n: int, size: int = 256, seed: int = 0) -> list[np.ndarray]:
    """``n`` random piecewise-constant ellipse phantoms in HU (an air background, a water-like body,
    5-10 inner ellipses from lung to bone): the test objects of tomography papers."""
    rng = np.random.default_rng(seed)
    yy, xx = (np.mgrid[:size, :size] + 0.5) / size * 2.0 - 1.0
    out = []
    for _ in range(n):
        img = np.full((size, size), -1000.0)
        a, b, th = rng.uniform(0.6, 0.9), rng.uniform(0.45, 0.8), rng.uniform(0, np.pi)
        body = _ellipse(xx, yy, 0.0, 0.0, a, b, th)
        img[body] = rng.uniform(-20, 60)
        for _ in range(rng.integers(5, 11)):
            cx, cy = rng.uniform(-0.5, 0.5, 2) * (a, b)
            m = _ellipse(xx, yy, cx, cy, rng.uniform(0.04, 0.3), rng.uniform(0.04, 0.3), rng.uniform(0, np.pi)) & body
            img[m] = rng.choice([-850.0, -100.0, 40.0, 300.0, 1000.0])
        out.append(img.astype(np.float32))
    return out


def _ellipse(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, a: float, b: float, th: float) -> np.ndarray:
    c, s = np.cos(th), np.sin(th)
    u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def noise_slices(n: int, size: int = 256, std_hu: float = 500.0, seed: int = 0) -> list[np.ndarray]:
    """``n`` slices of white Gaussian noise around 0 HU."""
    rng = np.random.default_rng(seed)
    return [rng.normal(0.0, std_hu, (size, size)).astype(np.float32) for _ in range(n)]


def crystal_slices(i13_dir: Path, n: int) -> list[np.ndarray]:
    """``n`` evenly spaced detector rows of the Diamond I13-2 crystal scan (``ct_raw_synchrotron_i13``):
    raw counts with dark and flat fields, axis estimated, FBP of all 91 projections, attenuation per
    pixel mapped onto the CT window by :func:`as_ct_window` (the data carry no HU calibration)."""
    from operators import geometry_from_dict
    from operators.radon import radon_from_geometry
    from recon.io import read_sinogram_dir

    with tempfile.TemporaryDirectory() as tmp:
        for name in I13_FILES:
            (Path(tmp) / name).symlink_to(Path(i13_dir).resolve() / name)
        (Path(tmp) / "geometry.json").write_text(json.dumps({**I13_SIDECAR, "center_of_rotation": "auto"}))
        study = read_sinogram_dir(tmp)
        op = radon_from_geometry(geometry_from_dict(study.geometry))
        rows = np.linspace(0, study.data.shape[0] - 1, n + 2).round().astype(int)[1:-1]
        fbp = op.pinv(torch.from_numpy(study.data[rows]))[:, 0].numpy()
    return [as_ct_window(s) for s in fbp]


def ct_as_magnitude(slices_hu: list[np.ndarray]) -> list[np.ndarray]:
    """CT slices as an MR magnitude would be: HU + 1024, clipped at 0 (air dark, bone bright)."""
    return [np.maximum(np.asarray(s, dtype=np.float32) + 1024.0, 0.0) for s in slices_hu]


def knee_slices(knee_dir: Path) -> list[np.ndarray]:
    """The fastMRI knee images of ``mr_fastmri_knee_samples``: magnitude ``[320, 320]`` each
    (the ``real/`` reconstructions and the single-coil sample; masks skipped)."""
    files = sorted(p for p in Path(knee_dir).rglob("*.npy") if not p.stem.endswith("_mask"))
    return [np.abs(np.load(p)).astype(np.float32) for p in files]
