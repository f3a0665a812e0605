"""Reference statistics: what typical scores look like, so a new score becomes a p-value.

Two pieces, both fitted on a prior's held-out validation slices:

* :class:`GaussianModel`: a Gaussian over MSMA feature vectors (Mahmood et al., ICLR 2021, fit a
  density to the training features - a Gaussian mixture there; one Gaussian here, because the
  reference sets hold tens to hundreds of slices of a few patients, too few to place mixture
  components honestly). The covariance is shrunk towards a scaled identity by the Ledoit-Wolf rule
  (Ledoit and Wolf 2004, "A well-conditioned estimator for large-dimensional covariance
  matrices"): the ten features are strongly correlated and the plain sample covariance of a few
  dozen vectors is near singular. The score of a feature vector is its squared Mahalanobis
  distance from the mean (dimensionless; high = atypical).
* :class:`TailModel`: the distribution of reference scores. A p-value is the empirical tail
  probability ``(1 + #{r_i >= s}) / (n + 1)`` (high = typical); beyond the reference's upper
  quantile ``u`` the tail is an exponential fitted to the exceedances over ``u``
  (peaks over threshold with a zero-shape generalised Pareto; the squared Mahalanobis distance of a
  Gaussian has an exponential tail), so p-values below ``1 / (n + 1)`` - a flag at ``p < 0.01``
  with 50 reference slices - are still defined. ``side="both"`` makes the test two-sided
  (too typical is also atypical: likelihoods, Nalisnick et al., ICLR 2019).

Reference scores come from leave-one-patient-out fits (:func:`leave_one_group_out_scores`): each
patient's slices are scored by a model fitted without that patient, as a new patient's would be.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["GaussianModel", "TailModel", "leave_one_group_out_scores"]


def ledoit_wolf(features: np.ndarray) -> tuple[np.ndarray, float]:
    """``(covariance [L, L], shrinkage)`` of ``features [n, L]`` by Ledoit and Wolf (2004).

    ``(1 - a) S + a (tr S / L) I`` with ``S`` the maximum-likelihood covariance and ``a`` in [0, 1]
    the estimated optimal shrinkage; ``a = 1`` for a single vector.
    """
    x = np.asarray(features, dtype=np.float64)
    n, dim = x.shape
    xc = x - x.mean(axis=0)
    s = xc.T @ xc / n
    mu = float(np.trace(s)) / dim
    target = mu * np.eye(dim)
    delta = float(((s - target) ** 2).sum())
    if n < 2 or delta <= 0.0:
        return target if mu > 0 else np.eye(dim), 1.0
    beta = float(sum(((np.outer(v, v) - s) ** 2).sum() for v in xc)) / n**2
    a = min(beta, delta) / delta
    return (1.0 - a) * s + a * target, a


@dataclass(frozen=True)
class GaussianModel:
    """``N(mean, covariance)`` over feature vectors, stored by its precision (inverse covariance).

    Attributes:
        mean: ``[L]``.
        precision: ``[L, L]`` symmetric positive definite.
        shrinkage: the Ledoit-Wolf weight of the identity target (0: sample covariance).
    """

    mean: np.ndarray
    precision: np.ndarray
    shrinkage: float

    @classmethod
    def fit(cls, features: np.ndarray) -> GaussianModel:
        """Fit to ``features [n, L]`` (``n >= 1``)."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 1 or not np.isfinite(x).all():
            raise ValueError(f"need finite features [n >= 1, L], got shape {x.shape}")
        cov, a = ledoit_wolf(x)
        cov = cov + 1e-9 * max(float(np.trace(cov)) / cov.shape[0], 1e-12) * np.eye(cov.shape[0])
        return cls(mean=x.mean(axis=0), precision=np.linalg.inv(cov), shrinkage=float(a))

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distances ``[B]`` of ``features [B, L]``."""
        d = np.asarray(features, dtype=np.float64) - self.mean
        return np.einsum("bi,ij,bj->b", d, self.precision, d)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "gaussian", "covariance": "ledoit-wolf", "shrinkage": self.shrinkage,
                "mean": self.mean.tolist(), "precision": self.precision.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GaussianModel:
        mean = np.asarray(d["mean"], dtype=np.float64)
        precision = np.asarray(d["precision"], dtype=np.float64)
        if mean.ndim != 1 or precision.shape != (mean.size, mean.size):
            raise ValueError(f"gaussian model: mean {mean.shape} and precision {precision.shape} do not fit")
        return cls(mean=mean, precision=precision, shrinkage=float(d.get("shrinkage", 0.0)))


def leave_one_group_out_scores(features: np.ndarray, groups: Sequence[str]) -> np.ndarray:
    """Squared Mahalanobis distance ``[n]`` of each row of ``features [n, L]`` under a
    :class:`GaussianModel` fitted without its group (patient). With a single group the model is
    fitted on all rows (in-sample scores, optimistic)."""
    x = np.asarray(features, dtype=np.float64)
    g = np.asarray([str(v) for v in groups])
    if g.shape[0] != x.shape[0]:
        raise ValueError(f"{g.shape[0]} group labels for {x.shape[0]} feature vectors")
    labels = np.unique(g)
    if labels.size < 2:
        return GaussianModel.fit(x).distance(x)
    out = np.empty(x.shape[0])
    for label in labels:
        held = g == label
        out[held] = GaussianModel.fit(x[~held]).distance(x[held])
    return out


@dataclass(frozen=True)
class TailModel:
    """Reference scores and their tail: ``p_values(s)`` high for typical scores.

    Attributes:
        scores: ``[n]`` sorted reference scores.
        side: ``"upper"`` (large scores are atypical) or ``"both"`` (two-sided).
        tail_fraction: share of the reference above the threshold ``u`` of each fitted tail.
        upper: ``(u, scale)`` of the exponential upper tail; ``lower`` likewise for ``-score``
            (``"both"`` only).
    """

    scores: np.ndarray
    side: str = "upper"
    tail_fraction: float = 0.25
    upper: tuple[float, float] = (float("inf"), 1.0)
    lower: tuple[float, float] | None = None

    @staticmethod
    def _exponential_tail(r: np.ndarray, tail_fraction: float) -> tuple[float, float]:
        """Threshold ``u`` (the ``1 - tail_fraction`` quantile) and the mean excess over it."""
        u = float(np.quantile(r, 1.0 - tail_fraction))
        excess = r[r > u] - u
        spread = float(np.std(r)) if r.size > 1 else 1.0
        scale = float(excess.mean()) if excess.size else 0.0
        return u, max(scale, 1e-6 * max(spread, 1e-12), 1e-12)

    @classmethod
    def fit(cls, scores: Sequence[float] | np.ndarray, side: str = "upper", tail_fraction: float = 0.25) -> TailModel:
        r = np.sort(np.asarray(scores, dtype=np.float64).ravel())
        if r.size < 1 or not np.isfinite(r).all():
            raise ValueError("need at least one finite reference score")
        if side not in ("upper", "both"):
            raise ValueError(f"side must be 'upper' or 'both', got {side!r}")
        if not 0.0 < tail_fraction < 1.0:
            raise ValueError(f"tail_fraction must be in (0, 1), got {tail_fraction}")
        lower = cls._exponential_tail(-r, tail_fraction) if side == "both" else None
        return cls(r, side, tail_fraction, cls._exponential_tail(r, tail_fraction), lower)

    @staticmethod
    def _upper_p(r: np.ndarray, s: np.ndarray, tail: tuple[float, float]) -> np.ndarray:
        """``P(R >= s)`` for sorted ``r``: empirical up to ``u``, exponential beyond."""
        n = r.size
        u, scale = tail
        empirical = (1.0 + n - np.searchsorted(r, s, side="left")) / (n + 1.0)
        at_u = (1.0 + n - np.searchsorted(r, u, side="left")) / (n + 1.0)
        with np.errstate(over="ignore"):
            beyond = at_u * np.exp(-(s - u) / scale)
        return np.where(s > u, beyond, empirical)

    def p_values(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        """``[B]`` p-values in (0, 1] of ``scores [B]`` against the reference (NaN stays NaN)."""
        s = np.asarray(scores, dtype=np.float64).ravel()
        finite = np.where(np.isfinite(s), s, np.inf)
        p = self._upper_p(self.scores, finite, self.upper)
        if self.side == "both":
            assert self.lower is not None
            p_low = self._upper_p(-self.scores[::-1], -finite, self.lower)
            p = np.minimum(1.0, 2.0 * np.minimum(p, p_low))
        return np.where(np.isnan(s), np.nan, p)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"side": self.side, "tail_fraction": self.tail_fraction,
                             "upper_tail": {"threshold": self.upper[0], "scale": self.upper[1]}}
        if self.lower is not None:
            d["lower_tail"] = {"threshold": -self.lower[0], "scale": self.lower[1]}
        d["scores"] = self.scores.tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TailModel:
        scores = np.sort(np.asarray(d["scores"], dtype=np.float64).ravel())
        if scores.size < 1:
            raise ValueError("no reference scores")
        up = d["upper_tail"]
        low = d.get("lower_tail")
        return cls(scores, str(d.get("side", "upper")), float(d.get("tail_fraction", 0.25)),
                   (float(up["threshold"]), float(up["scale"])),
                   None if low is None else (-float(low["threshold"]), float(low["scale"])))
