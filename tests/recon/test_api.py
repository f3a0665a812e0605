"""``recon.reconstruct``: shapes, units, dispatch, errors, and every sampler x operator kind."""

from __future__ import annotations

import math

import pytest
import torch

import recon
from operators.base import MatrixOperator
from priors.gaussian import isotropic
from priors.normalization import CT_WINDOW, MR_PERCENTILE
from recon.api import METHODS, SAMPLERS, Result, available_methods, reconstruct
from recon.samplers.normalization import normalize_problem

IMG = 32


# --- fixtures: operators and a tiny EDM prior (skipped with a reason when a module is missing) -------
def _radon():
    return pytest.importorskip("operators.radon", reason="operators.radon (ASTRA) not importable")


def _parallel(n_views: int = 12):
    radon = _radon()
    from operators.geometry import uniform_angles

    return radon.ParallelBeam(IMG, uniform_angles(n_views), pixel_size_mm=1.0)


def _fan(n_views: int = 16):
    radon = _radon()
    from operators.geometry import uniform_angles

    return radon.FanBeam(IMG, uniform_angles(n_views, 2 * math.pi), source_origin_mm=100.0, origin_detector_mm=50.0)


def _fourier(coils: int):
    fourier = pytest.importorskip("operators.fourier", reason="operators.fourier not importable")
    mask = torch.zeros(IMG, IMG, dtype=torch.bool)
    mask[:, ::3] = True
    mask[:, IMG // 2 - 3: IMG // 2 + 3] = True
    maps = None
    if coils > 1:
        from operators.coils import simulated_coil_maps

        maps = simulated_coil_maps(coils, (IMG, IMG))
    return fourier.CartesianFourier(mask, maps)


def _tiny_edm(modality: str):
    edm = pytest.importorskip("priors.edm", reason="priors.edm not importable")
    from priors.network import preset

    torch.manual_seed(0)  # untrained weights: fixed so the test is reproducible
    norm = CT_WINDOW if modality == "ct" else MR_PERCENTILE
    return edm.EDMPrior(net_config=preset("tiny"), modality=modality, normalization=norm)


def _phantom_hu(b: int = 1) -> torch.Tensor:
    """Water disk (0 HU) with a bone-like insert (+800 HU) in air (-1000 HU): ``[b, 1, IMG, IMG]``."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, IMG), torch.linspace(-1, 1, IMG), indexing="ij")
    img = torch.full((IMG, IMG), -1000.0)
    img[xx**2 + yy**2 < 0.7**2] = 0.0
    img[(xx - 0.2) ** 2 + (yy + 0.1) ** 2 < 0.2**2] = 800.0
    out = img.expand(b, 1, IMG, IMG).clone()
    for i in range(b):
        out[i] = torch.roll(out[i], shifts=i, dims=-1)
    return out


def _ct_data(op, b: int = 1) -> torch.Tensor:
    from operators.noise import hu_to_mu

    with torch.no_grad():
        return op(hu_to_mu(_phantom_hu(b)))


def _mr_data(op, b: int = 1) -> torch.Tensor:
    mag = (_phantom_hu(b) + 1000.0) / 1800.0  # magnitude in [0, 1]
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, IMG), torch.linspace(-1, 1, IMG), indexing="ij")
    phase = torch.exp(1j * (0.5 * xx + 0.3 * yy)).to(torch.complex64)
    with torch.no_grad():
        return op((mag * phase).to(torch.complex64) * 40.0)  # arbitrary scanner scale


# --- registry and errors ------------------------------------------------------------------------------
def test_registry_and_exports():
    assert set(SAMPLERS) == {"dds", "dps", "song22"}
    assert set(METHODS) == {"fbp", "sirt", "cgls", "tv", "zero_filled", "cg_sense", "cs_tv"}
    assert available_methods() == list(SAMPLERS) + list(METHODS)
    assert recon.reconstruct is reconstruct and recon.Result is Result


def _matrix_problem(b: int = 2):
    g = torch.Generator().manual_seed(0)
    A = torch.randn(20, 36, generator=g, dtype=torch.float64) / 6
    op = MatrixOperator(A, (1, 6, 6))
    prior = isotropic((1, 6, 6), 0.09, 0.5)
    y = op(prior.sample(b, g))
    return op, prior, y


def test_unknown_sampler_lists_options():
    op, prior, y = _matrix_problem()
    with pytest.raises(ValueError, match="dds.*dps.*song22.*fbp"):
        reconstruct(y, op, prior, sampler="nope")
    with pytest.raises(ValueError, match="needs a prior"):
        reconstruct(y, op, None, sampler="dds")


def test_result_shapes_and_std():
    op, prior, y = _matrix_problem(b=2)
    r = reconstruct(y, op, prior, nfe=10, samples=3, seed=1, device="cpu")
    assert r.mean.shape == (2, 1, 6, 6) and r.std.shape == (2, 1, 6, 6)
    assert r.samples.shape == (2, 3, 1, 6, 6) and r.residual.shape == (2,)
    assert r.nfe == 10 and r.seconds > 0 and r.method == "dds"
    assert bool((r.std > 0).all())
    assert torch.allclose(r.mean, r.samples.mean(1)) and torch.allclose(r.std, r.samples.std(1))
    # the noise-free data are fitted: 20 equations, CG from the denoised estimate
    assert float(r.residual.max()) < 0.05
    # slices are independent: slice 1 alone with the same seed gives different draws but a close mean
    r1 = reconstruct(y[1:], op, prior, nfe=10, samples=3, seed=1, device="cpu")
    assert r1.samples.shape == (1, 3, 1, 6, 6)
    one = reconstruct(y, op, prior, nfe=10, samples=1, seed=1, device="cpu")
    assert torch.equal(one.std, torch.zeros_like(one.std))
    again = reconstruct(y, op, prior, nfe=10, samples=3, seed=1, device="cpu")
    assert torch.equal(again.samples, r.samples)
    assert r.settings["seed"] == 1 and r.settings["sampler"] == "dds"


def test_noise_std_per_slice_is_repeated_for_samples():
    op, prior, y = _matrix_problem(b=2)
    std = torch.tensor([0.01, 0.2], dtype=torch.float64).view(2, 1)
    r = reconstruct(y, op, prior, nfe=8, samples=2, noise_std=std, device="cpu")
    assert r.samples.shape == (2, 2, 1, 6, 6)


def test_modality_mismatch_errors():
    op = _fourier(1)
    prior = isotropic((1, IMG, IMG), 0.09, 0.5, modality="ct", normalization=CT_WINDOW)
    y = _mr_data(op)
    with pytest.raises(ValueError, match="modality 'ct'"):
        reconstruct(y, op, prior)
    with pytest.raises(ValueError, match="Radon"):
        reconstruct(y, op, method="fbp")


def test_ct_normalisation_composes_hu_to_mu():
    """A x_norm = y_norm exactly when x_norm is the HU image in the prior's window."""
    op = _parallel()
    from operators.noise import MU_WATER_PER_MM

    prior = isotropic((1, IMG, IMG), 0.09, 0.5, modality="ct", normalization=CT_WINDOW)
    assert op.modality == "ct"
    y = _ct_data(op).double()
    prob = normalize_problem(prior, op, y, 0.01, modality="ct")
    x_norm = CT_WINDOW.to_normalized(_phantom_hu()).double()
    assert torch.allclose(op(x_norm), prob.y, rtol=1e-5, atol=1e-5 * float(prob.y.abs().max()))
    assert torch.allclose(prob.to_physical(x_norm), _phantom_hu().double(), atol=1e-3)
    assert prob.scale[0] == pytest.approx(MU_WATER_PER_MM * 3072 / 1000)
    assert float(torch.as_tensor(prob.noise_std).max()) == pytest.approx(0.01 / float(prob.scale[0]))


def test_classical_dispatch_ct_and_mr():
    op = _parallel(24)
    y = _ct_data(op)
    r = reconstruct(y, op, method="fbp")
    assert r.unit == "HU" and r.mean.shape == (1, 1, IMG, IMG) and r.samples.shape == (1, 1, 1, IMG, IMG)
    assert r.nfe == 0 and torch.equal(r.std, torch.zeros_like(r.std))
    inside = _phantom_hu()[0, 0] == 0.0
    assert abs(float(r.mean[0, 0][inside].median())) < 150  # water reads ~0 HU
    r = reconstruct(y, op, method="cgls", n_iter=5)
    assert r.method == "cgls" and r.settings["options"]["n_iter"] == 5
    mop = _fourier(1)
    ky = _mr_data(mop)
    r = reconstruct(ky, mop, method="zero_filled")
    assert not r.mean.is_complex() and r.mean.shape == (1, 1, IMG, IMG) and float(r.residual[0]) < 1e-4
    with pytest.raises(ValueError, match="Fourier"):
        reconstruct(y, op, method="cs_tv")


# --- every sampler x operator with a tiny EDM prior -------------------------------------------------------
OPERATORS = {
    "parallel": lambda: (_parallel(), "ct"),
    "fan": lambda: (_fan(), "ct"),
    "fourier1": lambda: (_fourier(1), "mr"),
    "fourier4": lambda: (_fourier(4), "mr"),
}


@pytest.mark.parametrize("opname", sorted(OPERATORS))
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_operator_matrix(name, opname):
    op, modality = OPERATORS[opname]()
    prior = _tiny_edm(modality)
    y = _ct_data(op) if modality == "ct" else _mr_data(op)
    starts = []

    def cb(step, sigma, x, x0):
        if step == 0:
            starts.append(x0.detach().clone())

    nfe = 8
    # a cold start (init=None): the sampler alone has to bring the residual down
    r = reconstruct(y, op, prior, sampler=name, nfe=nfe, samples=2, seed=3, device="cpu", callback=cb, init=None)
    assert r.samples.shape == (1, 2, 1, IMG, IMG) and bool(torch.isfinite(r.samples).all())
    assert r.unit == ("HU" if modality == "ct" else "a.u.")
    assert r.nfe == nfe
    # the start: the first denoised estimate (before any data consistency); the end: the estimate
    prob = normalize_problem(prior, op, y, None, modality=modality)
    start_u = prob.to_operator_units(starts[0][:1])
    with torch.no_grad():
        start_res = float((op(start_u) - y).norm() / y.norm())
    # DDS and Song project onto the data; DPS takes gradient steps of bounded size (8 NFE here).
    factor = 0.9 if name == "dps" else 0.5
    assert float(r.residual[0]) < factor * start_res, (float(r.residual[0]), start_res)
    again = reconstruct(y, op, prior, sampler=name, nfe=nfe, samples=2, seed=3, device="cpu", init=None)
    assert torch.equal(again.samples, r.samples)
    other = reconstruct(y, op, prior, sampler=name, nfe=nfe, samples=2, seed=4, device="cpu", init=None)
    assert not torch.equal(other.samples, r.samples)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_is_recorded_and_leaves_the_prior_unchanged(precision):
    op = _parallel()
    prior = _tiny_edm("ct")
    y = _ct_data(op)
    r = reconstruct(y, op, prior, nfe=3, seed=0, device="cpu", precision=precision)
    assert r.settings["precision"] == precision
    assert r.mean.dtype == torch.float32 and bool(torch.isfinite(r.mean).all())
    assert prior.compute_dtype is None
    with pytest.raises(ValueError, match="precision"):
        reconstruct(y, op, prior, nfe=3, device="cpu", precision="half")


def test_unknown_options_are_refused_with_the_valid_ones():
    from recon.api import check_options, method_options

    assert "zeta" in method_options("dps") and "cg_iters" in method_options("dds")
    assert "weight" in method_options("tv") and "filter" in method_options("fbp")
    op, prior, y = _matrix_problem(b=1)
    with pytest.raises(ValueError, match="dds has no option 'zeta'.*eta"):
        reconstruct(y, op, prior, sampler="dds", nfe=2, zeta=1.0)
    with pytest.raises(ValueError, match="unknown method"):
        check_options("nope", {})


# --- warm start (init=) ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_warm_start_keeps_what_the_data_cannot_see(name):
    """Started at a small noise level from the truth, a sampler keeps the truth's null-space part
    (which no data-consistency step can restore); started from noise at that level it cannot."""
    from recon.samplers.common import initial_state

    op, prior, _ = _matrix_problem(b=1)
    g = torch.Generator().manual_seed(5)
    truth = prior.sample(1, g)
    y = op(truth)
    err = {}
    for start in ("truth", "noise"):
        x = SAMPLERS[name](prior, op, y, nfe=4, generator=torch.Generator().manual_seed(0), noise_std=1e-3,
                           sigma_max=0.02, x_init=truth if start == "truth" else None)
        err[start] = float((x - truth).norm() / truth.norm())
    assert err["truth"] < 0.4 * err["noise"], err
    with pytest.raises(ValueError, match="x_init has shape"):
        initial_state(1.0, torch.zeros(1, 1, 6, 6), torch.zeros(1, 1, 5, 5))


def test_init_runs_a_classical_method_first_and_is_recorded():
    from recon.api import INIT_SIGMA_MAX, method_options

    assert "init" in method_options("dds") and "x_init" not in method_options("dds")
    op = _parallel(24)
    prior = _tiny_edm("ct")
    y = _ct_data(op)
    cold = reconstruct(y, op, prior, nfe=3, seed=0, device="cpu", init=None)
    warm = reconstruct(y, op, prior, nfe=3, seed=0, device="cpu", init="fbp")
    assert warm.settings["init"] == "fbp" and cold.settings["init"] is None
    assert warm.settings["options"]["sigma_max"] == INIT_SIGMA_MAX["ct"] and "sigma_max" not in cold.settings["options"]
    assert reconstruct(y, op, prior, nfe=3, seed=0, device="cpu").settings["init"] == "tv"  # auto for CT
    assert reconstruct(y, op, prior, nfe=3, seed=0, device="cpu", init="none").settings["init"] is None
    mop = _fourier(1)
    assert reconstruct(_mr_data(mop), mop, _tiny_edm("mr"), nfe=2, device="cpu").settings["init"] == "cs_tv"
    mat_op, gauss, my = _matrix_problem(b=1)
    assert reconstruct(my, mat_op, gauss, nfe=2, device="cpu").settings["init"] is None  # no classical method fits
    assert not torch.equal(warm.mean, cold.mean)
    assert torch.equal(reconstruct(y, op, prior, nfe=3, seed=0, device="cpu", init="fbp").mean, warm.mean)
    with pytest.raises(ValueError, match="Fourier"):
        reconstruct(y, op, prior, nfe=3, device="cpu", init="cs_tv")
    with pytest.raises(ValueError, match="init must be 'auto', 'none' or a classical method"):
        reconstruct(y, op, prior, nfe=3, device="cpu", init="dds")


# --- volumes: slices coupled along z ----------------------------------------------------------------
def _z_flicker(x: torch.Tensor) -> float:
    """Mean absolute difference of neighbouring slices of ``[n, 1, H, W]``."""
    return float((x[1:] - x[:-1]).abs().mean())


def test_volume_dds_couples_neighbouring_slices():
    op = _parallel(8)
    prior = isotropic((1, IMG, IMG), 0.09, 0.5, modality="ct", normalization=CT_WINDOW)
    y = _ct_data(op, 1).expand(4, -1, -1, -1).clone()  # four identical slices, noise drawn per slice
    y = y + 0.02 * torch.randn(y.shape, generator=torch.Generator().manual_seed(0))
    kw = dict(nfe=10, samples=1, noise_std=0.02, device="cpu", seed=0)
    apart = reconstruct(y, op, prior, **kw)
    together = reconstruct(y, op, prior, volume=True, slice_spacing_mm=1.0, z_precision=1e4, **kw)
    assert together.settings["volume"] and together.settings["slice_spacing_mm"] == 1.0
    assert not apart.settings["volume"]
    assert _z_flicker(together.mean) < 0.5 * _z_flicker(apart.mean)
    # no coupling and a start without a volume form: exactly the slice-wise reconstruction
    uncoupled = reconstruct(y, op, prior, volume=True, slice_spacing_mm=1.0, z_precision=0.0, init="fbp", **kw)
    assert torch.equal(uncoupled.mean, reconstruct(y, op, prior, init="fbp", **kw).mean)
    # several samples: each one a whole volume
    two = reconstruct(y, op, prior, volume=True, slice_spacing_mm=1.0, **{**kw, "samples": 2})
    assert two.samples.shape == (4, 2, 1, IMG, IMG) and float(two.std.max()) > 0
    assert two.start is not None and two.start.shape == (4, 1, IMG, IMG)  # the TV warm start, in HU


def test_volume_needs_a_volume_method_and_the_spacing():
    op = _parallel(8)
    prior = isotropic((1, IMG, IMG), 0.09, 0.5, modality="ct", normalization=CT_WINDOW)
    y = _ct_data(op, 2)
    with pytest.raises(ValueError, match="no volume form"):
        reconstruct(y, op, prior, sampler="dps", volume=True, slice_spacing_mm=1.0)
    with pytest.raises(ValueError, match="slice spacing"):
        reconstruct(y, op, prior, volume=True)


def test_volume_tv_is_3d_tv():
    op = _parallel(8)
    y = _ct_data(op, 3)
    flat = reconstruct(y, op, method="tv", i0=1e4)
    vol = reconstruct(y, op, method="tv", i0=1e4, volume=True, slice_spacing_mm=1.0)
    assert vol.settings["options"]["volume"] is True and vol.settings["options"]["slice_spacing_mm"] == 1.0
    assert "volume" not in flat.settings["options"]
    assert _z_flicker(vol.mean) < _z_flicker(flat.mean)
