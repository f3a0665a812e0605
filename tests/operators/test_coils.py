"""Coil sensitivities: ESPIRiT on synthetic maps and on real 8-coil k-space, fallback, RSS, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from operators.coils import (
    COIL_MAP_METHODS,
    DEFAULT_COIL_MAP_METHOD,
    calibration_region,
    espirit_maps,
    estimate_coil_maps,
    rss,
    simulated_coil_maps,
    sum_of_squares_maps,
)
from operators.fourier import CartesianFourier, fft2c, ifft2c
from operators.masks import poisson_disc_mask
from tests.operators._cfl import read_cfl
from tests.operators.test_fourier import smooth_coil_maps

N, NC = 128, 8


def _phantom(h: int, w: int) -> np.ndarray:
    """Shepp-Logan magnitude with a smooth linear phase (the object's own phase must not leak into maps)."""
    xx = (np.arange(w) - w // 2) / w
    return resize(shepp_logan_phantom(), (h, w), anti_aliasing=True) * np.exp(1j * np.pi * 0.5 * xx)[None, :]


def _synthetic(n: int = N, w: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised smooth maps ``[NC, n, w]``, a complex phantom, and their full centred k-space."""
    w = n if w is None else w
    maps = smooth_coil_maps(NC, n, w).numpy()
    img = _phantom(n, w)
    ksp = fft2c(torch.from_numpy(maps * img)).numpy()
    return maps, img, ksp


def _agreement(est: np.ndarray, true: np.ndarray, support: np.ndarray, ref_coil: int = 0) -> tuple[float, float]:
    """Mean and minimum over ``support`` of the per-pixel coil-vector correlation ``|<est, true>|``.

    The true maps get the same phase normalisation (reference coil real, >= 0) as the estimate;
    both have unit norm per pixel, so 1 means identical up to a per-pixel global phase.
    """
    true = true * np.exp(-1j * np.angle(true[ref_coil]))
    corr = np.abs((est.conj() * true).sum(0)) / (
        np.linalg.norm(est, axis=0) * np.linalg.norm(true, axis=0) + 1e-30
    )
    return float(corr[support].mean()), float(corr[support].min())


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


# --- ESPIRiT on synthetic data -------------------------------------------------------------------
def test_espirit_recovers_synthetic_maps() -> None:
    """Measured: mean per-pixel correlation 0.99997, minimum 0.9987 inside the object (128 x 128)."""
    maps, img, ksp = _synthetic()
    est, eig = espirit_maps(ksp, calib=24, return_eigenvalues=True)
    assert est.shape == (NC, N, N) and est.dtype == torch.complex128
    support = np.abs(img) > 0.05
    mean, worst = _agreement(est.numpy(), maps, support)
    assert mean > 0.9995 and worst > 0.995, (mean, worst)
    assert float(eig.numpy()[support].min()) > 0.99  # eigenvalue 1 where the maps hold
    kept = eig.numpy() >= 0.8
    assert np.allclose((est.abs() ** 2).sum(0).numpy()[kept], 1.0, atol=1e-10)
    assert (est.numpy()[:, ~kept] == 0).all()
    # reference coil phase removed: its map is real and non-negative
    assert np.abs(est.numpy()[0].imag).max() < 1e-12 and est.numpy()[0].real.min() >= 0


def test_espirit_odd_grid() -> None:
    """Odd, non-square grids keep the centring convention (DC at (H // 2, W // 2))."""
    maps, img, ksp = _synthetic(127, 131)
    mean, worst = _agreement(espirit_maps(ksp, calib=20).numpy(), maps, np.abs(img) > 0.05)
    assert mean > 0.9995 and worst > 0.99, (mean, worst)


def test_espirit_from_undersampled_kspace_uses_calibration_region() -> None:
    maps, img, ksp = _synthetic()
    mask = poisson_disc_mask((N, N), 4, calib=24, seed=0).numpy()
    under = ksp * mask
    assert calibration_region(mask) == (slice(52, 76), slice(52, 76))
    est = espirit_maps(under.astype(np.complex64))  # calibration box detected from the zeros
    assert est.dtype == torch.complex64
    mean, _ = _agreement(est.numpy().astype(np.complex128), maps, np.abs(img) > 0.05)
    assert mean > 0.999
    # the SENSE pinv of fully sampled data with the estimated maps returns the image magnitude
    op = CartesianFourier(np.ones((N, N)), est)
    x = op.pinv(torch.from_numpy(ksp.astype(np.complex64))[None])[0, 0].abs().numpy()
    support = np.abs(img) > 0.05
    assert np.abs(x - np.abs(img))[support].max() < 1e-3 * np.abs(img).max() + 1e-4


def test_espirit_batch_equals_per_item() -> None:
    _, _, ksp = _synthetic(64)
    batch = np.stack([ksp, 2 * ksp[::-1].copy()])
    out = espirit_maps(batch, calib=16)
    assert out.shape == (2, NC, 64, 64)
    assert torch.allclose(out[1], espirit_maps(batch[1], calib=16), atol=1e-10)


@pytest.mark.slow
def test_espirit_256_synthetic() -> None:
    """256 x 256 x 8 (about 1 s on an idle core): same agreement as at 128."""
    maps, img, ksp = _synthetic(256)
    est = espirit_maps(torch.from_numpy(ksp), calib=24)
    mean, worst = _agreement(est.numpy(), maps, np.abs(img) > 0.05)
    assert mean > 0.9995 and worst > 0.995


# --- fallback, dispatcher, RSS ---------------------------------------------------------------
def test_sum_of_squares_maps() -> None:
    maps, img, ksp = _synthetic()
    est = sum_of_squares_maps(ksp, calib=24).numpy()
    support = np.abs(img) > 0.05
    corr = np.abs((est.conj() * maps).sum(0))  # per-pixel, phase-free (the object phase stays in)
    assert corr[support].mean() > 0.999
    norm = (np.abs(est) ** 2).sum(0)
    assert np.allclose(norm[norm > 0], 1.0)


def test_estimate_coil_maps_dispatch() -> None:
    assert DEFAULT_COIL_MAP_METHOD == "espirit" and set(COIL_MAP_METHODS) == {"espirit", "sum_of_squares"}
    _, _, ksp = _synthetic(64)
    assert torch.allclose(estimate_coil_maps(ksp, calib=16, crop=0.0), espirit_maps(ksp, calib=16, crop=0.0))
    assert torch.equal(estimate_coil_maps(ksp, "sum_of_squares", calib=16), sum_of_squares_maps(ksp, calib=16))
    with pytest.raises(ValueError, match="unknown method 'walsh'"):
        estimate_coil_maps(ksp, "walsh")


def test_simulated_coil_maps() -> None:
    m = simulated_coil_maps(NC, (40, 50))
    assert m.shape == (NC, 40, 50) and m.dtype == torch.complex64
    assert torch.allclose((m.abs() ** 2).sum(0), torch.ones(40, 50), atol=1e-5)
    raw = simulated_coil_maps(NC, (40, 50), normalise=False, dtype=torch.complex128)
    assert float(raw.abs().max()) <= 1.0 and not torch.allclose((raw.abs() ** 2).sum(0), torch.ones(40, 50, dtype=torch.float64))
    with pytest.raises(ValueError, match="n_coils must be an int >= 1"):
        simulated_coil_maps(0, (4, 4))
    with pytest.raises(ValueError, match="shape must be"):
        simulated_coil_maps(2, 4)


def test_rss() -> None:
    x = torch.randn(2, NC, 8, 9, dtype=torch.complex128)
    r = rss(x)
    assert r.shape == (2, 1, 8, 9) and not r.is_complex()
    assert torch.allclose(r**2, (x.abs() ** 2).sum(1, keepdim=True))
    assert rss(x.numpy(), keepdim=False).shape == (2, 8, 9)
    # RSS of the coil images of normalised maps is the object magnitude
    maps, img, ksp = _synthetic(64)
    coil_images = ifft2c(torch.from_numpy(ksp))
    assert np.allclose(rss(coil_images, dim=0, keepdim=False).numpy(), np.abs(img), atol=1e-10)


# --- bad input -------------------------------------------------------------------------------
def test_bad_input() -> None:
    _, _, ksp = _synthetic(64)
    with pytest.raises(ValueError, match=r"expected \[n_coils, H, W\] or \[B, n_coils, H, W\]"):
        espirit_maps(ksp[0])
    bad = ksp.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        espirit_maps(bad)
    with pytest.raises(ValueError, match="calibration region is 4 x 4, expected at least 7 x 7"):
        espirit_maps(ksp, calib=4)
    hole = ksp.copy()
    hole[:, 32, 32] = 0
    with pytest.raises(ValueError, match="DC\\) is not sampled"):
        espirit_maps(hole)
    with pytest.raises(ValueError, match="threshold must be in"):
        espirit_maps(ksp, threshold=1.5)
    with pytest.raises(ValueError, match="crop must be in"):
        espirit_maps(ksp, crop=1.0)
    with pytest.raises(ValueError, match="ref_coil 8 out of range"):
        espirit_maps(ksp, ref_coil=8)
    with pytest.raises(ValueError, match="kernel_size"):
        espirit_maps(ksp, kernel_size=0)
    with pytest.raises(ValueError, match="torch.Tensor or numpy array"):
        espirit_maps([[1]])
    with pytest.raises(ValueError, match="rss: images must be"):
        rss([1.0, 2.0])


# --- real 8-coil k-space ---------------------------------------------------------------------
def _brain(shared_data) -> tuple[np.ndarray, np.ndarray]:
    root = shared_data("mr_brain_kspace_8coil")
    ksp = read_cfl(root / "ksp")  # BART dims [1, 180, 230, 8]
    img = read_cfl(root / "img")  # PICS with two ESPIRiT map sets: [1, 180, 230, 1, 2]
    assert ksp.shape == (1, 180, 230, 8) and img.shape == (1, 180, 230, 1, 2)
    kspace = np.ascontiguousarray(ksp[0].transpose(2, 0, 1))  # [8, 180, 230]
    reference = np.sqrt((np.abs(img[0, :, :, 0, :]) ** 2).sum(-1))
    return kspace, reference


def _cg_sense(op: CartesianFourier, y: torch.Tensor, n_iter: int) -> torch.Tensor:
    """Plain conjugate gradients on A^H A x = A^H y from zero (Pruessmann et al. 2001)."""
    b = op.adjoint(y)
    x, r = torch.zeros_like(b), b.clone()
    p, rs = r.clone(), (r.conj() * r).sum().real
    for _ in range(n_iter):
        ap = op.normal(p)
        alpha = rs / (p.conj() * ap).sum().real
        x, r = x + alpha * p, r - alpha * ap
        rs_new = (r.conj() * r).sum().real
        p, rs = r + (rs_new / rs) * p, rs_new
    return x


def test_espirit_real_8coil(shared_data) -> None:
    """ESPIRiT maps from the real 8-coil Poisson-disc k-space against BART's PICS image.

    Normalised correlation of magnitudes with |BART img| (measured): SENSE-combined zero-filled
    pinv 0.958, centre-only (20 x 20 calibration box) adjoint 0.893, 5 CG-SENSE iterations 0.995;
    with the coil maps permuted by one coil the CG figure drops to 0.81.
    """
    kspace, reference = _brain(shared_data)
    assert calibration_region(kspace) == (slice(80, 100), slice(105, 125))
    maps, eig = espirit_maps(kspace, return_eigenvalues=True)
    assert maps.shape == (8, 180, 230) and maps.dtype == torch.complex64
    obj = reference > 0.1 * reference.max()
    assert float((eig.numpy()[obj] >= 0.8).mean()) > 0.99, "maps must cover the head"

    mask = torch.from_numpy(np.abs(kspace).sum(0) > 0)
    y = torch.from_numpy(kspace / np.abs(kspace).max())[None]
    op = CartesianFourier(mask, maps)
    assert _ncc(op.pinv(y)[0, 0].abs().numpy(), reference) > 0.93

    rows, cols = calibration_region(kspace)
    centre = torch.zeros_like(mask)
    centre[rows, cols] = True
    low = CartesianFourier(centre, maps).pinv(y)[0, 0].abs().numpy()
    assert _ncc(low, reference) > 0.85

    assert _ncc(_cg_sense(op, y, 5)[0, 0].abs().numpy(), reference) > 0.985
    wrong = CartesianFourier(mask, maps.roll(1, dims=0))
    assert _ncc(_cg_sense(wrong, y, 5)[0, 0].abs().numpy(), reference) < 0.9
