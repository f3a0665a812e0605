import numpy as np
import pytest
import torch

from priors.datasets import SliceDataset, normalize_slices, resize_square, split_by_patient
from priors.normalization import CT_WINDOW, MR_PERCENTILE
from tests.priors.helpers import synthetic_ct


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("frac", [0.1, 0.25, 0.5])
def test_split_by_patient_disjoint_and_complete(seed, frac):
    rng = np.random.default_rng(seed)
    ids = [f"p{rng.integers(0, 12)}" for _ in range(60)]
    tr, va = split_by_patient(ids, frac, seed)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(60))
    assert not {ids[i] for i in tr} & {ids[i] for i in va}
    assert len(va) > 0 and len(tr) > 0


def test_split_deterministic_and_order_independent():
    ids = [f"p{i % 7}" for i in range(30)]
    a = split_by_patient(ids, 0.3, 1)
    b = split_by_patient(ids, 0.3, 1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    va_patients = {ids[i] for i in a[1]}
    rev = ids[::-1]
    assert {rev[i] for i in split_by_patient(rev, 0.3, 1)[1]} == va_patients


def test_split_edge_cases():
    tr, va = split_by_patient(["a"] * 5, 0.5, 0)
    assert len(va) == 0 and len(tr) == 5
    tr, va = split_by_patient(["a", "b"], 0.0, 0)
    assert len(va) == 0
    with pytest.raises(ValueError):
        split_by_patient(["a"], 1.0, 0)


def test_ct_window_normalisation_clips():
    x = np.array([[[-3000.0, -1024.0, 512.0, 5000.0]]], dtype=np.float32)
    assert np.allclose(normalize_slices(x, CT_WINDOW), [[[0.0, 0.0, 0.5, 1.0]]])


def test_mr_per_volume_percentile():
    rng = np.random.default_rng(0)
    vol = rng.random((4, 8, 8)).astype(np.float32) * np.array([1, 2, 3, 4])[:, None, None]
    out = normalize_slices(vol, MR_PERCENTILE, volume_ids=["v"] * 4)
    # One scale for the whole volume, so the relative brightness of slices survives.
    assert np.allclose(out * np.percentile(vol, 99.9), vol, atol=1e-5)


def test_resize_square_keeps_aspect():
    img = np.ones((10, 20), dtype=np.float32)
    out = resize_square(img, 20, 0.0)
    assert out.shape == (20, 20)
    assert out[0].max() == 0.0 and out[10].min() == 1.0


def test_dataset_shapes_crops_and_determinism():
    ds = SliceDataset(synthetic_ct(6, 40), CT_WINDOW, 32, 16)
    assert ds.images.shape == (6, 1, 32, 32)
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    assert ds[0].shape == (1, 16, 16)
    a = ds.sample_batch(5, torch.Generator().manual_seed(1))
    b = ds.sample_batch(5, torch.Generator().manual_seed(1))
    assert a.shape == (5, 1, 16, 16) and torch.equal(a, b)


def test_crops_are_subimages_and_flips_only_left_right():
    ds = SliceDataset(synthetic_ct(1, 32), CT_WINDOW, 32, 32)
    full = ds.images[0]
    seen = set()
    for k in range(20):
        x = ds.sample_batch(1, torch.Generator().manual_seed(k))[0]
        if torch.equal(x, full):
            seen.add("id")
        elif torch.equal(x, full.flip(-1)):
            seen.add("lr")
        else:
            raise AssertionError("augmentation other than a left-right flip")
    assert seen == {"id", "lr"}


def test_mr_intensity_scaling_only_for_mr():
    rng = np.random.default_rng(0)
    sl = [rng.random((16, 16)).astype(np.float32) for _ in range(2)]
    ds = SliceDataset(sl, MR_PERCENTILE, 16, None, flip_lr=False, intensity_scale=0.1)
    x = ds.sample_batch(4, torch.Generator().manual_seed(0))
    ratios = [float(x[i].sum() / ds.images[j].sum()) for i in range(4) for j in range(2)]
    assert any(abs(r - 1) > 1e-3 for r in ratios)
    ct = SliceDataset(synthetic_ct(2, 16), CT_WINDOW, 16, None, flip_lr=False)
    assert ct.intensity_scale == 0.0


def test_patch_larger_than_image_rejected():
    with pytest.raises(ValueError):
        SliceDataset(synthetic_ct(1, 16), CT_WINDOW, 16, 32)
