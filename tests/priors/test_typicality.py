"""Typicality scores: reference statistics, the PF-ODE likelihood against a closed form, and the
bundled CT prior telling CT from what is not CT."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from benchmarks import typicality_sets as sets
from priors.checkpoint import save_checkpoint
from priors.errors import PriorError
from priors.gaussian import GaussianPrior
from priors.normalization import MR_PERCENTILE
from priors.registry import load_prior
from priors.typicality import (
    REFERENCE_FILE,
    GaussianModel,
    TailModel,
    fit_reference,
    leave_one_group_out_scores,
    load_reference,
    msma_features,
    ode_bits_per_dim,
    prepare_images,
    save_reference,
    score_images,
)
from priors.typicality.msma import FP32_BELOW_SIGMA
from tests.priors.helpers import synthetic_ct, tiny_prior

# --- reference statistics ------------------------------------------------------------------------


def test_tail_p_values_are_probabilities_falling_with_the_score():
    ref = np.random.default_rng(0).chisquare(10, size=50)
    tail = TailModel.fit(ref)
    s = np.linspace(0, 80, 200)
    p = tail.p_values(s)
    assert np.all((p > 0) & (p <= 1))
    assert np.all(np.diff(p) <= 1e-15)
    # the reference's own scores are spread over (0, 1]; far beyond them the exponential tail goes
    # below the empirical floor 1 / (n + 1), so a 1 % flag exists with 50 reference slices
    own = tail.p_values(ref)
    assert 0.3 < np.median(own) < 0.7
    assert tail.p_values([ref.max() * 3])[0] < 0.01 < 1 / 51


def test_two_sided_tail_flags_too_typical_scores_as_well():
    ref = np.random.default_rng(1).normal(3.0, 0.1, size=100)
    tail = TailModel.fit(ref, side="both")
    p = tail.p_values([3.0, 2.0, 4.0])
    assert p[0] > 0.5 and p[1] < 0.01 and p[2] < 0.01


def test_nan_score_has_nan_p_value_and_is_flagged(tmp_path):
    tail = TailModel.fit([1.0, 2.0, 3.0])
    assert np.isnan(tail.p_values([float("nan")])[0])


def test_gaussian_model_recovers_a_known_gaussian_and_round_trips():
    rng = np.random.default_rng(0)
    cov = np.array([[1.0, 0.8], [0.8, 1.0]])
    x = rng.multivariate_normal([1.0, -1.0], cov, size=4000)
    model = GaussianModel.fit(x)
    assert np.allclose(model.mean, [1.0, -1.0], atol=0.05)
    assert np.allclose(np.linalg.inv(model.precision), cov, atol=0.08)
    assert 0.0 <= model.shrinkage <= 1.0
    d = model.distance(x)
    assert abs(d.mean() - 2.0) < 0.1  # E[chi^2_2] = 2
    again = GaussianModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert np.allclose(again.distance(x[:5]), d[:5])


def test_leave_one_patient_out_scores_exceed_in_sample_scores():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 10))
    groups = [str(i // 3) for i in range(24)]
    lopo = leave_one_group_out_scores(x, groups)
    in_sample = GaussianModel.fit(x).distance(x)
    assert lopo.mean() > in_sample.mean()


# --- preparing images ----------------------------------------------------------------------------


def test_prepare_images_uses_the_ct_window_and_the_training_size():
    prior = tiny_prior()  # CT window, image_size 32
    x = prepare_images(prior, np.stack(synthetic_ct(3, size=40)))
    assert x.shape == (3, 1, 32, 32) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    # a 4-D tensor, a list and an array of the same slices give the same input
    imgs = synthetic_ct(2, size=32)
    a = prepare_images(prior, torch.from_numpy(np.stack(imgs))[:, None])
    assert torch.equal(a, prepare_images(prior, imgs))


def test_prepare_images_mr_scales_each_slice_unless_told_volumes():
    prior = tiny_prior()
    prior.normalization = MR_PERCENTILE
    imgs = [np.full((32, 32), 10.0, np.float32), np.full((32, 32), 40.0, np.float32), np.zeros((32, 32), np.float32)]
    per_slice = prepare_images(prior, imgs)
    assert torch.allclose(per_slice[0], per_slice[1]) and float(per_slice[2].abs().max()) == 0.0
    per_volume = prepare_images(prior, imgs, volume_ids=["a", "a", "b"])
    assert torch.allclose(per_volume[1], 4 * per_volume[0])


# --- statistics on a tiny prior --------------------------------------------------------------------


def test_msma_features_are_deterministic_and_per_slice():
    prior = tiny_prior()
    x = prepare_images(prior, synthetic_ct(3, size=32))
    f = msma_features(prior, x)
    assert f.shape == (3, 20) and f.dtype == torch.float64 and torch.isfinite(f).all()
    assert torch.equal(f, msma_features(prior, x))
    assert torch.allclose(f[1:2], msma_features(prior, x[1:2]))


def test_msma_runs_the_network_in_float32_below_its_threshold_whatever_the_precision():
    prior = tiny_prior()
    x = prepare_images(prior, synthetic_ct(2, size=32))
    sigmas = [FP32_BELOW_SIGMA / 4, FP32_BELOW_SIGMA / 2, 1.0, 3.0]
    full, reduced = msma_features(prior, x, sigmas, precision="fp32"), msma_features(prior, x, sigmas, precision="bf16")
    low = [0, 1, 4, 5]  # whole-slice and local features of the two levels below the threshold
    assert torch.equal(full[:, low], reduced[:, low])
    assert not torch.equal(full, reduced)  # the levels above it really ran in bfloat16
    assert torch.allclose(full, reduced, atol=0.05)


def test_ode_with_a_fixed_seed_gives_identical_bits_per_dim():
    prior = tiny_prior()
    x = prepare_images(prior, synthetic_ct(2, size=32))
    a = ode_bits_per_dim(prior, x, steps=3, seed=7)
    assert torch.equal(a, ode_bits_per_dim(prior, x, steps=3, seed=7))
    assert not torch.equal(a, ode_bits_per_dim(prior, x, steps=3, seed=8))


# --- the PF-ODE likelihood of a known Gaussian ---------------------------------------------------


def _gaussian_bits_per_dim(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, sigma: float) -> torch.Tensor:
    """``-log2 N(x; mean, cov + sigma^2 I) / N``: the density the ODE evaluates, in closed form."""
    n = cov.shape[0]
    c = cov + sigma**2 * torch.eye(n, dtype=torch.float64)
    d = (x - mean).reshape(x.shape[0], -1)
    chol = torch.linalg.cholesky(c)
    quad = (d * torch.cholesky_solve(d.T, chol).T).sum(dim=1)
    log_p = -0.5 * quad - torch.log(torch.diagonal(chol)).sum() - 0.5 * n * math.log(2 * math.pi)
    return -log_p / (n * math.log(2))


def test_ode_bits_per_dim_match_the_closed_form_of_a_diagonal_gaussian():
    # A diagonal Jacobian makes the Rademacher Hutchinson estimate exact: what remains is the solver.
    g = torch.Generator().manual_seed(0)
    mean = torch.rand(1, 6, 6, generator=g, dtype=torch.float64)
    var = torch.rand(1, 6, 6, generator=g, dtype=torch.float64) * 0.3 + 0.01
    prior = GaussianPrior(mean, var)
    x = prior.sample(3, generator=g)
    exact = _gaussian_bits_per_dim(x, mean, prior.covariance(), prior.sigma_min)
    got = ode_bits_per_dim(prior, x, steps=64)
    assert torch.allclose(got, exact, atol=0.01), (got, exact)
    coarse = ode_bits_per_dim(prior, x, steps=32)
    assert torch.allclose(coarse, exact, atol=0.03)
    assert (coarse - exact).abs().max() > (got - exact).abs().max()  # the solver converges


@pytest.mark.slow
def test_ode_bits_per_dim_of_a_correlated_gaussian_with_many_probes():
    # Off-diagonal Jacobian terms make one probe noisy (about 0.1 bits/dim at 16 pixels); 256 probes
    # average it down, so what is left is the solver and the estimator's bias (none).
    g = torch.Generator().manual_seed(1)
    n = 16
    a = torch.randn(n, n, generator=g, dtype=torch.float64) * 0.1
    cov = a @ a.T + 0.02 * torch.eye(n, dtype=torch.float64)
    mean = torch.full((1, 4, 4), 0.3, dtype=torch.float64)
    prior = GaussianPrior(mean, cov)
    x = prior.sample(2, generator=g)
    exact = _gaussian_bits_per_dim(x, mean, prior.covariance(), prior.sigma_min)
    got = ode_bits_per_dim(prior, x, steps=48, probes=256, seed=0)
    assert torch.allclose(got, exact, atol=0.03), (got, exact)


# --- reference files --------------------------------------------------------------------------------


def test_reference_file_round_trips_and_scores_new_slices(tmp_path):
    prior = tiny_prior()
    directory = save_checkpoint(prior, tmp_path / "prior")
    slices = synthetic_ct(8, size=32)
    ref = fit_reference(prior, slices, [f"p{i // 2}" for i in range(8)], methods=("msma", "ode"), ode_steps=2,
                        prior_info={"weights_sha256": json.loads((directory / "config.json").read_text())["weights"]["sha256"]})
    path = save_reference(ref, directory)
    assert path.name == REFERENCE_FILE
    text = path.read_text()
    assert "p0" not in text  # patient ids group the reference scores and are never written
    loaded = load_reference(directory)
    assert set(loaded.methods) == {"msma", "ode"} and loaded.default_method == "msma"
    scores = score_images(prior, synthetic_ct(3, size=32, seed=5), loaded)
    assert scores.score.shape == scores.p_value.shape == scores.flag.shape == (3,)
    assert np.all((scores.p_value > 0) & (scores.p_value <= 1))
    rows = scores.rows()
    assert [r["index"] for r in rows] == [0, 1, 2] and {"score", "p_value", "flag"} <= set(rows[0])
    ode = score_images(prior, synthetic_ct(2, size=32, seed=5), loaded, method="ode")
    assert ode.method == "ode" and np.all((ode.p_value > 0) & (ode.p_value <= 1))


def test_missing_or_stale_reference_is_a_one_line_prior_error(tmp_path):
    prior = tiny_prior()
    directory = save_checkpoint(prior, tmp_path / "prior")
    with pytest.raises(PriorError) as err:
        load_reference(directory)
    assert "no reference statistics" in str(err.value) and "--fit-reference" in str(err.value)
    assert "\n" not in str(err.value)
    ref = fit_reference(prior, synthetic_ct(4, size=32), ["a", "a", "b", "b"], prior_info={"weights_sha256": "0" * 64})
    save_reference(ref, directory)
    with pytest.raises(PriorError, match="other weights"):
        load_reference(directory)
    with pytest.raises(PriorError, match="no 'ode' reference"):
        fit_reference(prior, synthetic_ct(4, size=32), ["a", "a", "b", "b"]).method("ode")


# --- the bundled priors' reference statistics ------------------------------------------------------


@pytest.mark.parametrize("name", ["ct", "mr"])
def test_bundled_priors_ship_reference_statistics_for_their_weights(name):
    ref = load_reference(name)  # refuses statistics fitted for other weights
    msma = ref.method("msma")
    assert ref.default_method == "msma" and ref.level == 0.01
    assert len(msma.options["sigmas"]) == 10 and msma.model is not None and msma.model.mean.shape == (20,)
    assert msma.n_patients >= 2 and msma.n_slices >= 20
    p = msma.tail.p_values(msma.tail.scores)
    assert np.all((p > 0) & (p <= 1))
    assert np.mean(p < ref.level) <= 0.05  # the held-out slices themselves are rarely flagged


def _sample_ct_slices() -> np.ndarray:
    """The bundled sample study: four held-out TCGA-LUAD slices, HU ``[4, 512, 512]``."""
    from pipelines.demo import sample_study_dir
    from recon.io.dicom_read import read_series

    return np.asarray(read_series(sample_study_dir()).pixels, dtype=np.float32)


def _mr_as_hu(shared_data) -> list[np.ndarray]:
    """Two brain MR slices (BraTS 2015 validation, T1c) on the CT window: only their content, not
    their intensity range, tells them from CT."""
    from pipelines.training_data import nifti_slices

    vol = shared_data("mr_brats2015", "validation", "brats_2013_pat0003_1", "T1c_subtrMeanDivStd.nii.gz")
    slices = nifti_slices(vol)
    return [sets.as_ct_window(s) for s in (slices[len(slices) // 2], slices[len(slices) // 3])]


@pytest.mark.slow
def test_bundled_ct_prior_scores_ct_more_typical_than_what_is_not_ct():
    prior = load_prior("ct")
    ref = load_reference("ct")
    ct = _sample_ct_slices()
    outliers = {
        "shepp-logan": sets.shepp_logan(),
        "noise": sets.noise_slices(1),
        "metal": [sets.with_metal(ct[0], 4.0, streaks=False)],
        "metal, scanned": [sets.with_metal(ct[1], 4.0, streaks=True)],
    }
    typical = score_images(prior, ct, ref)
    assert typical.score.shape == (4,) and not typical.flag.any(), typical.rows()
    assert np.all((typical.p_value > 0) & (typical.p_value <= 1))
    pair = score_images(prior, ct[2:], ref).score
    assert np.array_equal(score_images(prior, ct[2:], ref).score, pair)  # no noise is drawn
    assert np.allclose(pair, typical.score[2:], rtol=1e-5)  # per slice (a batch changes only rounding)
    for name, images in outliers.items():
        s = score_images(prior, images, ref)
        assert np.all((s.p_value > 0) & (s.p_value <= 1))
        assert s.score.min() > typical.score.max(), (name, s.rows())
        assert s.flag.all(), (name, s.rows())


@pytest.mark.slow
@pytest.mark.shared_data
def test_bundled_ct_prior_scores_mr_slices_as_atypical(shared_data):
    prior = load_prior("ct")
    ref = load_reference("ct")
    typical = score_images(prior, _sample_ct_slices(), ref)
    mr = score_images(prior, _mr_as_hu(shared_data), ref)
    # MR content in CT's intensity range: clearly less typical than CT, though not always below the
    # 1 % flag level (the tail fitted to 51 reference slices is wide; docs/typicality.md)
    assert mr.score.min() > typical.score.max() and mr.p_value.max() < typical.p_value.min(), mr.rows()
    assert mr.p_value.min() < 0.05, mr.rows()


@pytest.mark.slow
@pytest.mark.shared_data
def test_bundled_mr_prior_scores_knee_and_ct_above_most_brain_slices(shared_data):
    prior = load_prior("mr")
    ref = load_reference("mr")
    brain = np.asarray(ref.method("msma").tail.scores)  # leave-one-patient-out, as a new patient's
    knee = score_images(prior, sets.knee_slices(shared_data("mr_fastmri_knee_samples")), ref)
    ct = score_images(prior, sets.ct_as_magnitude(list(_sample_ct_slices())), ref)
    for name, s in {"knee": knee, "ct as magnitude": ct}.items():
        assert np.all((s.p_value > 0) & (s.p_value <= 1))
        assert s.score.min() > np.median(brain), (name, s.rows())
        assert np.median(s.score) > np.percentile(brain, 80), (name, s.rows())
    assert knee.flag.any(), knee.rows()
