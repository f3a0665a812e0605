"""The ``"cuda"`` backend: ASTRA's ``FP_CUDA``/``BP_CUDA`` algorithms.

These are not exact transposes of each other (ray-driven forward projection against pixel-driven
interpolating backprojection), so this backend is fast but fails the float64 dot test; the
operator's projector type does not apply to it. Data pass through host memory in float32.
"""

from __future__ import annotations

from operators.radon.astra_algorithms import AstraAlgorithmBackend
from operators.radon.astra_setup import astra_cuda_available
from operators.radon.backend import register_backend

__all__ = ["AstraCudaBackend"]


@register_backend("cuda")
class AstraCudaBackend(AstraAlgorithmBackend):
    """ASTRA ``FP_CUDA``/``BP_CUDA``, one slice at a time on one set of GPU objects."""

    cuda = True

    @classmethod
    def available(cls) -> bool:
        return astra_cuda_available()
