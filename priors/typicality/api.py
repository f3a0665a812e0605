"""Score images under a prior against its reference statistics; fit those statistics.

:func:`score_images` is the one call a pipeline needs: images in the prior's physical units in,
per-slice score, p-value and flag out. :func:`fit_reference` builds the reference from a prior's
held-out validation slices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from priors.base import Prior
from priors.checkpoint import versions
from priors.precision import resolve_precision
from priors.typicality.inputs import Images, prepare_images
from priors.typicality.likelihood import DEFAULT_ODE_STEPS, ode_bits_per_dim
from priors.typicality.msma import DEFAULT_PATCH, DEFAULT_SIGMAS, FP32_BELOW_SIGMA, msma_features
from priors.typicality.reference import GaussianModel, TailModel, leave_one_group_out_scores
from priors.typicality.store import DEFAULT_LEVEL, DEFAULT_METHOD, METHODS, MethodReference, TypicalityReference

__all__ = ["TypicalityScores", "score_images", "fit_reference", "statistic", "IN_DISTRIBUTION", "OUT_OF_DISTRIBUTION"]

IN_DISTRIBUTION = "in distribution"
OUT_OF_DISTRIBUTION = "OUT OF DISTRIBUTION"

UNITS = {"msma": "squared Mahalanobis distance of the multiscale score features",
         "ode": "bits/dim (probability-flow ODE, normalised domain)"}
SIDES = {"msma": "upper", "ode": "both"}

Progress = Callable[[int], None]


@dataclass(frozen=True)
class TypicalityScores:
    """Per-slice typicality of ``B`` images.

    Attributes:
        method: ``"msma"`` or ``"ode"``.
        score: ``[B]`` the statistic (MSMA: squared Mahalanobis distance; ODE: bits/dim).
        p_value: ``[B]`` in (0, 1] against the reference; high = typical.
        flag: ``[B]`` bool, True = out of distribution (``p_value < level``).
        level: the flagging level.
        unit: what ``score`` measures.
    """

    method: str
    score: np.ndarray
    p_value: np.ndarray
    flag: np.ndarray
    level: float
    unit: str

    def __len__(self) -> int:
        return int(self.score.shape[0])

    def label(self, i: int) -> str:
        """``"in distribution"`` or ``"OUT OF DISTRIBUTION"`` for slice ``i``."""
        return OUT_OF_DISTRIBUTION if bool(self.flag[i]) else IN_DISTRIBUTION

    def rows(self) -> list[dict[str, Any]]:
        """``[{"index", "score", "p_value", "flag", "label"}]``, JSON-able."""
        return [{"index": i, "score": float(self.score[i]), "p_value": float(self.p_value[i]),
                 "flag": bool(self.flag[i]), "label": self.label(i)} for i in range(len(self))]

    def flagged(self) -> list[int]:
        """Indices of the slices flagged as out of distribution."""
        return [int(i) for i in np.flatnonzero(self.flag)]


def _batched(x: torch.Tensor, batch_size: int, fn: Callable[[torch.Tensor], torch.Tensor],
             progress: Progress | None) -> np.ndarray:
    out = []
    for i in range(0, x.shape[0], batch_size):
        out.append(fn(x[i : i + batch_size]).numpy())
        if progress is not None:
            progress(min(batch_size, x.shape[0] - i))
    return np.concatenate(out)


def statistic(prior: Prior, x: torch.Tensor, method: str, options: dict[str, Any], *, batch_size: int = 4,
              progress: Progress | None = None) -> np.ndarray:
    """The raw per-slice statistic of ``x [B, 1, S, S]`` (normalised domain, see
    :func:`~priors.typicality.inputs.prepare_images`): MSMA features ``[B, L]`` or ODE bits/dim ``[B]``."""
    param = next(iter(prior.parameters()), None)
    if param is not None:
        x = x.to(param.device)
    if method == "msma":
        sigmas = [float(s) for s in options["sigmas"]]
        patch = int(options.get("patch", DEFAULT_PATCH))
        return _batched(x, batch_size, lambda b: msma_features(prior, b, sigmas, patch), progress)
    if method == "ode":
        kw = {"steps": int(options["steps"]), "seed": int(options["seed"]), "probes": int(options["probes"])}
        return _batched(x, batch_size, lambda b: ode_bits_per_dim(prior, b, **kw), progress)
    raise ValueError(f"unknown method {method!r} (known: {', '.join(METHODS)})")


def score_images(
    prior: Prior,
    images: Images,
    reference: TypicalityReference,
    *,
    method: str | None = None,
    level: float | None = None,
    volume_ids: Sequence[str] | None = None,
    batch_size: int = 4,
    progress: Progress | None = None,
) -> TypicalityScores:
    """Typicality of each slice of ``images`` under ``prior``.

    Args:
        prior: the prior the reference was fitted for.
        images: ``B`` slices in the prior's physical units (HU for CT, magnitude for MR): a tensor or
            array ``[B, H, W]`` / ``[B, 1, H, W]`` or a list of ``[H, W]``; prepared as the prior was
            trained (:func:`~priors.typicality.inputs.prepare_images`).
        reference: from :func:`~priors.typicality.store.load_reference`.
        method: ``"msma"`` (the default: multiscale score statistic, Mahmood et al. 2021) or
            ``"ode"`` (probability-flow ODE bits/dim, Song et al. 2021), as fitted in ``reference``.
        level: flag ``p_value < level``; default the reference's (0.01).
        volume_ids: MR: slices sharing an id share one intensity scale (default: each its own).
        batch_size: slices per network call.
        progress: called with the number of slices finished after each batch.

    Returns :class:`TypicalityScores` with ``score``, ``p_value`` and ``flag`` of shape ``[B]``.
    """
    ref = reference.method(method)
    x = prepare_images(prior, images, volume_ids=volume_ids)
    stat = statistic(prior, x, ref.method, ref.options, batch_size=batch_size, progress=progress)
    score = ref.model.distance(stat) if ref.model is not None else np.asarray(stat, dtype=np.float64)
    p = ref.tail.p_values(score)
    lv = reference.level if level is None else float(level)
    return TypicalityScores(method=ref.method, score=score, p_value=p, flag=~(p >= lv), level=lv, unit=ref.unit)


def fit_reference(
    prior: Prior,
    images: Images,
    patient_ids: Sequence[str],
    *,
    methods: Sequence[str] = (DEFAULT_METHOD,),
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    patch: int = DEFAULT_PATCH,
    ode_steps: int = DEFAULT_ODE_STEPS,
    seed: int = 0,
    probes: int = 1,
    level: float = DEFAULT_LEVEL,
    volume_ids: Sequence[str] | None = None,
    batch_size: int = 4,
    progress: Progress | None = None,
    prior_info: dict[str, Any] | None = None,
    data_info: dict[str, Any] | None = None,
) -> TypicalityReference:
    """Reference statistics of ``prior`` from held-out slices ``images`` (physical units).

    ``patient_ids`` (one per slice, never stored) group the slices for leave-one-patient-out
    reference scores (:func:`~priors.typicality.reference.leave_one_group_out_scores`); the MSMA
    Gaussian itself is fitted on all slices. ODE bits/dim are their own reference scores (nothing is
    fitted to them), tested two-sided. ``prior_info`` / ``data_info`` go into the file as they are
    (``weights_sha256``, input folder names, counts): no patient identifiers.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be among {', '.join(METHODS)}, got {list(methods)}")
    x = prepare_images(prior, images, volume_ids=volume_ids)
    pids = [str(p) for p in patient_ids]
    if len(pids) != x.shape[0]:
        raise ValueError(f"{len(pids)} patient ids for {x.shape[0]} images")
    n_patients = len(set(pids))
    fitted: dict[str, MethodReference] = {}
    for m in dict.fromkeys(methods):
        if m == "msma":
            reduced = resolve_precision("auto", next(iter(prior.parameters()), x).device)
            options: dict[str, Any] = {"sigmas": [float(s) for s in sigmas], "patch": int(patch),
                                       "precision": "bf16" if reduced else "fp32", "fp32_below_sigma": FP32_BELOW_SIGMA}
            feats = statistic(prior, x, m, options, batch_size=batch_size, progress=progress)
            model = GaussianModel.fit(feats)
            scores = leave_one_group_out_scores(feats, pids)
            options["reference_scores"] = "leave-one-patient-out" if n_patients > 1 else "in-sample"
        else:
            options = {"steps": int(ode_steps), "seed": int(seed), "probes": int(probes)}
            model = None
            scores = statistic(prior, x, m, options, batch_size=batch_size, progress=progress)
        fitted[m] = MethodReference(method=m, options=options, tail=TailModel.fit(scores, side=SIDES[m]), model=model,
                                    unit=UNITS[m], n_slices=int(x.shape[0]), n_patients=n_patients)
    info = {"modality": prior.modality, "image_size": int(x.shape[-1]), "normalization": prior.normalization.to_dict()}
    info.update(prior_info or {})
    data = {"n_slices": int(x.shape[0]), "n_patients": n_patients}
    data.update(data_info or {})
    return TypicalityReference(methods=fitted, level=float(level), prior=info, data=data, versions=versions(),
                               default_method=DEFAULT_METHOD if DEFAULT_METHOD in fitted else next(iter(fitted)))
