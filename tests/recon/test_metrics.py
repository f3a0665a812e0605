"""recon.metrics: known values, conventions, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recon import metrics


def _img(seed: int = 0, shape=(32, 32)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape)


def test_identical_images_give_inf_psnr_and_unit_ssim():
    x = _img()
    assert metrics.psnr(x, x, data_range=1.0) == math.inf
    assert metrics.ssim(x, x, data_range=1.0) == pytest.approx(1.0)
    assert metrics.rmse(x, x) == 0.0


def test_known_mse_gives_known_psnr():
    ref = np.zeros((16, 16))
    x = ref + 0.1  # MSE = 0.01 -> PSNR = 10 log10(1 / 0.01) = 20 dB
    assert metrics.psnr(x, ref, data_range=1.0) == pytest.approx(20.0)
    assert metrics.psnr(x, ref, data_range=10.0) == pytest.approx(40.0)
    assert metrics.rmse(x, ref) == pytest.approx(0.1)


def test_torch_and_numpy_agree_and_batches_are_per_slice():
    a, b = _img(1), _img(2)
    ref = np.stack([a, b])[:, None]
    x = ref + np.array([0.1, 0.01])[:, None, None, None]
    p = metrics.psnr(torch.from_numpy(x).float(), torch.from_numpy(ref).float(), data_range=1.0)
    assert isinstance(p, np.ndarray) and p.shape == (2,)
    np.testing.assert_allclose(p, [20.0, 40.0], atol=1e-4)
    s = metrics.ssim(x, ref, data_range=1.0)
    assert s.shape == (2,)
    assert s[0] == pytest.approx(metrics.ssim(x[0, 0], ref[0, 0], data_range=1.0))


def test_data_range_is_required_and_validated():
    x = _img()
    with pytest.raises(TypeError):
        metrics.psnr(x, x)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        metrics.ssim(x, x)  # type: ignore[call-arg]
    for bad in (0, -1, float("nan"), float("inf"), None, "wide"):
        with pytest.raises(ValueError):
            metrics.psnr(x, x, data_range=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "x, ref",
    [
        (np.zeros((8, 8)), np.zeros((8, 9))),  # shape mismatch
        (np.zeros((2, 3, 8, 8)), np.zeros((2, 3, 8, 8))),  # C != 1
        (np.zeros((8,)), np.zeros((8,))),  # 1D
    ],
)
def test_bad_shapes_raise(x, ref):
    with pytest.raises(ValueError):
        metrics.psnr(x, ref, data_range=1.0)


def test_nan_and_complex_raise():
    x = _img()
    y = x.copy()
    y[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        metrics.psnr(y, x, data_range=1.0)
    with pytest.raises(ValueError, match="NaN"):
        metrics.ct_metrics(x, y)
    with pytest.raises(ValueError, match="complex"):
        metrics.ssim(x + 1j * x, x, data_range=1.0)


def test_ct_window_clipping():
    ref = np.full((16, 16), -1000.0)
    ref[4:12, 4:12] = 40.0
    # Outside the window: values beyond [-1000, 1000] are clipped before comparison.
    x = ref.copy()
    x[ref == -1000.0] = -3000.0  # air reconstructed far below the window: invisible after clipping
    m = metrics.ct_metrics(x, ref)
    assert m["psnr"] == math.inf and m["rmse"] == 0.0 and m["ssim"] == pytest.approx(1.0)
    assert m["rmse_raw"] > 0
    # Inside the window: a 20 HU error everywhere -> PSNR = 20 log10(2000 / 20) = 40 dB.
    m = metrics.ct_metrics(ref + 20.0, ref)
    assert m["psnr"] == pytest.approx(40.0)
    assert m["rmse"] == pytest.approx(20.0)
    # A custom window changes the data range.
    m = metrics.ct_metrics(ref + 20.0, ref, window=(-1000.0, 1000.0 + 2000.0))
    assert m["psnr"] == pytest.approx(20 * math.log10(4000 / 20))
    with pytest.raises(ValueError):
        metrics.ct_metrics(ref, ref, window=(100.0, -100.0))


def test_mr_metrics_normalise_by_reference_percentile():
    ref = _img(3, (40, 40)) + 0.5
    scale = 7.3
    # Scaling both images by the same factor leaves the metrics unchanged.
    x = ref + 0.05 * _img(4, (40, 40))
    m1 = metrics.mr_metrics(x, ref)
    m2 = metrics.mr_metrics(scale * x, scale * ref)
    assert m1["psnr"] == pytest.approx(m2["psnr"])
    assert m1["ssim"] == pytest.approx(m2["ssim"])
    # The normalised PSNR equals the PSNR with data_range = the reference's 99.9th percentile.
    p999 = np.percentile(ref, 99.9)
    assert m1["psnr"] == pytest.approx(metrics.psnr(x, ref, data_range=p999))
    # Complex inputs are reduced to magnitude.
    phase = np.exp(1j * _img(5, (40, 40)))
    m3 = metrics.mr_metrics(x * phase, ref * phase)
    assert m3["psnr"] == pytest.approx(m1["psnr"])
    with pytest.raises(ValueError):
        metrics.mr_metrics(x, np.zeros_like(ref))


def test_z_variation_is_the_mean_absolute_step_between_neighbouring_slices_inside_the_mask():
    z = np.arange(4, dtype=np.float64)[:, None, None] * 10.0
    stack = np.broadcast_to(z, (4, 8, 8)).copy()  # every slice 10 HU above the one before
    assert metrics.z_variation(stack) == pytest.approx(10.0)
    stack[:, :, :4] = -1000.0  # air on the left half: constant along z, excluded by the body mask
    mask = metrics.body_mask(stack, "ct")
    assert metrics.z_variation(stack, mask) == pytest.approx(10.0)
    assert metrics.z_variation(stack) == pytest.approx(5.0)
    assert metrics.z_variation(torch.from_numpy(stack)[:, None]) == pytest.approx(5.0)  # [Z, 1, H, W]
    with pytest.raises(ValueError):
        metrics.z_variation(stack[:1])
    with pytest.raises(ValueError):
        metrics.z_variation(stack, np.zeros_like(stack, dtype=bool))


def test_body_mask_ct_by_hu_and_mr_by_each_slices_percentile():
    ct = np.full((1, 4, 4), -1000.0)
    ct[0, 1:3, 1:3] = 40.0
    assert metrics.body_mask(ct, "ct").sum() == 4
    mr = np.stack([np.eye(4), 100 * np.eye(4)])  # each slice judged against its own brightness
    assert metrics.body_mask(mr, "mr").sum(axis=(1, 2)).tolist() == [4, 4]
