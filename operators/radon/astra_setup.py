"""ASTRA set-up shared by the backends: geometries in ASTRA's terms, CUDA detection, clean-up.

Units: ASTRA is given the physical extent of the image (``pixel_size_mm`` per pixel) and the
detector spacing in mm, so its projection weights are intersection lengths in mm and line
integrals of attenuation in 1/mm come out dimensionless without rescaling.
"""

from __future__ import annotations

import astra
import torch

from operators.geometry import FanGeometry, ParallelGeometry

__all__ = ["astra_geometries", "astra_cuda_available", "free_astra_objects"]


def astra_geometries(geometry: ParallelGeometry | FanGeometry) -> tuple[dict, dict]:
    """ASTRA ``(vol_geom, proj_geom)`` of ``geometry`` (image centred on the rotation axis)."""
    h, w = geometry.image_size
    ps = geometry.pixel_size_mm
    vol = astra.create_vol_geom(h, w, -0.5 * w * ps, 0.5 * w * ps, -0.5 * h * ps, 0.5 * h * ps)
    angles = geometry.angles_array
    if isinstance(geometry, FanGeometry):
        proj = astra.create_proj_geom(
            "fanflat",
            geometry.detector_spacing_mm,
            int(geometry.n_detectors),
            angles,
            geometry.source_origin_mm,
            geometry.origin_detector_mm,
        )
    else:
        proj = astra.create_proj_geom("parallel", geometry.detector_spacing_mm, int(geometry.n_detectors), angles)
    return vol, proj


_ASTRA_CUDA: bool | None = None


def astra_cuda_available() -> bool:
    """Whether ASTRA was built with CUDA and torch sees a GPU (probed once)."""
    global _ASTRA_CUDA
    if _ASTRA_CUDA is None:
        try:
            _ASTRA_CUDA = bool(astra.use_cuda()) and torch.cuda.is_available()
        except Exception:  # an ASTRA build without CUDA raises rather than returning False
            _ASTRA_CUDA = False
    return _ASTRA_CUDA


def free_astra_objects(projectors: list[int], algorithms: list[int], data: list[int]) -> None:
    """Delete ASTRA objects by id; silent, since it runs from finalisers at interpreter exit."""
    try:
        for a in algorithms:
            astra.algorithm.delete(a)
        for d in data:
            astra.data2d.delete(d)
        for p in projectors:
            astra.projector.delete(p)
    except Exception:  # ASTRA may already be torn down
        pass
