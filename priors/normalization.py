"""Mapping between physical image units and the prior's normalised domain.

CT priors use a fixed HU window mapped affinely onto [0, 1]; MR priors see magnitude images divided
by a per-image (or per-volume) robust maximum, so their physical scale is estimated from the data.
Both are affine, ``physical = offset + scale * normalised``, which is what samplers need to compose
the map with a linear forward operator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Normalization:
    """Affine intensity normalisation stored in a prior's config.

    kind:
        ``"window"``: ``normalised = (physical - low) / (high - low)``; ``low``/``high`` in ``unit``
        (CT: HU). ``"percentile"``: ``normalised = physical / q`` with ``q`` the ``percentile``-th
        percentile of the magnitude of the image or volume (MR; ``low``/``high`` unused).
    """

    kind: str = "window"
    low: float = -1024.0
    high: float = 2048.0
    unit: str = "HU"
    percentile: float = 99.9

    def __post_init__(self) -> None:
        if self.kind not in ("window", "percentile"):
            raise ValueError(f"Normalization.kind must be 'window' or 'percentile', got {self.kind!r}")
        if self.kind == "window" and not self.high > self.low:
            raise ValueError(f"Normalization window needs high > low, got [{self.low}, {self.high}]")

    # --- affine parameters ------------------------------------------------------------
    def affine(self, reference: np.ndarray | torch.Tensor | None = None) -> tuple[float, float]:
        """``(scale, offset)`` with ``physical = offset + scale * normalised``.

        For ``"percentile"`` the scale is the ``percentile`` of ``|reference|`` (required).
        """
        if self.kind == "window":
            return float(self.high - self.low), float(self.low)
        if reference is None:
            raise ValueError("percentile normalisation needs a reference image to set its scale")
        mag = reference.abs() if isinstance(reference, torch.Tensor) else np.abs(reference)
        mag = mag.detach().cpu().numpy() if isinstance(mag, torch.Tensor) else mag
        q = float(np.percentile(mag, self.percentile))
        if not q > 0:
            raise ValueError("percentile normalisation: reference image is all zero")
        return q, 0.0

    def to_normalized(self, physical, reference=None):
        scale, offset = self.affine(physical if reference is None and self.kind == "percentile" else reference)
        return (physical - offset) / scale

    def to_physical(self, normalized, reference=None):
        scale, offset = self.affine(reference)
        return normalized * scale + offset

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalization:
        return cls(**{k: d[k] for k in ("kind", "low", "high", "unit", "percentile") if k in d})


CT_WINDOW = Normalization(kind="window", low=-1024.0, high=2048.0, unit="HU")
MR_PERCENTILE = Normalization(kind="percentile", unit="a.u.", percentile=99.9)
