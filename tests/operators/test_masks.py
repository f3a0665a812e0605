"""Sampling masks: achieved acceleration, determinism, centre, fastMRI semantics, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from operators.masks import (
    MASK_KINDS,
    achieved_acceleration,
    equispaced_mask,
    gaussian_mask,
    make_mask,
    poisson_disc_mask,
    radial_mask,
    random_mask,
)

# Tolerances on the achieved acceleration. 1D kinds are counted in whole columns: random and
# gaussian sample exactly round(W / a) columns (|n - W / a| <= 0.5); fastMRI's equispaced rule
# (arange(offset, W - 1, a'), rounded) lands within 1.5 columns of W / a (measured over 40 seeds x
# W in {128, ..., 640}), so 2 columns are allowed. 2D kinds are relative: poisson bisects its radius
# to 1 %; radial can only add whole spokes (one spoke ~ 2-3 % of the samples at 8x).
COLUMN_TOL = {"equispaced": 2.0, "random": 0.5, "gaussian": 0.5}
RELATIVE_TOL = {"poisson": 0.02, "radial": 0.04}
SHAPES = [(128, 128), (180, 230), (320, 320)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("acc, cf", [(4, 0.08), (8, 0.04)])
@pytest.mark.parametrize("kind", MASK_KINDS)
def test_acceleration_determinism_centre(kind: str, acc: float, cf: float, shape: tuple[int, int]) -> None:
    m = make_mask(kind, shape, acc, cf, seed=7)
    assert m.dtype == torch.bool and tuple(m.shape) == shape
    got = achieved_acceleration(m)
    if kind in COLUMN_TOL:
        n_cols = int(m[0].sum())
        assert abs(n_cols - shape[1] / acc) <= COLUMN_TOL[kind], f"{kind}: {n_cols} columns for {shape[1]} / {acc}"
    else:
        assert abs(got - acc) / acc <= RELATIVE_TOL[kind], f"{kind}: achieved {got:.3f} for {acc}"
    assert m[shape[0] // 2, shape[1] // 2], "the DC sample must be acquired"
    assert torch.equal(m, make_mask(kind, shape, acc, cf, seed=7)), "same seed, same mask"


@pytest.mark.parametrize("kind", ["equispaced", "random", "gaussian", "poisson", "radial"])
def test_different_seeds_differ(kind: str) -> None:
    a = make_mask(kind, (128, 128), 4, 0.08, seed=1)
    b = make_mask(kind, (128, 128), 4, 0.08, seed=2)
    assert not torch.equal(a, b)


@pytest.mark.parametrize("kind", ["equispaced", "random", "gaussian"])
def test_1d_masks_have_full_centre_and_whole_columns(kind: str) -> None:
    w, cf = 320, 0.08
    m = make_mask(kind, (64, w), 4, cf, seed=0)
    assert (m == m[:1]).all(), "1D masks sample whole columns (phase encoding along the last axis)"
    n_low = round(w * cf)
    pad = (w - n_low + 1) // 2
    assert m[0, pad : pad + n_low].all()
    col = make_mask(kind, w, 4, cf, seed=0)
    assert col.shape == (w,) and torch.equal(col, m[0])


def test_equispaced_fastmri_semantics_worked_example() -> None:
    # W = 16, acceleration 4, centre fraction 1/8: n_low = 2 centre columns (7, 8), adjusted spacing
    # a' = 4 (2 - 16) / (2 * 4 - 16) = 7, so with offset 0 the columns 0, 7, 14 are added.
    m = equispaced_mask(16, 4, 0.125, offset=0)
    assert np.flatnonzero(m.numpy()).tolist() == [0, 7, 8, 14]
    # fastMRI knee default (W = 368, 4x, 8 %): spacing ~3.57 columns, total W / 4 = 92 within a column
    m = equispaced_mask(368, 4, 0.08, seed=0)
    assert abs(int(m.sum()) - 92) <= 1
    assert equispaced_mask(100, 1, 0.0).all()


def test_random_and_gaussian_exact_counts_and_density() -> None:
    w = 256
    assert int(random_mask(w, 4, 0.08, seed=3).sum()) == 64
    g = np.mean([gaussian_mask(w, 4, 0.04, seed=s).numpy() for s in range(20)], axis=0)
    mid = w // 2
    assert g[mid - 40 : mid + 40].mean() > 2 * np.r_[g[:40], g[-40:]].mean(), "Gaussian density peaks at the centre"
    assert torch.equal(random_mask(w, 4, 0.08, seed=np.random.default_rng(5)), random_mask(w, 4, 0.08, seed=5))


def test_poisson_disc_variable_density_and_calibration() -> None:
    m = poisson_disc_mask((128, 128), 5, calib=16, seed=0).numpy()
    assert m[56:72, 56:72].all(), "calibration box fully sampled"
    yy, xx = np.mgrid[:128, :128]
    r = np.hypot(yy - 64, xx - 64)
    inner, outer = m[(r > 12) & (r < 30)].mean(), m[r > 55].mean()
    assert inner > 2 * outer, f"density should fall off: {inner:.2f} vs {outer:.2f}"
    # Poisson-disc property: away from the dense centre no two samples are 4-neighbours
    far = m & (r > 55)
    assert not (far[1:, :] & far[:-1, :]).any() and not (far[:, 1:] & far[:, :-1]).any()
    # uniform density: no grid radius gives 3x exactly, the random fix-up meets the budget
    u = poisson_disc_mask((64, 64), 3, calib=0, seed=1, variable_density=0.0)
    assert u[32, 32] and int(u.sum()) == round(64 * 64 / 3)


def test_radial_spokes() -> None:
    m = radial_mask((64, 64), n_spokes=2)  # horizontal and vertical diameters
    assert m[32].all() and m[:, 32].all() and int(m.sum()) == 127
    m = radial_mask((128, 128), acceleration=6)
    assert abs(achieved_acceleration(m) - 6) / 6 < 0.04
    mc = radial_mask((128, 128), n_spokes=10, calib=12)
    assert mc[58:70, 58:70].all()


def test_achieved_acceleration() -> None:
    assert achieved_acceleration(torch.ones(10, 10)) == 1.0
    assert achieved_acceleration(np.array([1, 0, 0, 0])) == 4.0
    assert achieved_acceleration(torch.zeros(4, dtype=torch.bool)) == float("inf")


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: make_mask("spiral", (64, 64), 4), "unknown mask kind 'spiral'"),
        (lambda: make_mask("random", (64, 64), 0.5), "acceleration must be a finite number >= 1"),
        (lambda: make_mask("equispaced", (64, 64), float("nan")), "acceleration"),
        (lambda: make_mask("random", (64, 64), 4, 1.5), r"center_fraction must be in \[0, 1\]"),
        (lambda: make_mask("gaussian", (64, 64), 4, -0.1), r"center_fraction must be in \[0, 1\]"),
        (lambda: equispaced_mask(64, 4, 0.3), "center_fraction \\* acceleration < 1"),
        (lambda: random_mask(64, 8, 0.5), "center_fraction <= 1 / acceleration"),
        (lambda: make_mask("poisson", 64, 4), r"expected \(H, W\)"),
        (lambda: make_mask("poisson", (64, 64), 8, 0.5), "calibration box"),
        (lambda: radial_mask((64, 64)), "exactly one of n_spokes or acceleration"),
        (lambda: radial_mask((64, 64), n_spokes=0), "n_spokes must be an int >= 1"),
        (lambda: random_mask((0, 64), 4, 0.08), "must be positive"),
        (lambda: random_mask(64, 4, 0.08, seed=1.5), "seed must be an int"),
        (lambda: gaussian_mask(64, 4, 0.08, std_fraction=0), "std_fraction"),
    ],
)
def test_bad_arguments(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_real_fastmri_mask_acceleration_is_measurable(shared_data) -> None:
    """The shipped prospective fastMRI knee mask is a column mask; its acceleration is measured."""
    m = np.load(shared_data("mr_fastmri_knee_samples", "samples", "real", "prospective", "001_mask.npy"))
    assert (m == m[:1]).all() or (m == m[:, :1]).all()
    assert 3.0 < achieved_acceleration(m) < 6.0
