"""The Radon operators: :class:`ParallelBeam` and :class:`FanBeam` on a choice of backends.

Units. Images ``[B, 1, H, W]`` hold linear attenuation coefficients in 1/mm; sinograms
``[B, 1, n_angles, n_detectors]`` (ASTRA's order) hold dimensionless line integrals.

Backends (chosen per call from the tensor's device, or forced with ``backend=``; see each module):
``"matrix"`` (:mod:`operators.radon.astra_matrix`), ``"cpu"`` (:mod:`operators.radon.astra_cpu`),
``"cuda"`` (:mod:`operators.radon.astra_cuda`), and ``"auto"`` (default): CUDA tensors use
``"cuda"`` when ASTRA reports CUDA, else ``"matrix"`` on the GPU; CPU tensors use ``"matrix"`` when
its estimated size is below :data:`MATRIX_MAX_BYTES`, else ``"cpu"``.

Autograd goes through :mod:`operators.radon.autograd`, so the gradient of ``forward`` is the
operator's adjoint and vice versa. ``pinv`` is filtered backprojection (:mod:`operators.radon.fbp`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from operators.base import LinearOperator
from operators.geometry import FanGeometry, ParallelGeometry
from operators.radon.astra_matrix import matrix_bytes_estimate
from operators.radon.astra_setup import astra_cuda_available
from operators.radon.autograd import Backproject, Project
from operators.radon.backend import RadonBackend, available_backends, backend_names, create_backend
from operators.radon.fbp import FBP_FILTERS, fan_fbp, parallel_fbp

__all__ = ["RadonTransform", "ParallelBeam", "FanBeam", "radon_from_geometry", "MATRIX_MAX_BYTES"]

#: ``auto`` uses the sparse matrix on the CPU only while its estimated size stays below this.
MATRIX_MAX_BYTES = int(os.environ.get("RECON_MATRIX_MAX_BYTES", 1 << 30))

_PARALLEL_PROJECTORS = {"line": "line", "strip": "strip", "linear": "linear"}
# ASTRA has no CPU linear-interpolation kernel for fan beams.
_FAN_PROJECTORS = {"line": "line_fanflat", "strip": "strip_fanflat"}


class RadonTransform(LinearOperator):
    """Common machinery of :class:`ParallelBeam` and :class:`FanBeam` (not constructed directly)."""

    modality = "ct"
    geometry: ParallelGeometry | FanGeometry
    _projector_types: dict[str, str] = {}

    def __init__(
        self,
        geometry: ParallelGeometry | FanGeometry,
        projector: str,
        backend: str,
        filter: str,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if projector not in self._projector_types:
            raise ValueError(f"{name}: projector is {projector!r}, expected one of {tuple(self._projector_types)}")
        backends = ("auto", *backend_names())
        if backend not in backends:
            raise ValueError(f"{name}: backend is {backend!r}, expected one of {backends}")
        if backend != "auto" and not available_backends()[backend]:
            raise ValueError(
                f"{name}: backend {backend!r} requested but it cannot run here (available: {available_backends()})"
            )
        if filter not in FBP_FILTERS:
            raise ValueError(f"{name}: filter is {filter!r}, expected one of {FBP_FILTERS}")
        self.geometry = geometry
        self.projector = projector
        self.backend = backend
        self.filter = filter
        h, w = geometry.image_size
        self.domain_shape = (1, h, w)
        self.range_shape = (1, geometry.n_angles, int(geometry.n_detectors))
        self._astra_type = self._projector_types[projector]
        self._backends: dict[str, RadonBackend] = {}
        self._fbp_cache: dict[tuple, Any] = {}

    # backend selection ----------------------------------------------------------------------------
    def matrix_bytes_estimate(self) -> int:
        """Rough size of the sparse matrix (8 bytes per non-zero: float32 value + int32 index)."""
        return matrix_bytes_estimate(self.geometry, self.projector)

    def resolve_backend(self, device: torch.device | str = "cpu") -> str:
        """The backend a tensor on ``device`` is processed with."""
        device = torch.device(device)
        if self.backend != "auto":
            return self.backend
        if device.type == "cuda":
            return "cuda" if astra_cuda_available() else "matrix"
        return "matrix" if self.matrix_bytes_estimate() <= MATRIX_MAX_BYTES else "cpu"

    def _get_backend(self, name: str) -> RadonBackend:
        be = self._backends.get(name)
        if be is None:
            be = create_backend(name, self.geometry, self._astra_type)
            self._backends[name] = be
        return be

    def _validate(self, t: torch.Tensor, what: str) -> None:
        """``LinearOperator._check`` (shape, finiteness) plus dtype, with messages naming the expectation."""
        name = type(self).__name__
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name}: {what} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"{name}: {what} has dtype {t.dtype}, expected torch.float32 or torch.float64")
        shape = self.domain_shape if what == "image" else self.range_shape
        if t.device.type != "cpu":
            self._check(t, shape, what)
            return
        if t.ndim != len(shape) + 1 or tuple(t.shape[1:]) != tuple(shape):
            raise ValueError(f"{name}: {what} has shape {tuple(t.shape)}, expected [B, {', '.join(map(str, shape))}]")
        # numpy's single-threaded check: torch's would wake its OpenMP pool right before ASTRA runs
        if not np.isfinite(t.detach().numpy()).all():
            raise ValueError(f"{name}: {what} contains NaN or inf")

    # LinearOperator ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Line integrals ``[B, 1, n_angles, n_detectors]`` of an attenuation image ``x`` ``[B, 1, H, W]`` (1/mm)."""
        self._validate(x, "image")
        return Project.apply(x, self._get_backend(self.resolve_backend(x.device)))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Backprojection A^T y: ``[B, 1, n_angles, n_detectors]`` -> ``[B, 1, H, W]``."""
        self._validate(y, "measurement")
        return Backproject.apply(y, self._get_backend(self.resolve_backend(y.device)))

    def pinv(self, y: torch.Tensor, filter: str | None = None) -> torch.Tensor:
        """Filtered backprojection of line integrals ``y`` ``[B, 1, n_angles, n_detectors]``.

        Returns attenuation ``[B, 1, H, W]`` in 1/mm (same units as the image ``forward`` was given).
        ``filter`` overrides the operator's filter for this call.
        """
        self._validate(y, "measurement")
        filt = self.filter if filter is None else filter
        if filt not in FBP_FILTERS:
            raise ValueError(f"{type(self).__name__}: filter is {filt!r}, expected one of {FBP_FILTERS}")
        return self._fbp(y, filt)

    def _fbp(self, y: torch.Tensor, filt: str) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"geometry={self.geometry}, projector={self.projector!r}, backend={self.backend!r}, filter={self.filter!r}"


def _angles_array(angles: Sequence[float] | np.ndarray | torch.Tensor) -> Sequence[float] | np.ndarray:
    return angles.detach().cpu().numpy() if isinstance(angles, torch.Tensor) else angles


class ParallelBeam(RadonTransform):
    """2D parallel-beam Radon transform.

    Args:
        image_size: ``(H, W)`` pixels (an int means square).
        angles: projection angles in radians (any set: full, sparse-view, limited-angle).
        pixel_size_mm: pixel side in mm.
        n_detectors: detector elements (default: cover the image diagonal).
        detector_spacing_mm: detector element width in mm (default: ``pixel_size_mm``).
        projector: ASTRA CPU kernel: ``"linear"`` (Joseph-style linear interpolation), ``"strip"``
            (area of intersection with the detector strip), ``"line"`` (intersection length).
        backend: ``"auto"``, ``"matrix"``, ``"cpu"`` or ``"cuda"`` (see the module docstring).
        filter: FBP filter used by :meth:`pinv`: one of :data:`FBP_FILTERS`.

    Shapes: ``forward`` ``[B, 1, H, W]`` (1/mm) -> ``[B, 1, n_angles, n_detectors]`` (line integrals).
    """

    _projector_types = _PARALLEL_PROJECTORS
    geometry: ParallelGeometry

    def __init__(
        self,
        image_size: int | Sequence[int],
        angles: Sequence[float] | np.ndarray | torch.Tensor,
        pixel_size_mm: float = 1.0,
        n_detectors: int | None = None,
        detector_spacing_mm: float | None = None,
        projector: str = "linear",
        backend: str = "auto",
        filter: str = "ram-lak",
    ) -> None:
        geometry = ParallelGeometry(
            image_size=image_size,
            angles=_angles_array(angles),
            pixel_size_mm=pixel_size_mm,
            n_detectors=n_detectors,
            detector_spacing_mm=detector_spacing_mm,
        )
        super().__init__(geometry, projector, backend, filter)

    @classmethod
    def from_geometry(cls, geometry: ParallelGeometry, **kwargs: Any) -> ParallelBeam:
        """Operator on ``geometry``; ``kwargs`` are ``projector``, ``backend``, ``filter``."""
        if not isinstance(geometry, ParallelGeometry):
            raise ValueError(f"ParallelBeam.from_geometry: got {type(geometry).__name__}, expected ParallelGeometry")
        g = geometry
        return cls(g.image_size, g.angles_array, g.pixel_size_mm, g.n_detectors, g.detector_spacing_mm, **kwargs)

    def _fbp(self, y: torch.Tensor, filt: str) -> torch.Tensor:
        # The backprojection is A^T; a one-off FBP does not justify building the sparse matrix.
        backend = self.resolve_backend(y.device)
        if backend == "matrix" and y.device.type == "cpu" and "matrix" not in self._backends:
            backend = "cpu"
        be = self._get_backend(backend)
        return parallel_fbp(y, self.geometry, filt, self._fbp_cache, lambda q: be.project(q, adjoint=True))


class FanBeam(RadonTransform):
    """2D fan-beam Radon transform with a flat detector.

    Args:
        image_size: ``(H, W)`` pixels.
        angles: source angles in radians (full scan: ``uniform_angles(n, 2 * pi)``; short scans of at
            least ``pi + 2 * fan_half_angle`` are reconstructed exactly by ``pinv`` via Parker weights).
        source_origin_mm: source to rotation axis (mm).
        origin_detector_mm: rotation axis to detector (mm).
        pixel_size_mm, n_detectors, detector_spacing_mm: see :class:`operators.geometry.FanGeometry`
            (default spacing = pixel size x magnification).
        projector: ``"line"`` or ``"strip"`` (ASTRA has no CPU linear kernel for fan beams).
        backend, filter: as for :class:`ParallelBeam`.
    """

    _projector_types = _FAN_PROJECTORS
    geometry: FanGeometry

    def __init__(
        self,
        image_size: int | Sequence[int],
        angles: Sequence[float] | np.ndarray | torch.Tensor,
        source_origin_mm: float,
        origin_detector_mm: float,
        pixel_size_mm: float = 1.0,
        n_detectors: int | None = None,
        detector_spacing_mm: float | None = None,
        projector: str = "line",
        backend: str = "auto",
        filter: str = "ram-lak",
    ) -> None:
        geometry = FanGeometry(
            image_size=image_size,
            angles=_angles_array(angles),
            source_origin_mm=source_origin_mm,
            origin_detector_mm=origin_detector_mm,
            pixel_size_mm=pixel_size_mm,
            n_detectors=n_detectors,
            detector_spacing_mm=detector_spacing_mm,
        )
        super().__init__(geometry, projector, backend, filter)

    @classmethod
    def from_geometry(cls, geometry: FanGeometry, **kwargs: Any) -> FanBeam:
        """Operator on ``geometry``; ``kwargs`` are ``projector``, ``backend``, ``filter``."""
        if not isinstance(geometry, FanGeometry):
            raise ValueError(f"FanBeam.from_geometry: got {type(geometry).__name__}, expected FanGeometry")
        g = geometry
        return cls(
            g.image_size,
            g.angles_array,
            g.source_origin_mm,
            g.origin_detector_mm,
            g.pixel_size_mm,
            g.n_detectors,
            g.detector_spacing_mm,
            **kwargs,
        )

    def _fbp(self, y: torch.Tensor, filt: str) -> torch.Tensor:
        return fan_fbp(y, self.geometry, filt, self._fbp_cache)


def radon_from_geometry(geometry: ParallelGeometry | FanGeometry, **kwargs: Any) -> RadonTransform:
    """The Radon operator of ``geometry``: :class:`ParallelBeam` or :class:`FanBeam`.

    ``kwargs`` (``projector``, ``backend``, ``filter``) are passed on.
    """
    if isinstance(geometry, ParallelGeometry):
        return ParallelBeam.from_geometry(geometry, **kwargs)
    if isinstance(geometry, FanGeometry):
        return FanBeam.from_geometry(geometry, **kwargs)
    raise ValueError(f"radon_from_geometry: got {type(geometry).__name__}, expected ParallelGeometry or FanGeometry")
