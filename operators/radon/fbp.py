"""Filtered backprojection for parallel and flat-detector fan beams, in torch (any device).

Kak & Slaney, *Principles of Computerized Tomographic Imaging*, 1988, ch. 3: eq. 3.61 band-limited
ramp kernel; sec. 3.4.2 equispaced flat-detector fan-beam FBP with cosine pre-weighting and 1/U^2
distance-weighted backprojection, computed by pixel-driven linear interpolation. Short fan scans use
Parker's redundancy weights (D. L. Parker, Med. Phys. 9(2), 1982).

Units: sinograms ``[B, 1, n_angles, n_detectors]`` of line integrals in, images ``[B, 1, H, W]``
of attenuation in 1/mm out (the units the forward projection was given).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from operators.geometry import FanGeometry, ParallelGeometry

__all__ = [
    "FBP_FILTERS",
    "ramp_filter",
    "angle_weights",
    "parker_weights",
    "is_full_scan",
    "parallel_fbp",
    "fan_fbp",
]

#: Filters accepted by ``pinv`` (window applied to the band-limited ramp).
FBP_FILTERS = ("ram-lak", "shepp-logan", "cosine", "hann", "hamming")

#: Per-operator store of arrays that depend only on the geometry, dtype and device.
FbpCache = dict[tuple, Any]


def ramp_filter(n_detectors: int, spacing: float, filter: str = "ram-lak") -> np.ndarray:
    """Frequency response (for ``rfft`` of length ``n_fft``) of the windowed band-limited ramp.

    The spatial kernel is Kak & Slaney eq. 3.61 (``h(0) = 1/(4 d^2)``, ``h(n d) = -1/(n pi d)^2`` for odd
    ``n``, 0 for even ``n``), zero-padded to ``n_fft >= 2 n_detectors`` so that the circular convolution
    equals the linear one; multiplied by ``spacing`` so that the discrete sum approximates the
    convolution integral. Windows (``f`` in cycles/sample, |f| <= 1/2): ram-lak 1, shepp-logan
    ``sinc(f)``, cosine ``cos(pi f)``, hann ``(1 + cos(2 pi f))/2``, hamming ``0.54 + 0.46 cos(2 pi f)``.

    Returns a float64 array of length ``n_fft // 2 + 1``.
    """
    if filter not in FBP_FILTERS:
        raise ValueError(f"ramp_filter: filter is {filter!r}, expected one of {FBP_FILTERS}")
    n_fft = max(64, 1 << int(math.ceil(math.log2(2 * n_detectors))))
    k = np.arange(n_fft)
    k = np.where(k <= n_fft // 2, k, k - n_fft)
    h = np.zeros(n_fft)
    h[0] = 1.0 / (4.0 * spacing**2)
    odd = k % 2 == 1
    h[odd] = -1.0 / (np.pi * k[odd] * spacing) ** 2
    resp = spacing * np.fft.rfft(h).real
    f = np.fft.rfftfreq(n_fft)
    if filter == "shepp-logan":
        resp *= np.sinc(f)
    elif filter == "cosine":
        resp *= np.cos(np.pi * f)
    elif filter == "hann":
        resp *= 0.5 * (1.0 + np.cos(2 * np.pi * f))
    elif filter == "hamming":
        resp *= 0.54 + 0.46 * np.cos(2 * np.pi * f)
    return resp


def angle_weights(angles: np.ndarray, period: float) -> np.ndarray:
    """Quadrature weights ``d(angle)`` for each angle on a circle of length ``period``.

    Half the distance to each neighbour (cyclically, angles taken modulo ``period``); gaps wider than
    2.5x the median gap are a missing wedge (limited angle) and count as one median gap, so angles at
    the edge of a wedge are not over-weighted.
    """
    n = angles.size
    if n == 1:
        return np.array([period])
    a = np.mod(angles, period)
    order = np.argsort(a, kind="stable")
    s = a[order]
    gaps = np.diff(np.concatenate([s, [s[0] + period]]))  # gap after each sorted angle
    med = np.median(gaps[gaps > 1e-12]) if np.any(gaps > 1e-12) else period / n
    gaps = np.where(gaps > 2.5 * med, med, gaps)
    w_sorted = 0.5 * (gaps + np.roll(gaps, 1))
    w = np.empty(n)
    w[order] = w_sorted
    return w


def parker_weights(beta: np.ndarray, gamma: np.ndarray, span: float) -> np.ndarray:
    """Parker (1982) short-scan weights for source angles ``beta`` in ``[0, span]`` and fan angles ``gamma``.

    ``gamma`` follows Parker's sign, in which the conjugate of ray ``(beta, gamma)`` is
    ``(beta + pi + 2 gamma, -gamma)``. ``span = pi + 2 delta``; exact when ``delta`` is at least the fan
    half-angle, an approximation for shorter arcs. An arc below ``pi - 2 max|gamma|`` (limited angle)
    measures no ray twice, so every weight is 1. Returns ``[n_angles, n_detectors]``.
    """
    if span < math.pi - 2.0 * float(np.abs(gamma).max(initial=0.0)):
        return np.ones((beta.size, gamma.size))
    delta = max(0.5 * (span - math.pi), 1e-6)
    b = beta[:, None]
    g = np.clip(gamma[None, :], -delta + 1e-9, delta - 1e-9)
    w = np.ones((beta.size, gamma.size))
    r1 = b < 2 * delta - 2 * g
    w = np.where(r1, np.sin(0.25 * np.pi * b / (delta - g)) ** 2, w)
    r3 = b > math.pi - 2 * g
    w = np.where(r3, np.sin(0.25 * np.pi * np.clip(span - b, 0, None) / (delta + g)) ** 2, w)
    return np.clip(w, 0.0, 1.0)


def is_full_scan(angles: np.ndarray) -> bool:
    """Whether source angles cover the circle without a gap wider than 2.5 median steps."""
    if angles.size < 3:
        return False
    a = np.sort(np.mod(angles, 2 * math.pi))
    gaps = np.diff(np.concatenate([a, [a[0] + 2 * math.pi]]))
    med = np.median(gaps)
    return bool(gaps.max() <= 2.5 * med) and float(np.ptp(angles)) + med >= 2 * math.pi - 1e-6


def filter_rows(p: torch.Tensor, spacing: float, filt: str, cache: FbpCache) -> torch.Tensor:
    """Convolve each detector row of ``p`` ``[B, A, D]`` with the windowed ramp (zero-padded FFT)."""
    d = p.shape[-1]
    key = ("ramp", d, spacing, filt, p.dtype, str(p.device))
    resp = cache.get(key)
    if resp is None:
        resp = torch.from_numpy(ramp_filter(d, spacing, filt)).to(p.device, p.dtype)
        cache[key] = resp
    n_fft = 2 * (resp.shape[0] - 1)
    q = torch.fft.irfft(torch.fft.rfft(p, n=n_fft, dim=-1) * resp, n=n_fft, dim=-1)
    return q[..., :d]


def pixel_coords(
    geometry: ParallelGeometry | FanGeometry, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres ``x``, ``y`` in mm, flattened row-major (ASTRA's grid, row 0 at the top)."""
    h, w = geometry.image_size
    ps = geometry.pixel_size_mm
    xs = (torch.arange(w, dtype=dtype, device=device) + 0.5 - 0.5 * w) * ps
    ys = (0.5 * h - 0.5 - torch.arange(h, dtype=dtype, device=device)) * ps
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return xx.reshape(-1), yy.reshape(-1)


def backproject_interp(
    q: torch.Tensor,
    image_size: tuple[int, int],
    index_fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]],
) -> torch.Tensor:
    """Pixel-driven backprojection ``sum_a weight(a, x) * q[a, index(a, x)]`` with linear interpolation.

    ``q`` is ``[B, A, D]``; ``index_fn(angle_ids)`` returns fractional detector indices ``[a, H*W]``
    and optional per-pixel weights (or None). Angles are processed in chunks to bound memory.
    Returns ``[B, 1, H, W]``.
    """
    b, n_ang, d = q.shape
    h, w = image_size
    npix = h * w
    out = torch.zeros(b, npix, dtype=q.dtype, device=q.device)
    chunk = max(1, (1 << 22) // npix)
    for a0 in range(0, n_ang, chunk):
        ids = torch.arange(a0, min(n_ang, a0 + chunk), device=q.device)
        idx, wgt = index_fn(ids)
        # grid_sample does gather + linear interpolation in one kernel; rows are hit at their
        # centres, so only the detector direction is interpolated (zeros beyond the detector)
        gx = (2.0 * idx + 1.0) / d - 1.0
        gy = ((2.0 * ids + 1.0) / n_ang - 1.0).to(q.dtype)[:, None].expand_as(gx)
        grid = torch.stack((gx, gy), dim=-1).unsqueeze(0).expand(b, -1, -1, -1)
        val = torch.nn.functional.grid_sample(
            q.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )[:, 0]
        if wgt is not None:
            val = val * wgt.unsqueeze(0)
        out += val.sum(dim=1)
    return out.reshape(b, 1, h, w)


def parallel_fbp(
    y: torch.Tensor,
    geometry: ParallelGeometry,
    filt: str,
    cache: FbpCache,
    backproject: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Parallel FBP: ``f(x) = sum_theta w_theta (p_theta * h)(x cos theta + y sin theta)``.

    ``w_theta`` are quadrature weights over ``[0, pi)`` (:func:`angle_weights`), so sparse and
    irregular angle sets are weighted by the arc each angle represents. ``backproject`` is the
    operator's ``A^T`` on ``[B, 1, n_angles, n_detectors]``: it spreads each detector value over the
    pixels its ray crosses with weights summing to ``pixel_area / detector_spacing`` per pixel and
    angle, so ``d / ps^2 * A^T q`` is the sampled backprojection integral.
    """
    key = ("par", y.dtype, str(y.device))
    wts = cache.get(key)
    if wts is None:
        wts = torch.from_numpy(angle_weights(geometry.angles_array, math.pi)).to(y.device, y.dtype)
        cache[key] = wts
    ds = geometry.detector_spacing_mm
    q = filter_rows(y[:, 0], ds, filt, cache) * wts[None, :, None]
    bp = backproject(q.unsqueeze(1).contiguous())
    return bp * (ds / geometry.pixel_size_mm**2)


def fan_fbp(y: torch.Tensor, geometry: FanGeometry, filt: str, cache: FbpCache) -> torch.Tensor:
    """Flat-detector fan-beam FBP (Kak & Slaney sec. 3.4.2), on a virtual detector through the axis.

    With ``SO`` the source distance, ``s'`` the virtual detector coordinate (physical / magnification)
    and ``L`` the distance of pixel ``x`` from the source along the central ray:
    ``f(x) = sum_b w_b (SO / L)^2 [(p_b(s') SO / sqrt(SO^2 + s'^2)) * h](s'(x))``, where ``w_b`` is
    half the angular step for a full 2 pi scan, or the step times Parker's weight for a short scan.
    """
    g = geometry
    dt = y.dtype
    so = g.source_origin_mm
    d = int(g.n_detectors)
    ds_virtual = g.detector_spacing_mm / g.magnification
    key = ("fan", dt, str(y.device))
    entry = cache.get(key)
    if entry is None:
        ang = g.angles_array
        s_virt = (np.arange(d) - 0.5 * (d - 1)) * ds_virtual
        pre = so / np.sqrt(so**2 + s_virt**2)  # cosine of the ray's fan angle
        if is_full_scan(ang):
            ray_w = np.repeat(0.5 * angle_weights(ang, 2 * math.pi)[:, None], d, axis=1)
        else:
            beta = ang - ang.min()
            span = float(beta.max())
            # Parker's gamma has the opposite sign to ASTRA's detector axis (see parker_weights)
            gamma = -np.arctan(s_virt / so)
            # on a 4 pi circle the wrap-around gap is a "missing wedge", so the arc is treated as open
            steps = angle_weights(ang, 4 * math.pi)
            ray_w = parker_weights(beta, gamma, span) * steps[:, None]
        pre_w = torch.from_numpy(pre[None, :] * 1.0).to(y.device, dt)
        ray_w = torch.from_numpy(ray_w).to(y.device, dt)
        cos = torch.from_numpy(np.cos(ang)).to(y.device, dt)
        sin = torch.from_numpy(np.sin(ang)).to(y.device, dt)
        xx, yy = pixel_coords(g, dt, y.device)
        entry = (pre_w, ray_w, cos, sin, xx, yy)
        cache[key] = entry
    pre_w, ray_w, cos, sin, xx, yy = entry
    # redundancy weights multiply the raw projections before filtering, as in Parker's short-scan FBP
    p = y[:, 0] * pre_w * ray_w
    q = filter_rows(p, ds_virtual, filt, cache)

    def index_fn(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c, s = cos[ids, None], sin[ids, None]
        along = so - xx[None] * s + yy[None] * c  # distance from the source along the central ray
        s_virt = (xx[None] * c + yy[None] * s) * so / along
        return s_virt / ds_virtual + 0.5 * (d - 1), (so / along) ** 2

    return backproject_interp(q, tuple(g.image_size), index_fn)
