"""Cartesian k-space sampling masks, all reproducible from an explicit seed.

Conventions
-----------
* A mask is a ``torch.bool`` tensor; ``True`` marks a sampled k-space position. The k-space centre
  (DC) is at index ``(H // 2, W // 2)``, matching :func:`operators.fourier.fft2c`.
* 1D masks (``equispaced``, ``random``, ``gaussian``) follow the fastMRI convention: phase encoding
  runs along the last axis, so whole columns are sampled. ``shape`` may be ``W``, ``(W,)`` (a column
  mask) or ``(H, W)`` (the column mask repeated along the rows).
* 2D masks (``poisson``, ``radial``) need ``shape = (H, W)``.
* *Acceleration* is ``number of positions / number sampled``; :func:`achieved_acceleration`
  measures it. The centre-fraction / calibration region always counts towards the budget.
* Randomness only comes from ``seed`` (an ``int`` or a ``numpy.random.Generator``); the same seed
  gives the same mask. There is no hidden global random state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "MASK_KINDS",
    "achieved_acceleration",
    "equispaced_mask",
    "gaussian_mask",
    "make_mask",
    "poisson_disc_mask",
    "radial_mask",
    "random_mask",
]

MASK_KINDS: tuple[str, ...] = ("equispaced", "random", "gaussian", "poisson", "radial")

Seed = int | np.random.Generator


# --- argument checks ---------------------------------------------------------------------
def _rng(seed: Seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int or numpy.random.Generator, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")
    return np.random.default_rng(int(seed))


def _shape(shape: int | Sequence[int], ndims: tuple[int, ...], fn: str) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    try:
        out = tuple(int(s) for s in shape)
    except TypeError as exc:
        raise ValueError(f"{fn}: shape must be an int or a tuple of ints, got {shape!r}") from exc
    if len(out) not in ndims:
        want = " or ".join("(H, W)" if n == 2 else "(W,)" for n in ndims)
        raise ValueError(f"{fn}: shape {out} has {len(out)} dimensions, expected {want}")
    if any(s < 1 for s in out):
        raise ValueError(f"{fn}: shape {out} must be positive")
    return out


def _acceleration(acceleration: float, fn: str) -> float:
    try:
        a = float(acceleration)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{fn}: acceleration must be a number >= 1, got {acceleration!r}") from exc
    if not math.isfinite(a) or a < 1:
        raise ValueError(f"{fn}: acceleration must be a finite number >= 1, got {acceleration!r}")
    return a


def _fraction(center_fraction: float, fn: str) -> float:
    try:
        f = float(center_fraction)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{fn}: center_fraction must be a number in [0, 1], got {center_fraction!r}") from exc
    if not (0.0 <= f <= 1.0):
        raise ValueError(f"{fn}: center_fraction must be in [0, 1], got {center_fraction!r}")
    return f


def _centre_lines(num_cols: int, num_low: int) -> np.ndarray:
    """fastMRI's centre block: ``num_low`` contiguous columns starting at ``(W - num_low + 1) // 2``.

    For every ``W`` and ``num_low >= 1`` the block contains the DC column ``W // 2``.
    """
    mask = np.zeros(num_cols, dtype=bool)
    pad = (num_cols - num_low + 1) // 2
    mask[pad : pad + num_low] = True
    return mask


def _num_low(num_cols: int, center_fraction: float) -> int:
    # At least the DC line, so every mask "contains the centre".
    return max(1, int(round(num_cols * center_fraction)))


def _columns_to_mask(cols: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    if len(shape) == 1:
        return torch.from_numpy(cols.copy())
    return torch.from_numpy(np.broadcast_to(cols[None, :], shape).copy())


def _calib_box(shape: tuple[int, int], calib: int | Sequence[int]) -> tuple[slice, slice]:
    """Centred ``calib`` box (same centring as the fastMRI centre block, so it holds the DC)."""
    if isinstance(calib, (int, np.integer)):
        ch, cw = int(calib), int(calib)
    else:
        ch, cw = (int(c) for c in calib)
    ch, cw = max(1, min(ch, shape[0])), max(1, min(cw, shape[1]))
    r0 = (shape[0] - ch + 1) // 2
    c0 = (shape[1] - cw + 1) // 2
    return slice(r0, r0 + ch), slice(c0, c0 + cw)


def achieved_acceleration(mask: torch.Tensor | np.ndarray) -> float:
    """Acceleration actually achieved: ``mask.size / count_nonzero(mask)`` (``inf`` if empty).

    For a 1D column mask ``[W]`` this is ``W / n_sampled_columns``, the same as for the ``[H, W]``
    mask it broadcasts to.
    """
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    n = int(np.count_nonzero(m))
    return float("inf") if n == 0 else m.size / n


# --- 1D (column) masks ---------------------------------------------------------------------
def equispaced_mask(
    shape: int | Sequence[int],
    acceleration: float,
    center_fraction: float,
    seed: Seed = 0,
    *,
    offset: int | None = None,
) -> torch.Tensor:
    """Equispaced column mask with a fully sampled centre, fastMRI ``EquispacedMaskFractionFunc``.

    With ``W`` columns and ``n_low = round(W * center_fraction)`` centre columns, the remaining
    columns are taken every ``a'`` columns, starting at ``offset``, where the adjusted spacing

        ``a' = acceleration * (n_low - W) / (n_low * acceleration - W)``

    is chosen so the expected total ``n_low + (W - n_low) / a'`` equals ``W / acceleration``.
    Positions ``round(offset + i * a')`` may be unevenly rounded (as in fastMRI). ``offset`` is
    drawn from ``[0, round(a'))`` with ``seed`` unless given.

    Args:
        shape: ``W``, ``(W,)`` or ``(H, W)``.
        acceleration: target ``W / n_sampled`` (>= 1).
        center_fraction: fraction of columns in the fully sampled centre, in [0, 1]; at least one
            (the DC) column is always included, and ``center_fraction * acceleration`` must be < 1.
        seed: int or ``numpy.random.Generator`` for the offset.
        offset: first sampled column of the equispaced part; drawn at random if ``None``.

    Returns:
        bool tensor of ``shape``.
    """
    fn = "equispaced_mask"
    shp = _shape(shape, (1, 2), fn)
    acc = _acceleration(acceleration, fn)
    cf = _fraction(center_fraction, fn)
    rng = _rng(seed)
    w = shp[-1]
    n_low = _num_low(w, cf)
    cols = _centre_lines(w, n_low)
    if acc == 1.0:
        return _columns_to_mask(np.ones(w, dtype=bool), shp)
    if n_low * acc >= w:
        raise ValueError(
            f"{fn}: the {n_low} centre columns alone reach acceleration {w / n_low:.3g} <= {acc:g}; "
            f"expected center_fraction * acceleration < 1 (got {cf:g} * {acc:g})"
        )
    adjusted = acc * (n_low - w) / (n_low * acc - w)
    if offset is None:
        offset = int(rng.integers(0, max(1, round(adjusted))))
    elif not (0 <= int(offset) < w):
        raise ValueError(f"{fn}: offset {offset} must be in [0, {w})")
    positions = np.around(np.arange(int(offset), w - 1, adjusted)).astype(np.int64)
    cols[positions[positions < w]] = True
    return _columns_to_mask(cols, shp)


def _weighted_columns(
    fn: str,
    shape: int | Sequence[int],
    acceleration: float,
    center_fraction: float,
    seed: Seed,
    weights: np.ndarray | None,
) -> torch.Tensor:
    """Centre block plus exactly ``round(W / acc) - n_low`` further columns drawn without replacement."""
    shp = _shape(shape, (1, 2), fn)
    acc = _acceleration(acceleration, fn)
    cf = _fraction(center_fraction, fn)
    rng = _rng(seed)
    w = shp[-1]
    n_low = _num_low(w, cf)
    cols = _centre_lines(w, n_low)
    n_total = max(1, int(round(w / acc)))
    if n_low > n_total:
        raise ValueError(
            f"{fn}: the {n_low} centre columns exceed the {n_total} columns allowed at acceleration {acc:g}; "
            f"expected center_fraction <= 1 / acceleration (got {cf:g} > {1 / acc:.3g})"
        )
    candidates = np.flatnonzero(~cols)
    n_extra = min(n_total - n_low, candidates.size)
    if n_extra > 0:
        p = None
        if weights is not None:
            p = weights[candidates]
            p = p / p.sum()
        cols[rng.choice(candidates, size=n_extra, replace=False, p=p)] = True
    return _columns_to_mask(cols, shp)


def random_mask(
    shape: int | Sequence[int], acceleration: float, center_fraction: float, seed: Seed = 0
) -> torch.Tensor:
    """Uniformly random columns plus a fully sampled centre block (fastMRI ``RandomMaskFunc`` layout).

    Unlike fastMRI's per-column Bernoulli draw, exactly ``round(W / acceleration)`` columns are
    sampled in total (the rest drawn uniformly without replacement outside the centre), so the
    achieved acceleration matches the request up to rounding for every seed.

    Args:
        shape: ``W``, ``(W,)`` or ``(H, W)``.
        acceleration: target ``W / n_sampled`` (>= 1).
        center_fraction: fraction of fully sampled centre columns, in [0, 1] (at least the DC column).
        seed: int or ``numpy.random.Generator``.
    """
    return _weighted_columns("random_mask", shape, acceleration, center_fraction, seed, None)


def gaussian_mask(
    shape: int | Sequence[int],
    acceleration: float,
    center_fraction: float,
    seed: Seed = 0,
    *,
    std_fraction: float = 0.2,
) -> torch.Tensor:
    """Columns drawn from a Gaussian density centred on the DC column, plus a fully sampled centre.

    Columns outside the centre block are drawn without replacement with probability proportional
    to ``exp(-(j - W//2)^2 / (2 (std_fraction * W)^2))``; exactly ``round(W / acceleration)``
    columns are sampled in total.

    Args:
        shape: ``W``, ``(W,)`` or ``(H, W)``.
        acceleration: target ``W / n_sampled`` (>= 1).
        center_fraction: fraction of fully sampled centre columns, in [0, 1].
        seed: int or ``numpy.random.Generator``.
        std_fraction: standard deviation of the density as a fraction of ``W`` (> 0).
    """
    fn = "gaussian_mask"
    if not (float(std_fraction) > 0 and math.isfinite(float(std_fraction))):
        raise ValueError(f"{fn}: std_fraction must be a positive number, got {std_fraction!r}")
    w = _shape(shape, (1, 2), fn)[-1]
    j = np.arange(w, dtype=np.float64) - w // 2
    # A tiny floor keeps every column drawable, so high accelerations never run out of candidates.
    weights = np.exp(-0.5 * (j / (std_fraction * w)) ** 2) + 1e-12
    return _weighted_columns(fn, shape, acceleration, center_fraction, seed, weights)


# --- 2D masks --------------------------------------------------------------------------------
_STENCILS: dict[int, tuple[int, np.ndarray]] = {}


def _stencil(radius_q: int) -> tuple[int, np.ndarray]:
    """Disc of radius ``radius_q / 16`` pixels (strictly inside), cached by quantised radius."""
    hit = _STENCILS.get(radius_q)
    if hit is None:
        r = radius_q / 16.0
        half = int(math.ceil(r))
        d = np.arange(-half, half + 1)
        disc = (d[:, None] ** 2 + d[None, :] ** 2) < r * r
        disc[half, half] = True
        hit = (half, disc)
        _STENCILS[radius_q] = hit
    return hit


def _dart_throw(order: np.ndarray, radius_q: np.ndarray, blocked0: np.ndarray) -> np.ndarray:
    """Visit grid cells in ``order``; accept a cell unless an accepted cell's disc covers it.

    Each accepted cell blocks all cells closer than its own radius, giving a Poisson-disc set with
    a spatially varying minimum spacing (Bridson-style dart throwing restricted to the grid).
    """
    h, w = blocked0.shape
    blocked = blocked0.copy()
    flat = blocked.reshape(-1)
    accepted = np.zeros(h * w, dtype=bool)
    rq = radius_q.reshape(-1)
    for idx in order.tolist():
        if flat[idx]:
            continue
        accepted[idx] = True
        half, disc = _stencil(int(rq[idx]))
        i, j = divmod(idx, w)
        i0, i1 = max(i - half, 0), min(i + half + 1, h)
        j0, j1 = max(j - half, 0), min(j + half + 1, w)
        blocked[i0:i1, j0:j1] |= disc[i0 - i + half : i1 - i + half, j0 - j + half : j1 - j + half]
    return accepted.reshape(h, w)


def poisson_disc_mask(
    shape: Sequence[int],
    acceleration: float,
    calib: int | Sequence[int] = 24,
    seed: Seed = 0,
    *,
    variable_density: float = 2.0,
    tol: float = 0.01,
) -> torch.Tensor:
    """Variable-density Poisson-disc 2D mask with a fully sampled calibration box (like BART ``poisson``).

    Grid cells are visited in a seeded random order and accepted unless they lie closer than the
    local minimum distance ``r(k) = s * (1 + variable_density * rho(k))`` to an accepted cell, where
    ``rho = sqrt(((ky / (H/2))^2 + (kx / (W/2))^2) / 2)`` is 0 at the centre and 1 at the corners, so
    the sampling density falls by ``(1 + variable_density)^2`` from centre to corner. The scale
    ``s`` (pixels) is found by bisection so that, with the ``calib`` box added, the achieved
    acceleration is within ``tol`` (relative) of ``acceleration``. Where the grid cannot reach the
    budget with any radius (the sample count jumps between radii, mostly for weak or no density
    variation), randomly chosen cells outside the calibration box are added or dropped to meet it.

    Args:
        shape: ``(H, W)``.
        acceleration: target ``H * W / n_sampled`` (>= 1).
        calib: side of the centred fully sampled box, an int or ``(ch, cw)``; 0 keeps only the
            DC sample.
        seed: int or ``numpy.random.Generator`` for the visiting order.
        variable_density: radial growth of the minimum distance (0 = uniform Poisson disc).
        tol: relative tolerance on the achieved acceleration.

    Returns:
        bool tensor ``[H, W]``.
    """
    fn = "poisson_disc_mask"
    h, w = _shape(shape, (2,), fn)
    acc = _acceleration(acceleration, fn)
    rng = _rng(seed)
    if not (float(variable_density) >= 0 and math.isfinite(float(variable_density))):
        raise ValueError(f"{fn}: variable_density must be >= 0, got {variable_density!r}")
    calib_sizes = (calib, calib) if isinstance(calib, (int, np.integer)) else tuple(calib)
    if len(calib_sizes) != 2 or any(int(c) < 0 for c in calib_sizes):
        raise ValueError(f"{fn}: calib must be a non-negative int or (ch, cw), got {calib!r}")
    rows, cols = _calib_box((h, w), calib_sizes)
    calib_mask = np.zeros((h, w), dtype=bool)
    calib_mask[rows, cols] = True
    target = max(1, int(round(h * w / acc)))
    if int(calib_mask.sum()) > target:
        raise ValueError(
            f"{fn}: the calibration box {calib_sizes} alone has {int(calib_mask.sum())} samples, more than the "
            f"{target} allowed at acceleration {acc:g}; expected a smaller calib or acceleration"
        )
    if acc == 1.0:
        return torch.ones((h, w), dtype=torch.bool)

    ky = (np.arange(h) - h // 2) / (h / 2)
    kx = (np.arange(w) - w // 2) / (w / 2)
    rho = np.sqrt((ky[:, None] ** 2 + kx[None, :] ** 2) / 2)
    profile = 1.0 + float(variable_density) * rho
    order = rng.permutation(h * w)

    def sample(scale: float) -> np.ndarray:
        radius_q = np.maximum(np.round(scale * profile * 16), 1).astype(np.int64)
        return _dart_throw(order, radius_q, calib_mask) | calib_mask

    # Bisection in log-scale on s: the sample count falls as the minimum distance grows.
    lo, hi = 0.5, float(max(h, w))
    best, best_err = None, math.inf
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        m = sample(mid)
        n = int(m.sum())
        err = abs(n - target) / target
        if err < best_err:
            best, best_err = m, err
        if err <= tol / 2 or hi / lo < 1.0005:
            break
        if n > target:
            lo = mid
        else:
            hi = mid
    n = int(best.sum())
    if abs(n - target) / target > tol:
        # On a grid the count jumps between radii (e.g. uniform density cannot give 3x: r <= 1
        # samples everything, r just above 1 about every other cell), so the bisection can stall;
        # then random cells outside the calibration box are added or dropped to meet the budget.
        free = np.flatnonzero(~best & ~calib_mask) if n < target else np.flatnonzero(best & ~calib_mask)
        flip = rng.choice(free, size=min(abs(n - target), free.size), replace=False)
        best = best.copy()
        best.reshape(-1)[flip] = n < target
    return torch.from_numpy(best)


def _radial_lines(h: int, w: int, n_spokes: int, angle_offset: float) -> np.ndarray:
    """Rasterise ``n_spokes`` full-diameter lines through the DC at angles ``offset + pi k / n``."""
    mask = np.zeros((h, w), dtype=bool)
    half = math.hypot(h, w) / 2
    t = np.arange(-half, half + 0.25, 0.25)  # quarter-pixel steps so no cell on a line is skipped
    theta = angle_offset + np.pi * np.arange(n_spokes) / n_spokes
    i = np.rint(h // 2 + np.sin(theta)[:, None] * t[None, :]).astype(np.int64)
    j = np.rint(w // 2 + np.cos(theta)[:, None] * t[None, :]).astype(np.int64)
    keep = (i >= 0) & (i < h) & (j >= 0) & (j < w)
    mask[i[keep], j[keep]] = True
    return mask


def radial_mask(
    shape: Sequence[int],
    n_spokes: int | None = None,
    acceleration: float | None = None,
    *,
    calib: int | Sequence[int] = 0,
    angle_offset: float = 0.0,
) -> torch.Tensor:
    """Radial-like 2D mask: straight lines through the k-space centre rasterised on the Cartesian grid.

    Spokes are full diameters at equally spaced angles ``angle_offset + pi * k / n_spokes``
    (radians, from the ``kx`` axis), each cell a line passes through is sampled. Give either
    ``n_spokes``, or ``acceleration`` and the spoke count whose achieved acceleration is closest is
    used. The mask is deterministic (no randomness).

    Args:
        shape: ``(H, W)``.
        n_spokes: number of lines (>= 1).
        acceleration: target ``H * W / n_sampled`` (>= 1), used when ``n_spokes`` is ``None``.
        calib: side of an optional fully sampled centred box, int or ``(ch, cw)``; 0 for none.
        angle_offset: rotation of the spoke set in radians.

    Returns:
        bool tensor ``[H, W]``.
    """
    fn = "radial_mask"
    h, w = _shape(shape, (2,), fn)
    if (n_spokes is None) == (acceleration is None):
        raise ValueError(f"{fn}: give exactly one of n_spokes or acceleration")
    calib_mask = np.zeros((h, w), dtype=bool)
    calib_sizes = (calib, calib) if isinstance(calib, (int, np.integer)) else tuple(calib)
    if len(calib_sizes) != 2 or any(int(c) < 0 for c in calib_sizes):
        raise ValueError(f"{fn}: calib must be a non-negative int or (ch, cw), got {calib!r}")
    if any(int(c) > 0 for c in calib_sizes):
        rows, cols = _calib_box((h, w), calib_sizes)
        calib_mask[rows, cols] = True

    def build(n: int) -> np.ndarray:
        return _radial_lines(h, w, n, float(angle_offset)) | calib_mask

    if n_spokes is not None:
        if isinstance(n_spokes, bool) or not isinstance(n_spokes, (int, np.integer)) or n_spokes < 1:
            raise ValueError(f"{fn}: n_spokes must be an int >= 1, got {n_spokes!r}")
        return torch.from_numpy(build(int(n_spokes)))

    acc = _acceleration(acceleration, fn)
    target = h * w / acc
    # Coverage grows (almost) monotonically with the spoke count: bisect, then check neighbours.
    lo, hi = 1, int(math.ceil(math.pi * max(h, w))) + 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if build(mid).sum() < target:
            lo = mid
        else:
            hi = mid
    candidates = [build(n) for n in range(max(1, lo - 2), hi + 3)]
    best = min(candidates, key=lambda m: abs(h * w / max(int(m.sum()), 1) - acc))
    return torch.from_numpy(best)


# --- dispatcher --------------------------------------------------------------------------
def make_mask(
    kind: str,
    shape: Sequence[int],
    acceleration: float,
    center_fraction: float = 0.08,
    seed: Seed = 0,
) -> torch.Tensor:
    """Build a mask of one of :data:`MASK_KINDS` at a requested acceleration.

    ``center_fraction`` is the fully sampled centre: the fraction of columns for the 1D kinds, and
    for ``poisson`` / ``radial`` the side of the calibration box as a fraction of each of ``H`` and
    ``W`` (at least 1 x 1 for ``poisson``; ``0`` gives no box for ``radial``). ``seed`` drives the
    random kinds and the random spoke rotation of ``radial``.

    Args:
        kind: one of ``"equispaced"``, ``"random"``, ``"gaussian"``, ``"poisson"``, ``"radial"``.
        shape: ``(H, W)`` (1D kinds also accept ``W`` / ``(W,)``).
        acceleration: target acceleration (>= 1).
        center_fraction: in [0, 1].
        seed: int or ``numpy.random.Generator``.

    Returns:
        bool tensor of ``shape``.
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"make_mask: unknown mask kind {kind!r}, expected one of {MASK_KINDS}")
    if kind == "equispaced":
        return equispaced_mask(shape, acceleration, center_fraction, seed)
    if kind == "random":
        return random_mask(shape, acceleration, center_fraction, seed)
    if kind == "gaussian":
        return gaussian_mask(shape, acceleration, center_fraction, seed)
    cf = _fraction(center_fraction, "make_mask")
    h, w = _shape(shape, (2,), f"make_mask({kind!r})")
    calib = (int(round(h * cf)), int(round(w * cf)))
    if kind == "poisson":
        return poisson_disc_mask((h, w), acceleration, calib, seed)
    offset = float(_rng(seed).uniform(0.0, math.pi))
    return radial_mask((h, w), acceleration=acceleration, calib=calib, angle_offset=offset)
