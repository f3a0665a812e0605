"""Typicality of images under a prior: is this slice like the data the prior was trained on?

Two statistics, both from the prior's denoiser ``D(x, sigma)``:

* ``"msma"`` (default): multiscale score statistic (Mahmood et al., ICLR 2021): log score norms at
  ten noise levels, whole-slice and largest-patch, scored by a Gaussian fitted on the prior's
  held-out validation slices
  (:mod:`priors.typicality.msma`, :mod:`priors.typicality.reference`). Ten network evaluations per
  slice, no gradients.
* ``"ode"``: exact log-likelihood in bits/dim through the probability-flow ODE (Song et al., ICLR
  2021, App. D.2) with a Hutchinson-Skilling trace estimate (:mod:`priors.typicality.likelihood`);
  64 network evaluations with gradients per slice by default.

Scores become p-values (high = typical) and a flag (``p < 0.01``) against reference statistics
shipped beside each prior as ``typicality.json`` (:mod:`priors.typicality.store`).
:func:`score_images` takes images in the prior's physical units (HU for CT, magnitude for MR).
"""

from priors.typicality.api import (
    IN_DISTRIBUTION,
    OUT_OF_DISTRIBUTION,
    TypicalityScores,
    fit_reference,
    score_images,
    statistic,
)
from priors.typicality.inputs import prepare_images
from priors.typicality.likelihood import DEFAULT_ODE_STEPS, ode_bits_per_dim, ode_log_likelihood
from priors.typicality.msma import DEFAULT_PATCH, DEFAULT_SIGMAS, msma_features
from priors.typicality.reference import GaussianModel, TailModel, leave_one_group_out_scores
from priors.typicality.store import (
    DEFAULT_LEVEL,
    DEFAULT_METHOD,
    METHODS,
    REFERENCE_FILE,
    MethodReference,
    TypicalityReference,
    load_reference,
    prior_directory,
    reference_path,
    save_reference,
)

__all__ = [
    "DEFAULT_LEVEL",
    "DEFAULT_METHOD",
    "DEFAULT_ODE_STEPS",
    "DEFAULT_PATCH",
    "DEFAULT_SIGMAS",
    "GaussianModel",
    "IN_DISTRIBUTION",
    "METHODS",
    "MethodReference",
    "OUT_OF_DISTRIBUTION",
    "REFERENCE_FILE",
    "TailModel",
    "TypicalityReference",
    "TypicalityScores",
    "fit_reference",
    "leave_one_group_out_scores",
    "load_reference",
    "msma_features",
    "ode_bits_per_dim",
    "ode_log_likelihood",
    "prepare_images",
    "prior_directory",
    "reference_path",
    "save_reference",
    "score_images",
    "statistic",
]
