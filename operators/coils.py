"""Coil-sensitivity estimation from the fully sampled k-space centre, and coil combination.

Default method: **ESPIRiT** (Uecker et al., "ESPIRiT - an eigenvalue approach to autocalibrating
parallel MRI: where SENSE meets GRAPPA", MRM 71:990-1001, 2014), implemented here in numpy:

1. Calibration matrix ``A``: every ``k x k`` patch of the calibration region (all coils) is one row,
   ``A`` has shape ``[n_patches, n_coils * k * k]``.
2. SVD ``A = U S V^H``; the rows of ``V^H`` whose singular value is ``>= threshold * s_max`` span the
   signal subspace (the rest is the null space used by GRAPPA / SPIRiT).
3. Projecting every k-space patch onto that subspace and averaging over the ``k^2`` patches holding
   a k-space point is a multi-coil convolution; in the image domain it is, per pixel ``x``, the
   ``n_coils x n_coils`` Hermitian matrix ``G(x) = (1 / k^2) sum_j w_j(x) w_j(x)^H`` with
   ``w_jc(x) = sum_p V^H[j, c, p] exp(+2 pi i p . x / N)``. Coil sensitivities are eigenvectors of
   ``G(x)`` with eigenvalue 1 (eigenvalues lie in ``[0, 1]``).
4. ``G`` is a trigonometric polynomial of degree ``k - 1`` per axis, so it is evaluated exactly on
   a ``2k x 2k`` grid, its Fourier coefficients are zero-padded to ``H x W`` and transformed once
   (no ``n_kernels x n_coils`` full-size FFTs): this keeps 256 x 256 x 8 to about a second.
5. The eigenvector of the largest eigenvalue at every pixel is the map; its phase is made relative
   to a reference coil (so maps are smooth and the reference coil's map is real, >= 0), and pixels
   whose largest eigenvalue is below ``crop`` are set to 0 (outside the object support).

Maps from ESPIRiT are normalised per pixel: ``sum_c |S_c(x)|^2 = 1`` wherever not cropped.

Fallback: :func:`sum_of_squares_maps` divides low-resolution coil images (a windowed calibration
region) by their root-sum-of-squares (the "RSS-normalised low-resolution" estimate, as in
Pruessmann et al., MRM 1999 / McKenzie et al., MRM 2002).

Conventions match :mod:`operators.fourier`: k-space is ``[n_coils, H, W]`` or ``[B, n_coils, H, W]``,
centred (DC at ``(H // 2, W // 2)``), orthonormal FFT; returned maps have the same leading shape.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch

__all__ = [
    "COIL_MAP_METHODS",
    "DEFAULT_COIL_MAP_METHOD",
    "calibration_region",
    "espirit_maps",
    "estimate_coil_maps",
    "rss",
    "simulated_coil_maps",
    "sum_of_squares_maps",
]

COIL_MAP_METHODS: tuple[str, ...] = ("espirit", "sum_of_squares")
DEFAULT_COIL_MAP_METHOD = "espirit"

ArrayLike = torch.Tensor | np.ndarray


# --- helpers -------------------------------------------------------------------------------
def _to_numpy_kspace(kspace: ArrayLike, fn: str) -> tuple[np.ndarray, torch.dtype, bool]:
    """Return ``[B, n_coils, H, W]`` complex128, the output complex dtype, and whether B was added."""
    if isinstance(kspace, torch.Tensor):
        arr = kspace.detach().cpu().numpy()
    elif isinstance(kspace, np.ndarray):
        arr = kspace
    else:
        raise ValueError(f"{fn}: kspace must be a torch.Tensor or numpy array, got {type(kspace).__name__}")
    if arr.ndim not in (3, 4):
        raise ValueError(f"{fn}: kspace has shape {arr.shape}, expected [n_coils, H, W] or [B, n_coils, H, W]")
    if not (np.issubdtype(arr.dtype, np.complexfloating) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{fn}: kspace has dtype {arr.dtype}, expected a complex (or float) dtype")
    if not np.isfinite(arr).all():
        raise ValueError(f"{fn}: kspace contains NaN or inf")
    single = arr.dtype in (np.float32, np.complex64)
    out_dtype = torch.complex64 if single else torch.complex128
    added = arr.ndim == 3
    arr = arr[None] if added else arr
    return arr.astype(np.complex128, copy=False), out_dtype, added


def _finish(maps: np.ndarray, dtype: torch.dtype, squeeze: bool) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(maps)).to(dtype)
    return t[0] if squeeze else t


def _sampled_pattern(kspace: np.ndarray) -> np.ndarray:
    """``[H, W]`` bool: positions where any coil of any batch item holds a non-zero sample."""
    return np.any(kspace != 0, axis=tuple(range(kspace.ndim - 2)))


def calibration_region(
    sampled: ArrayLike, max_size: int | Sequence[int] | None = None
) -> tuple[slice, slice]:
    """Largest fully sampled rectangle around the k-space centre ``(H // 2, W // 2)``.

    Starting from the DC sample, the rectangle grows one row or column at a time (top, bottom,
    left, right in turn) while the new edge is fully sampled and the size stays within
    ``max_size``.

    Args:
        sampled: a mask ``[H, W]`` (bool / 0-1), or k-space ``[..., H, W]`` (non-zero = sampled).
        max_size: optional cap on ``(rows, cols)`` (an int caps both).

    Returns:
        ``(row_slice, col_slice)``.

    Raises:
        ValueError: if the DC sample itself is missing (no calibration region).
    """
    arr = sampled.detach().cpu().numpy() if isinstance(sampled, torch.Tensor) else np.asarray(sampled)
    if arr.ndim < 2:
        raise ValueError(f"calibration_region: expected a mask [H, W] or k-space [..., H, W], got shape {arr.shape}")
    pattern = arr.astype(bool) if arr.ndim == 2 else _sampled_pattern(arr)
    h, w = pattern.shape
    if max_size is None:
        cap = (h, w)
    elif isinstance(max_size, (int, np.integer)):
        cap = (int(max_size), int(max_size))
    else:
        cap = tuple(int(s) for s in max_size)
    r0, r1, c0, c1 = h // 2, h // 2 + 1, w // 2, w // 2 + 1
    if not pattern[r0, c0]:
        raise ValueError("calibration_region: the k-space centre (DC) is not sampled; expected a fully sampled centre")
    grew = True
    while grew:
        grew = False
        if r1 - r0 < cap[0] and r0 > 0 and pattern[r0 - 1, c0:c1].all():
            r0, grew = r0 - 1, True
        if r1 - r0 < cap[0] and r1 < h and pattern[r1, c0:c1].all():
            r1, grew = r1 + 1, True
        if c1 - c0 < cap[1] and c0 > 0 and pattern[r0:r1, c0 - 1].all():
            c0, grew = c0 - 1, True
        if c1 - c0 < cap[1] and c1 < w and pattern[r0:r1, c1].all():
            c1, grew = c1 + 1, True
    return slice(r0, r1), slice(c0, c1)


def _resolve_calib(
    kspace: np.ndarray, calib: int | Sequence[int] | None, fn: str, min_size: int
) -> tuple[slice, slice]:
    h, w = kspace.shape[-2:]
    if calib is None:
        rows, cols = calibration_region(kspace)
    else:
        ch, cw = (int(calib), int(calib)) if isinstance(calib, (int, np.integer)) else (int(c) for c in calib)
        if not (1 <= ch <= h and 1 <= cw <= w):
            raise ValueError(f"{fn}: calib {calib!r} must fit the k-space grid ({h}, {w})")
        r0, c0 = (h - ch + 1) // 2, (w - cw + 1) // 2
        rows, cols = slice(r0, r0 + ch), slice(c0, c0 + cw)
    size = (rows.stop - rows.start, cols.stop - cols.start)
    if min(size) < min_size:
        raise ValueError(
            f"{fn}: the calibration region is {size[0]} x {size[1]}, expected at least {min_size} x {min_size} "
            "fully sampled centre lines (pass calib= or acquire a larger centre)"
        )
    return rows, cols


# --- ESPIRiT ---------------------------------------------------------------------------------
@contextlib.contextmanager
def _single_threaded() -> Iterator[None]:
    """Run a small dense LAPACK call on one intra-op thread, restoring the previous count.

    A ~300 x 300 eigendecomposition gains nothing from threads, but on a busy CPU a threaded LAPACK
    call can stall for seconds waiting for its workers, many times longer than it takes on one.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _espirit_gram(cal: np.ndarray, kernel_size: int, threshold: float, grid: tuple[int, int]) -> np.ndarray:
    """Per-pixel ESPIRiT matrices ``G(x)`` as ``[H, W, n_coils, n_coils]`` for one calibration block.

    ``cal`` is ``[n_coils, ch, cw]``; see the module docstring for the derivation.
    """
    nc = cal.shape[0]
    k = kernel_size
    h, w = grid
    # 1. calibration matrix: rows are patches, columns (coil, row offset, column offset)
    patches = np.lib.stride_tricks.sliding_window_view(cal, (k, k), axis=(1, 2))  # [nc, nr, nw, k, k]
    a = patches.transpose(1, 2, 0, 3, 4).reshape(-1, nc * k * k)
    # 2. signal subspace: right singular vectors above the relative threshold. They are the
    # eigenvectors of the small Gram matrix A^H A (eigenvalues s^2).
    ta = torch.from_numpy(np.ascontiguousarray(a))
    with _single_threaded():
        gram = ta.conj().T @ ta
        ev, vecs = torch.linalg.eigh(gram)  # ascending
    s = torch.sqrt(torch.clamp(ev.flip(0), min=0)).numpy()
    vh = vecs.flip(1).numpy().conj().T  # rows = right singular vectors as in A = U S V^H
    n_keep = max(1, int(np.count_nonzero(s >= threshold * s[0])))
    kernels = vh[:n_keep].reshape(n_keep, nc, k, k)
    # 3./4. w_j on a 2k x 2k grid (exact: G has frequencies |d| <= k - 1 < k per axis)
    m = 2 * k
    padded = np.zeros((n_keep, nc, m, m), dtype=np.complex128)
    padded[:, :, :k, :k] = kernels
    w_small = np.fft.ifft2(padded) * (m * m)  # sum_p V[p] exp(+2 pi i p xi / m)
    g_small = np.einsum("jcxy,jdxy->cdxy", w_small, w_small.conj()) / (k * k)
    coeff = np.fft.fft2(g_small) / (m * m)  # Fourier coefficients at frequencies d mod m
    d = np.arange(-(k - 1), k)
    g_hat = np.zeros((nc, nc, h, w), dtype=np.complex128)
    g_hat[:, :, (d % h)[:, None], (d % w)[None, :]] = coeff[:, :, (d % m)[:, None], (d % m)[None, :]]
    g = np.fft.ifft2(g_hat) * (h * w)  # G at uncentred pixel coordinate xi = 0..N-1
    # Pixel index i sits at centred coordinate i - N // 2: fftshift maps one onto the other.
    g = np.fft.fftshift(g, axes=(-2, -1))
    return g.transpose(2, 3, 0, 1)


def espirit_maps(
    kspace: ArrayLike,
    *,
    calib: int | Sequence[int] | None = None,
    kernel_size: int = 6,
    threshold: float = 0.02,
    crop: float = 0.8,
    ref_coil: int = 0,
    return_eigenvalues: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """ESPIRiT coil sensitivities (first eigenvector maps) from the fully sampled k-space centre.

    Args:
        kspace: centred k-space ``[n_coils, H, W]`` or ``[B, n_coils, H, W]`` (torch or numpy,
            complex; zeros where not sampled). Each batch item gets its own maps.
        calib: side(s) of the centred calibration box; ``None`` detects the largest fully sampled
            centre rectangle (:func:`calibration_region`).
        kernel_size: ESPIRiT kernel width ``k`` (BART default 6).
        threshold: keep singular vectors with ``s >= threshold * s_max`` (the paper's demo uses 0.02).
        crop: zero the maps where the largest eigenvalue is below this (BART default 0.8); 0 keeps all.
        ref_coil: coil whose phase is removed from all maps.
        return_eigenvalues: also return the largest eigenvalue per pixel ``[(B,) H, W]``.

    Returns:
        complex maps of the input's leading shape on the CPU (complex64 for single-precision input,
        else complex128) with ``sum_c |S_c|^2 = 1`` where not cropped; optionally the eigenvalues
        (real).

    Raises:
        ValueError: bad shape, NaN/inf, a calibration region smaller than ``kernel_size + 1``,
            or parameters out of range.
    """
    fn = "espirit_maps"
    arr, out_dtype, squeeze = _to_numpy_kspace(kspace, fn)
    b, nc, h, w = arr.shape
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, (int, np.integer)) or kernel_size < 1:
        raise ValueError(f"{fn}: kernel_size must be an int >= 1, got {kernel_size!r}")
    if not (0.0 < float(threshold) < 1.0):
        raise ValueError(f"{fn}: threshold must be in (0, 1), got {threshold!r}")
    if not (0.0 <= float(crop) < 1.0):
        raise ValueError(f"{fn}: crop must be in [0, 1), got {crop!r}")
    if not (0 <= int(ref_coil) < nc):
        raise ValueError(f"{fn}: ref_coil {ref_coil} out of range, expected 0 <= ref_coil < {nc}")
    if min(h, w) < 2 * kernel_size - 1:
        raise ValueError(f"{fn}: grid ({h}, {w}) too small for kernel_size {kernel_size}; expected >= {2 * kernel_size - 1}")

    maps = np.zeros((b, nc, h, w), dtype=np.complex128)
    eigs = np.zeros((b, h, w), dtype=np.float64)
    for i in range(b):
        rows, cols = _resolve_calib(arr[i], calib, fn, kernel_size + 1)
        cal = arr[i][:, rows, cols]
        # Scale-free thresholds: normalising the calibration data changes nothing but the numerics.
        scale = np.abs(cal).max()
        if scale == 0:
            raise ValueError(f"{fn}: the calibration region is all zeros; expected measured centre k-space")
        g = _espirit_gram(cal / scale, int(kernel_size), float(threshold), (h, w))
        # Batched 8x8 Hermitian eigendecomposition; torch's LAPACK call is faster than numpy's loop.
        val, vec = torch.linalg.eigh(torch.from_numpy(g))
        lam = val[..., -1].numpy()
        v = vec[..., :, -1].numpy()  # [H, W, nc], unit norm
        ref = v[..., int(ref_coil)]
        mag = np.abs(ref)
        phase = np.where(mag > 0, ref / np.where(mag > 0, mag, 1.0), 1.0)
        v = v * phase.conj()[..., None]
        v[lam < crop] = 0
        maps[i] = v.transpose(2, 0, 1)
        eigs[i] = lam
    out = _finish(maps, out_dtype, squeeze)
    if return_eigenvalues:
        ev = torch.from_numpy(eigs[0] if squeeze else eigs)
        return out, ev.to(torch.float32 if out_dtype == torch.complex64 else torch.float64)
    return out


# --- fallback and coil combination -----------------------------------------------------------
def sum_of_squares_maps(
    kspace: ArrayLike,
    *,
    calib: int | Sequence[int] | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Low-resolution sensitivities: windowed calibration-region coil images divided by their RSS.

    The calibration region (detected or given) is zero-padded to ``H x W`` with a separable Hann
    window (to suppress Gibbs ringing), transformed to the image domain, and divided by the
    root-sum-of-squares across coils, so ``sum_c |S_c|^2 = 1`` where the RSS exceeds
    ``eps * max(RSS)`` and 0 elsewhere. The object's own low-resolution phase stays in the maps.

    Args:
        kspace: centred k-space ``[n_coils, H, W]`` or ``[B, n_coils, H, W]``.
        calib: centred calibration box side(s), or ``None`` to detect it.
        eps: relative RSS floor below which maps are 0.

    Returns:
        complex maps with the input's leading shape.
    """
    fn = "sum_of_squares_maps"
    arr, out_dtype, squeeze = _to_numpy_kspace(kspace, fn)
    b, nc, h, w = arr.shape
    maps = np.zeros_like(arr)
    for i in range(b):
        rows, cols = _resolve_calib(arr[i], calib, fn, 2)
        low = np.zeros((nc, h, w), dtype=np.complex128)
        ch, cw = rows.stop - rows.start, cols.stop - cols.start
        window = np.outer(np.hanning(ch + 2)[1:-1], np.hanning(cw + 2)[1:-1])
        low[:, rows, cols] = arr[i][:, rows, cols] * window
        img = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(low, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
        r = np.sqrt((np.abs(img) ** 2).sum(0))
        keep = r > eps * r.max()
        maps[i] = np.where(keep, img / np.where(keep, r, 1.0), 0)
    return _finish(maps, out_dtype, squeeze)


def estimate_coil_maps(kspace: ArrayLike, method: str = DEFAULT_COIL_MAP_METHOD, **kwargs) -> torch.Tensor:
    """Coil sensitivities by ``method`` (one of :data:`COIL_MAP_METHODS`; default ``"espirit"``).

    ``kwargs`` go to :func:`espirit_maps` or :func:`sum_of_squares_maps`.
    """
    if method == "espirit":
        return espirit_maps(kspace, **kwargs)
    if method == "sum_of_squares":
        return sum_of_squares_maps(kspace, **kwargs)
    raise ValueError(f"estimate_coil_maps: unknown method {method!r}, expected one of {COIL_MAP_METHODS}")


def rss(images: ArrayLike, dim: int = 1, keepdim: bool = True) -> torch.Tensor | np.ndarray:
    """Root-sum-of-squares coil combination ``sqrt(sum_c |x_c|^2)`` along ``dim``.

    For coil images ``[B, n_coils, H, W]`` the default gives a real magnitude image ``[B, 1, H, W]``
    (the image contract). Returns the same array type (torch / numpy) as the input.
    """
    if isinstance(images, torch.Tensor):
        return torch.sqrt((images.abs() ** 2).sum(dim=dim, keepdim=keepdim))
    if isinstance(images, np.ndarray):
        return np.sqrt((np.abs(images) ** 2).sum(axis=dim, keepdims=keepdim))
    raise ValueError(f"rss: images must be a torch.Tensor or numpy array, got {type(images).__name__}")


def simulated_coil_maps(
    n_coils: int,
    shape: Sequence[int],
    *,
    normalise: bool = True,
    dtype: torch.dtype = torch.complex64,
) -> torch.Tensor:
    """Smooth synthetic receive sensitivities ``[n_coils, H, W]`` for simulation and tests.

    Coil ``c`` sits at angle ``2 pi c / n_coils`` on a ring of radius 0.7 (in units of the FOV,
    centred at pixel ``(H // 2, W // 2)``); its magnitude is a Gaussian of width 0.35 FOV around that
    point and its phase a gentle linear ramp (at most ~0.3 pi across the FOV) plus a constant ``c``
    radians, so maps are smooth, overlapping and distinct, as from a birdcage-like array.
    With ``normalise`` they satisfy ``sum_c |S_c|^2 = 1`` at every pixel (the SENSE convention
    ESPIRiT also returns).

    Args:
        n_coils: number of coils (>= 1).
        shape: ``(H, W)``.
        normalise: divide by the root-sum-of-squares across coils.
        dtype: complex64 or complex128.
    """
    if isinstance(n_coils, bool) or not isinstance(n_coils, (int, np.integer)) or n_coils < 1:
        raise ValueError(f"simulated_coil_maps: n_coils must be an int >= 1, got {n_coils!r}")
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"simulated_coil_maps: shape must be (H, W), got {shape!r}") from exc
    if h < 1 or w < 1:
        raise ValueError(f"simulated_coil_maps: shape must be positive, got {(h, w)}")
    if dtype not in (torch.complex64, torch.complex128):
        raise ValueError(f"simulated_coil_maps: dtype must be complex64 or complex128, got {dtype}")
    yy = ((np.arange(h) - h // 2) / h)[:, None]
    xx = ((np.arange(w) - w // 2) / w)[None, :]
    maps = np.empty((n_coils, h, w), dtype=np.complex128)
    for c in range(n_coils):
        a = 2 * np.pi * c / n_coils
        mag = np.exp(-((yy - 0.7 * np.sin(a)) ** 2 + (xx - 0.7 * np.cos(a)) ** 2) / (2 * 0.35**2))
        maps[c] = mag * np.exp(1j * (np.pi * 0.6 * (yy * np.cos(a) + xx * np.sin(a)) + c))
    if normalise:
        maps /= np.sqrt((np.abs(maps) ** 2).sum(0))
    return torch.from_numpy(maps).to(dtype)
