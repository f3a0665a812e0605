"""The interface every Radon backend implements, and the registry that picks one by name.

A backend applies one geometry's projector ``A`` (and its transpose) to torch tensors. It knows
nothing about autograd, validation or FBP: :class:`operators.radon.transform.RadonTransform` does
those and asks :func:`create_backend` for the backend named by the user (or chosen by ``"auto"``).
The layout follows ODL's ``odl/tomo/backends``: one module per backend, registered by name.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TypeVar

import torch

from operators.geometry import FanGeometry, ParallelGeometry

__all__ = ["RadonBackend", "register_backend", "create_backend", "backend_names", "available_backends"]

ProjectionGeometry = ParallelGeometry | FanGeometry


class RadonBackend(abc.ABC):
    """One way of computing ``A x`` and ``A^T y`` for a geometry and an ASTRA projector type.

    Args (of implementations):
        geometry: the acquisition geometry; images ``[B, 1, H, W]``, sinograms
            ``[B, 1, n_angles, n_detectors]``.
        projector_type: ASTRA projector name (``"linear"``, ``"strip"``, ``"line_fanflat"``, ...);
            backends whose kernel is fixed (CUDA) ignore it.
    """

    @classmethod
    def create(cls, geometry: ProjectionGeometry, projector_type: str) -> RadonBackend:
        """A backend for ``geometry``; implementations may share one between operators."""
        return cls(geometry, projector_type)  # type: ignore[call-arg]

    @classmethod
    def available(cls) -> bool:
        """Whether this backend can run on this machine."""
        return True

    @abc.abstractmethod
    def project(self, t: torch.Tensor, adjoint: bool) -> torch.Tensor:
        """``A t`` (``adjoint=False``, ``t`` ``[B, 1, H, W]``) or ``A^T t`` (``t`` ``[B, 1, n_angles, n_det]``).

        ``t`` is validated (shape, float32/float64, finite) and detached by the caller; the result
        has ``t``'s dtype and device.
        """


_B = TypeVar("_B", bound=type[RadonBackend])

_REGISTRY: dict[str, type[RadonBackend]] = {}


def register_backend(name: str) -> Callable[[_B], _B]:
    """Class decorator: make a :class:`RadonBackend` selectable as ``backend=name``."""

    def deco(cls: _B) -> _B:
        if name in _REGISTRY or name == "auto":
            raise ValueError(f"Radon backend name {name!r} is already taken")
        _REGISTRY[name] = cls
        return cls

    return deco


def backend_names() -> tuple[str, ...]:
    """Registered backend names, in registration order (``"auto"`` not included)."""
    return tuple(_REGISTRY)


def available_backends() -> dict[str, bool]:
    """Which backends can run here: ``matrix`` and ``cpu`` always, ``cuda`` when ASTRA has CUDA."""
    return {name: cls.available() for name, cls in _REGISTRY.items()}


def create_backend(name: str, geometry: ProjectionGeometry, projector_type: str) -> RadonBackend:
    """The backend registered as ``name`` for ``geometry`` and ``projector_type``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown Radon backend {name!r}, expected one of {backend_names()}")
    return _REGISTRY[name].create(geometry, projector_type)
