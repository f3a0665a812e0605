"""Calibrated posterior standard deviation of a prior's reconstructions.

The pixel-wise std of a few posterior samples is only as trustworthy as the prior and the sampler:
an imperfect prior or a short chain gives too narrow (or too wide) a spread, and a std estimated
from ``K`` samples is itself noisy. A prior therefore ships one factor ``scale`` fitted on its
validation slices so that the true error lies within ``scale * std`` of the posterior mean for
68.3 % of the pixels, as it would for a Gaussian posterior (Kuleshov, Fenner, Ermon, ICML 2018,
"Accurate Uncertainties for Deep Learning Using Calibrated Regression", the quantile recalibration
of one scale). The factor is fitted for the number of samples it was measured with; the report
says which.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from priors.errors import PriorError

__all__ = ["CALIBRATION_FILE", "NOMINAL_COVERAGE", "StdCalibration", "coverage", "fit_std_calibration",
           "load_std_calibration", "save_std_calibration"]

CALIBRATION_FILE = "uncertainty.json"

#: Fraction of a Gaussian within 1 and 2 standard deviations of its mean.
NOMINAL_COVERAGE = {1: 0.6827, 2: 0.9545}


def coverage(errors: np.ndarray, std: np.ndarray, k: float) -> float:
    """Fraction of pixels with ``|error| <= k * std`` (arrays of one shape, any units)."""
    e, s = np.abs(np.asarray(errors, np.float64)).ravel(), np.asarray(std, np.float64).ravel()
    return float(np.mean(e <= k * s))


@dataclass(frozen=True)
class StdCalibration:
    """A prior's std calibration.

    Attributes:
        scale: multiply the sample std by this to get the calibrated std.
        samples: posterior samples per slice the factor was fitted with.
        coverage_raw, coverage_calibrated: ``{"1": f1, "2": f2}`` fractions of pixels within 1 and
            2 (raw / calibrated) std on the fitting data (nominal 0.683 / 0.954).
        data: what it was fitted on (settings, slice and pixel counts, pixel selection).
    """

    scale: float
    samples: int
    coverage_raw: dict[str, float] = field(default_factory=dict)
    coverage_calibrated: dict[str, float] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"format": "recon-std-calibration", "format_version": 1, **asdict(self)}


def fit_std_calibration(errors: np.ndarray, std: np.ndarray, samples: int, data: dict[str, Any]) -> StdCalibration:
    """The factor that makes ``|errors| <= scale * std`` hold for 68.3 % of the pixels.

    Args:
        errors: ``mean - truth`` of the selected pixels (any shape, physical units).
        std: the sample std of the same pixels (same units); pixels with ``std == 0`` are dropped.
        samples: posterior samples per slice behind ``std``.
        data: a description of the fitting data, stored with the factor.
    """
    e, s = np.abs(np.asarray(errors, np.float64)).ravel(), np.asarray(std, np.float64).ravel()
    keep = s > 0
    if keep.sum() < 100:
        raise ValueError(f"std calibration needs at least 100 pixels with a positive std, got {int(keep.sum())}")
    e, s = e[keep], s[keep]
    scale = float(np.quantile(e / s, NOMINAL_COVERAGE[1]))
    raw = {str(k): coverage(e, s, k) for k in NOMINAL_COVERAGE}
    calibrated = {str(k): coverage(e, scale * s, k) for k in NOMINAL_COVERAGE}
    return StdCalibration(scale=scale, samples=int(samples), coverage_raw=raw, coverage_calibrated=calibrated,
                          data={**data, "n_pixels": int(keep.sum())})


def load_std_calibration(directory: str | Path) -> StdCalibration | None:
    """The calibration shipped in a prior ``directory`` (None where it has none)."""
    path = Path(directory) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
        return StdCalibration(scale=float(d["scale"]), samples=int(d["samples"]),
                              coverage_raw=dict(d.get("coverage_raw", {})),
                              coverage_calibrated=dict(d.get("coverage_calibrated", {})), data=dict(d.get("data", {})))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PriorError(path, f"unreadable std calibration: {e}") from None


def save_std_calibration(calibration: StdCalibration, directory: str | Path) -> Path:
    """Write ``uncertainty.json`` into a prior ``directory`` atomically."""
    path = Path(directory) / CALIBRATION_FILE
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(calibration.to_dict(), indent=1) + "\n")
    os.replace(tmp, path)
    return path
