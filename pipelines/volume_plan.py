"""Whether a study is reconstructed as one volume, and in which chunks along z.

A volume reconstruction couples neighbouring slices (``recon.api.reconstruct(..., volume=True)``).
Memory stays bounded because the stack is cut into chunks of at most ``chunk`` slices that overlap
by ``overlap`` slices on each side; each chunk is reconstructed as one volume and only its core
(the slices not in an overlap) is kept, so every slice is written exactly once and is resumable
chunk by chunk, like slices in slice-wise mode. The overlap gives the core slices neighbours on
both sides, so chunk borders do not show as seams.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pipelines.studies import Study
from recon.api import VOLUME_METHODS
from recon.errors import InputError

#: Slices per volume chunk and overlap on each side (slices). Overlap slices are reconstructed twice,
#: a fraction ``2 * overlap / (chunk - 2 * overlap)`` extra (1/7 at 32 against 1/3 at 16), while a
#: chunk's sampler state costs a few MiB per slice and sample, so the chunk is large.
DEFAULT_CHUNK = 32
DEFAULT_OVERLAP = 2


@dataclass(frozen=True)
class VolumePlan:
    """How a study is reconstructed.

    Attributes:
        on: slices are coupled along z (volume mode).
        reason: why (for the report), e.g. ``"contiguous stack, 2.00 mm spacing"``.
        slice_spacing_mm: the step between slices when ``on``.
        chunk, overlap: chunk size and overlap (slices) when ``on``.
    """

    on: bool
    reason: str
    slice_spacing_mm: float | None = None
    chunk: int = DEFAULT_CHUNK
    overlap: int = DEFAULT_OVERLAP

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_volume(study: Study, requested: bool | None, method: str, *, chunk: int = DEFAULT_CHUNK,
                overlap: int | None = None) -> VolumePlan:
    """Decide volume or slice-wise mode for ``method`` on ``study``.

    ``requested``: True (``--volume``: refused with :class:`InputError` when impossible), False
    (``--no-volume``) or None (automatic: on when the method has a volume form and the slices form
    one contiguous, regularly spaced stack that shares one operator). ``overlap`` defaults to
    :data:`DEFAULT_OVERLAP`, less for chunks too small to keep a core.
    """
    if overlap is None:
        overlap = min(DEFAULT_OVERLAP, (chunk - 1) // 2)
    if chunk < 2 or overlap < 0 or chunk <= 2 * overlap:
        raise ValueError(f"volume chunks of {chunk} slices cannot overlap by {overlap} on each side")
    if requested is False:
        return VolumePlan(False, "slice-wise (--no-volume)")
    why_not = _obstacle(study, method)
    if why_not is not None:
        if requested:
            raise InputError(study.path, f"--volume is not possible: {why_not}")
        return VolumePlan(False, f"slice-wise: {why_not}")
    spacing = float(study.slice_spacing_mm)
    return VolumePlan(True, f"volume: contiguous stack, {spacing:.2f} mm spacing", spacing, chunk, overlap)


def _obstacle(study: Study, method: str) -> str | None:
    """Why ``study`` cannot be reconstructed as a volume with ``method`` (None: it can)."""
    if method not in VOLUME_METHODS:
        return f"{method} has no volume form (those with one: {', '.join(VOLUME_METHODS)})"
    if study.n_slices < 2:
        return "a single slice"
    if study.slice_spacing_mm is None:
        return "the slices are not one contiguous, regularly spaced stack"
    if len({study.batch_key(i) for i in range(study.n_slices)}) > 1:
        return "the slices do not share one forward operator"
    return None


def volume_chunks(n_slices: int, chunk: int, overlap: int) -> list[tuple[list[int], list[int]]]:
    """``[(slices reconstructed together, slices kept)]`` covering ``range(n_slices)``.

    Kept slices partition the stack in order; each chunk adds up to ``overlap`` neighbours on each
    side of its kept core and holds at most ``chunk`` slices.
    """
    core = chunk - 2 * overlap
    out = []
    for start in range(0, n_slices, core):
        keep = list(range(start, min(start + core, n_slices)))
        run = list(range(max(0, start - overlap), min(n_slices, keep[-1] + 1 + overlap)))
        out.append((run, keep))
    return out
