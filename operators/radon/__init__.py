"""2D Radon transforms (parallel and flat-detector fan beam) on the ASTRA Toolbox.

Images ``[B, 1, H, W]`` of attenuation in 1/mm map to sinograms ``[B, 1, n_angles, n_detectors]``
of dimensionless line integrals. Modules, one job each (the layout of ODL's ``odl/tomo/backends``):

- :mod:`~operators.radon.transform`: the operators :class:`ParallelBeam`, :class:`FanBeam` and
  the ``"auto"`` backend policy;
- :mod:`~operators.radon.backend`: the backend interface and the registry by name;
- :mod:`~operators.radon.astra_matrix`, :mod:`~operators.radon.astra_cpu`,
  :mod:`~operators.radon.astra_cuda`: the backends ``"matrix"``, ``"cpu"``, ``"cuda"``
  (sharing :mod:`~operators.radon.astra_setup`, :mod:`~operators.radon.astra_algorithms` and
  :mod:`~operators.radon.threads`);
- :mod:`~operators.radon.autograd`: gradients through the backends (the adjoint);
- :mod:`~operators.radon.fbp`: filtered backprojection, ``pinv``.
"""

# Importing the backend modules registers them; this order is the order of BACKENDS.
from operators.radon import astra_matrix, astra_cpu, astra_cuda  # noqa: F401  # isort: skip
from operators.radon.backend import available_backends, backend_names
from operators.radon.fbp import FBP_FILTERS, ramp_filter
from operators.radon.transform import MATRIX_MAX_BYTES, FanBeam, ParallelBeam, RadonTransform, radon_from_geometry

#: Backend names accepted by the operators.
BACKENDS: tuple[str, ...] = ("auto", *backend_names())

__all__ = [
    "ParallelBeam",
    "FanBeam",
    "RadonTransform",
    "radon_from_geometry",
    "FBP_FILTERS",
    "BACKENDS",
    "available_backends",
    "ramp_filter",
    "MATRIX_MAX_BYTES",
]
