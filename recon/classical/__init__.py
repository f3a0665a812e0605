"""Classical reconstruction baselines, the bar every diffusion result is reported against.

CT (:mod:`recon.classical.ct`): :func:`fbp`, :func:`sirt`, :func:`cgls`, :func:`tv_pdhg`.
MRI (:mod:`recon.classical.mri`): :func:`zero_filled`, :func:`cg_sense`, :func:`cs_tv`.
Shared TV machinery (2D / 3D finite differences, Chambolle-Pock loop): :mod:`recon.classical.tv`.
``tv_pdhg`` and ``cs_tv`` take ``volume=True`` (with ``z_ratio``, or ``slice_spacing_mm`` for CT) to
reconstruct a contiguous stack of slices as one volume with 3D TV.
"""

from recon.classical.ct import cgls, default_tv_weight, fbp, sirt, transmission_weights, tv_pdhg
from recon.classical.mri import cg_sense, cs_tv, zero_filled
from recon.classical.tv import div, grad, grad_norm_sq_bound, pdhg_tv, tv_norm, tv_objective

__all__ = [
    "fbp",
    "sirt",
    "cgls",
    "tv_pdhg",
    "default_tv_weight",
    "transmission_weights",
    "zero_filled",
    "cg_sense",
    "cs_tv",
    "grad",
    "div",
    "grad_norm_sq_bound",
    "tv_norm",
    "tv_objective",
    "pdhg_tv",
]
