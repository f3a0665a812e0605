"""The ``"cpu"`` backend: ASTRA's CPU ``FP``/``BP`` algorithms.

ASTRA's CPU forward and back projectors walk the same ray/pixel weights of the chosen projector
(``linear``, ``strip``, ``line``), so they are transposes of each other up to float32 rounding and
pass the dot test. Slices of a batch run on parallel threads.
"""

from __future__ import annotations

from operators.radon.astra_algorithms import AstraAlgorithmBackend
from operators.radon.backend import register_backend

__all__ = ["AstraCpuBackend"]


@register_backend("cpu")
class AstraCpuBackend(AstraAlgorithmBackend):
    """ASTRA ``FP``/``BP`` on the CPU with the operator's projector kernel."""

    cuda = False
