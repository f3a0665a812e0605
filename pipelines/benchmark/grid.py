"""The benchmark's settings grid, its methods and the configuration a report directory belongs to.

CT settings are views x photon fraction, with relative dose ``views / FULL_VIEWS[geometry] x
photon fraction``; MR settings are acceleration x mask kind, with relative dose (scan time)
``1 / acceleration``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pipelines.simulate import FULL_VIEWS

__all__ = [
    "CT_METHODS",
    "MR_METHODS",
    "SAMPLER_METHODS",
    "DEFAULT_CT_METHODS",
    "DEFAULT_MR_METHODS",
    "DEFAULT_PSNR_LEVELS",
    "DEFAULT_SSIM_LEVELS",
    "Setting",
    "BenchmarkConfig",
    "settings_grid",
    "check_config",
    "percent",
]

CT_METHODS = ("fbp", "sirt", "cgls", "tv")
MR_METHODS = ("zero_filled", "cg_sense", "cs_tv")
SAMPLER_METHODS = ("dds", "dps", "song22")

DEFAULT_CT_METHODS = "fbp,sirt,tv,song22,dps,dds"
DEFAULT_MR_METHODS = "zero_filled,cg_sense,cs_tv,dds"
DEFAULT_PSNR_LEVELS = (30.0, 35.0)
DEFAULT_SSIM_LEVELS = (0.8, 0.9)


@dataclass(frozen=True)
class Setting:
    """One acquisition of the grid.

    CT: ``views`` and ``photons`` (fraction of the full-dose I0). MR: ``accel`` and ``mask``.
    ``relative_dose`` is the fraction of the full-dose reference (CT: view fraction x photon
    fraction; MR: 1 / acceleration).
    """

    modality: str
    relative_dose: float
    views: int | None = None
    photons: float | None = None
    accel: float | None = None
    mask: str | None = None

    @property
    def key(self) -> str:
        """File-name-safe identifier, e.g. ``v0032_p0.25`` or ``x8_poisson``."""
        if self.modality == "ct":
            return f"v{self.views:04d}_p{self.photons:g}"
        return f"x{self.accel:g}_{self.mask}"

    @property
    def label(self) -> str:
        """Human-readable description."""
        if self.modality == "ct":
            return f"{self.views} views x {percent(self.photons)} photons"
        return f"{self.accel:g}x {self.mask}"

    @property
    def group(self) -> Any:
        """The secondary grid axis (CT: photon fraction; MR: mask kind): one curve per value in the plots."""
        return self.photons if self.modality == "ct" else self.mask

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if v is not None}
        d.update(key=self.key, label=self.label)
        return d


def percent(f: float) -> str:
    """A fraction as a percentage with three significant digits: ``0.0125`` -> ``"1.25%"``."""
    p = 100.0 * f
    return f"{p:.3g}%"


def settings_grid(
    modality: str,
    *,
    views: Sequence[int] = (),
    doses: Sequence[float] = (),
    accels: Sequence[float] = (),
    masks: Sequence[str] = (),
    geometry: str = "parallel",
) -> list[Setting]:
    """All settings of the grid in run order (CT: views x photons; MR: acceleration x mask)."""
    if modality == "ct":
        if geometry not in FULL_VIEWS:
            raise ValueError(f"--geometry is {geometry!r}, expected one of {tuple(FULL_VIEWS)}")
        return [Setting("ct", v / FULL_VIEWS[geometry] * d, views=int(v), photons=float(d))
                for v in views for d in doses]
    return [Setting("mr", 1.0 / float(a), accel=float(a), mask=str(m)) for a in accels for m in masks]


@dataclass
class BenchmarkConfig:
    """Everything that determines the cells of a benchmark; a resumed run must match it exactly."""

    modality: str
    inputs: list[str]
    slices: str
    max_slices: int
    selected: dict[str, list[int]]
    size: int
    seed: int
    methods: list[str]
    nfe: int
    samples: int
    prior: str | None
    views: list[int] = field(default_factory=list)
    doses: list[float] = field(default_factory=list)
    geometry: str = "parallel"
    i0: float = 0.0
    accels: list[float] = field(default_factory=list)
    masks: list[str] = field(default_factory=list)
    center_fraction: float = 0.08
    coils: int = 1
    precision: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_config(modality: str, methods: Sequence[str], views: Sequence[int], doses: Sequence[float],
                 accels: Sequence[float], masks: Sequence[str], nfe: int, samples: int, size: int) -> None:
    """Raise ``ValueError`` naming the option at fault unless the grid and methods can be run."""
    if modality not in ("ct", "mr"):
        raise ValueError(f"--modality is {modality!r}, expected 'ct' or 'mr'")
    allowed = (CT_METHODS if modality == "ct" else MR_METHODS) + SAMPLER_METHODS
    bad = [m for m in methods if m not in allowed]
    if bad:
        raise ValueError(f"--methods: unknown for {modality.upper()}: {', '.join(bad)} (choose from {', '.join(allowed)})")
    if not methods:
        raise ValueError("--methods is empty")
    if len(set(methods)) != len(methods):
        raise ValueError("--methods lists a method twice")
    if modality == "ct":
        if not views or not doses:
            raise ValueError("--views and --dose need at least one value each")
        if any(v < 1 for v in views):
            raise ValueError("--views must be positive integers")
        if any(not (0 < d <= 1e3 and math.isfinite(d)) for d in doses):
            raise ValueError("--dose values must be photon fractions > 0 (1 = full dose)")
    else:
        from operators.masks import MASK_KINDS

        if not accels or not masks:
            raise ValueError("--accel and --mask need at least one value each")
        if any(not (a >= 1 and math.isfinite(a)) for a in accels):
            raise ValueError("--accel values must be >= 1")
        bad_masks = [m for m in masks if m not in MASK_KINDS]
        if bad_masks:
            raise ValueError(f"--mask: unknown kind(s) {', '.join(bad_masks)} (choose from {', '.join(MASK_KINDS)})")
    if nfe < 1 or samples < 1:
        raise ValueError("--nfe and --samples must be positive integers")
    if size < 8:
        raise ValueError(f"--size is {size}, expected at least 8 pixels")
