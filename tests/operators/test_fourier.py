"""CartesianFourier: the shared property battery, orthonormality, SENSE, bad input, real k-space."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from operators.coils import simulated_coil_maps
from operators.fourier import CartesianFourier, fft2c, ifft2c
from operators.masks import MASK_KINDS, make_mask
from tests.operators.battery import check_operator, dot_test_error

H, W, NC = 32, 40, 4
DTYPES = [torch.float32, torch.float64]
COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def smooth_coil_maps(n_coils: int, h: int, w: int, normalise: bool = True) -> torch.Tensor:
    """Smooth synthetic sensitivities ``[n_coils, h, w]`` complex128 (``sum |S|^2 = 1`` if ``normalise``)."""
    return simulated_coil_maps(n_coils, (h, w), normalise=normalise, dtype=torch.complex128)


def _rand_image(b: int, h: int, w: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(b, 1, h, w, generator=g, dtype=dtype), torch.randn(b, 1, h, w, generator=g, dtype=dtype))


# --- the shared battery --------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("coils", ["single", "sense"])
def test_battery(kind: str, coils: str, dtype: torch.dtype) -> None:
    mask = make_mask(kind, (H, W), 3.0, 0.1, seed=1)
    maps = smooth_coil_maps(NC, H, W, normalise=False) if coils == "sense" else None
    op = CartesianFourier(mask, maps)
    res = check_operator(op, dtype)
    assert res["dot"] < {torch.float32: 1e-6, torch.float64: 1e-14}[dtype]


def test_battery_column_mask_and_full_mask() -> None:
    col = make_mask("equispaced", W, 4.0, 0.08, seed=0)
    assert col.shape == (W,)
    check_operator(CartesianFourier(col, image_shape=(H, W)), torch.float64)
    check_operator(CartesianFourier(torch.ones(H, W)), torch.float32)


def test_dot_test_figures() -> None:
    """The dot-test errors reported for the operator (single / SENSE x float32 / float64)."""
    mask = make_mask("random", (H, W), 4.0, 0.08, seed=0)
    for maps in (None, smooth_coil_maps(NC, H, W)):
        op = CartesianFourier(mask, maps)
        assert dot_test_error(op, torch.float64) < 1e-14
        assert dot_test_error(op, torch.float32) < 1e-6


# --- conventions -----------------------------------------------------------------------------
def test_centred_convention_dc_at_centre() -> None:
    x = torch.ones(1, 1, H, W, dtype=torch.complex128)
    k = fft2c(x)
    assert abs(k[0, 0, H // 2, W // 2] - np.sqrt(H * W)) < 1e-9
    k[0, 0, H // 2, W // 2] = 0
    assert k.abs().max() < 1e-9
    # odd sizes too: DC at (h // 2, w // 2) and ifft2c inverts fft2c
    y = torch.randn(2, 3, 17, 21, dtype=torch.complex128)
    assert torch.allclose(ifft2c(fft2c(y)), y, atol=1e-12)
    assert abs(fft2c(torch.ones(1, 1, 17, 21, dtype=torch.complex128))[0, 0, 8, 10] - np.sqrt(17 * 21)) < 1e-9


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_orthonormal_full_mask(dtype: torch.dtype) -> None:
    op = CartesianFourier(torch.ones(H, W, dtype=torch.bool))
    x = _rand_image(3, H, W, dtype)
    k = op(x)
    assert k.dtype == COMPLEX[dtype]
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert abs(float(k.norm() / x.norm()) - 1) < tol  # Parseval
    assert float((op.pinv(k) - x).norm() / x.norm()) < tol
    assert float((op.adjoint(k) - x).norm() / x.norm()) < tol
    assert float((op.normal(x) - x).norm() / x.norm()) < tol


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_real_input_promoted(dtype: torch.dtype) -> None:
    op = CartesianFourier(make_mask("random", (H, W), 2.0, 0.1, seed=0), smooth_coil_maps(NC, H, W))
    x = torch.randn(2, 1, H, W, dtype=dtype)
    y = op(x)
    assert y.dtype == COMPLEX[dtype]
    assert torch.allclose(y, op(x.to(COMPLEX[dtype])))
    assert op.adjoint(y.real).dtype == COMPLEX[dtype]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_sense_full_mask_pinv_exact(dtype: torch.dtype) -> None:
    maps = smooth_coil_maps(NC, H, W)  # sum_c |S_c|^2 = 1
    op = CartesianFourier(torch.ones(H, W), maps)
    x = _rand_image(2, H, W, dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert float((op.pinv(op(x)) - x).norm() / x.norm()) < tol
    assert float((op.normal(x) - x).norm() / x.norm()) < tol  # S^H S = I for normalised maps
    # unnormalised maps: pinv still inverts (divides by sum |S|^2), adjoint does not
    op2 = CartesianFourier(torch.ones(H, W), 2.5 * maps)
    assert float((op2.pinv(op2(x)) - x).norm() / x.norm()) < tol


def test_sense_forward_matches_per_coil_fft_and_mask_zeroes() -> None:
    mask = make_mask("poisson", (H, W), 3.0, 0.1, seed=2)
    maps = smooth_coil_maps(NC, H, W)
    op = CartesianFourier(mask, maps)
    x = _rand_image(1, H, W, torch.float64)
    y = op(x)
    assert y.shape == (1, NC, H, W)
    expected = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(maps[None] * x, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))
    assert torch.allclose(y[:, :, mask], expected[:, :, mask], atol=1e-12)
    assert (y[:, :, ~mask] == 0).all()


def test_pinv_zero_where_no_sensitivity() -> None:
    maps = smooth_coil_maps(NC, H, W)
    maps[:, :4] = 0
    op = CartesianFourier(torch.ones(H, W), maps)
    x = _rand_image(1, H, W, torch.float64)
    out = op.pinv(op(x))
    assert (out[..., :4, :] == 0).all()
    assert torch.allclose(out[..., 4:, :], x[..., 4:, :], atol=1e-12)


def test_batched_coil_maps() -> None:
    maps = torch.stack([smooth_coil_maps(NC, H, W), smooth_coil_maps(NC, H, W).roll(1, dims=0)])
    mask = make_mask("equispaced", (H, W), 2.0, 0.1, seed=0)
    op = CartesianFourier(mask, maps)
    x = _rand_image(2, H, W, torch.float64)
    y = op(x)
    for i in range(2):
        yi = CartesianFourier(mask, maps[i])(x[i : i + 1])
        assert torch.allclose(y[i : i + 1], yi, atol=1e-12)
    assert dot_test_error(op, torch.float64) < 1e-14
    with pytest.raises(ValueError, match="coil_maps hold 2 sets"):
        op(_rand_image(3, H, W, torch.float64))


def test_column_mask_equals_broadcast_mask() -> None:
    col = make_mask("random", W, 4.0, 0.1, seed=3)
    a = CartesianFourier(col, image_shape=(H, W))
    b = CartesianFourier(col[None].expand(H, W))
    c = CartesianFourier(col, smooth_coil_maps(NC, H, W))
    x = _rand_image(2, H, W, torch.float64)
    assert torch.equal(a(x), b(x))
    assert c.range_shape == (NC, H, W)


def test_module_state_and_devices() -> None:
    op = CartesianFourier(torch.ones(H, W), smooth_coil_maps(NC, H, W))
    assert set(dict(op.named_buffers())) == {"mask", "coil_maps"}
    assert "n_coils=4" in repr(op)
    assert abs(CartesianFourier(make_mask("equispaced", (H, W), 4.0, 0.08)).sampling_fraction - 0.25) < 0.05


# --- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mask=torch.ones(2, H, W)), r"expected \[H, W\] or a column mask \[W\]"),
        (dict(mask=torch.full((H, W), 0.5)), r"outside \{0, 1\}"),
        (dict(mask=torch.tensor([[0.0, float("nan")]])), "NaN or inf"),
        (dict(mask=torch.ones(W)), "needs image_shape"),
        (dict(mask=torch.ones(W + 1), image_shape=(H, W)), f"expected W = {W}"),
        (dict(mask=torch.ones(H, W), image_shape=(H, W + 2)), "does not match"),
        (dict(mask=torch.ones(H, W), coil_maps=torch.ones(NC, H, W + 1)), r"coil_maps grid .* does not match"),
        (dict(mask=torch.ones(H, W), coil_maps=torch.ones(H, W)), r"expected \[n_coils, H, W\]"),
        (dict(mask=torch.ones(H, W), coil_maps=torch.full((NC, H, W), float("inf"))), "NaN or inf"),
        (dict(mask=torch.ones(H, W), coil_maps=torch.ones(NC, H, W, dtype=torch.int32)), "dtype"),
    ],
)
def test_bad_construction(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CartesianFourier(**kwargs)


def test_bad_calls() -> None:
    op = CartesianFourier(torch.ones(H, W), smooth_coil_maps(NC, H, W))
    with pytest.raises(ValueError, match=r"image has shape .* expected \[B, 1, 32, 40\]"):
        op(torch.zeros(1, 1, H, W + 1, dtype=torch.complex64))
    with pytest.raises(ValueError, match=r"measurement has shape .* expected \[B, 4, 32, 40\]"):
        op.adjoint(torch.zeros(1, 1, H, W, dtype=torch.complex64))
    x = torch.zeros(1, 1, H, W, dtype=torch.complex64)
    x[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        op(x)
    with pytest.raises(ValueError, match="dtype"):
        op(torch.zeros(1, 1, H, W, dtype=torch.int64))
    with pytest.raises(ValueError, match="torch.Tensor"):
        op(np.zeros((1, 1, H, W)))


# --- real data ---------------------------------------------------------------------------------
def test_fastmri_knee_single_coil_roundtrip(shared_data) -> None:
    """The fastMRI complex knee image survives forward + pinv with a full mask; a 4x mask aliases."""
    img = np.load(shared_data("mr_fastmri_knee_samples", "samples", "single-coil", "001.npy"))
    x = torch.from_numpy(img)[None, None]
    full = CartesianFourier(torch.ones(img.shape))
    assert float((full.pinv(full(x)) - x).norm() / x.norm()) < 1e-12
    op = CartesianFourier(make_mask("equispaced", img.shape, 4.0, 0.08, seed=0))
    zf_err = float((op.pinv(op(x)) - x).norm() / x.norm())
    assert 0.02 < zf_err < 0.8
