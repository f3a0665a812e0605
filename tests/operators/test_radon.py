"""ParallelBeam / FanBeam: property battery, physical units, FBP quality, input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.metrics import peak_signal_noise_ratio
from skimage.transform import resize

from operators.geometry import FanGeometry, ParallelGeometry, uniform_angles
from operators.radon import FBP_FILTERS, FanBeam, ParallelBeam, available_backends, radon_from_geometry
from tests.operators.battery import check_operator, dot_test_error

HAS_CUDA = available_backends()["cuda"]
FAN = dict(source_origin_mm=100.0, origin_detector_mm=60.0)


def _small(cls, projector: str, backend: str):
    if cls is ParallelBeam:
        return ParallelBeam(40, uniform_angles(24), projector=projector, backend=backend)
    return FanBeam(40, uniform_angles(30, 2 * math.pi), projector=projector, backend=backend, **FAN)


OPERATOR_CASES = [(ParallelBeam, p) for p in ("linear", "strip", "line")] + [(FanBeam, p) for p in ("line", "strip")]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("backend", ["cpu", "matrix"])
@pytest.mark.parametrize("cls,projector", OPERATOR_CASES, ids=[f"{c.__name__}-{p}" for c, p in OPERATOR_CASES])
def test_battery(cls, projector, backend, dtype):
    op = _small(cls, projector, backend)
    results = check_operator(op, dtype)
    # ASTRA's CPU projectors use one weight walk for FP and BP: exact transposes up to float32 rounding
    assert results["dot"] < 1e-6


@pytest.mark.skipif(not HAS_CUDA, reason="ASTRA reports no CUDA device")
@pytest.mark.parametrize("cls", [ParallelBeam, FanBeam])
def test_cuda_backend(cls):
    """ASTRA CUDA FP/BP are not matched transposes: the mismatch is bounded, and values agree with the CPU."""
    op = _small(cls, "line" if cls is FanBeam else "linear", "cuda")
    ref = _small(cls, "line" if cls is FanBeam else "linear", "matrix")
    x = torch.rand(2, *op.domain_shape, device="cuda")
    y = op(x)
    assert y.device.type == "cuda"
    assert float((y.cpu() - ref(x.cpu())).norm() / y.norm()) < 0.05
    assert dot_test_error(op, torch.float32) < 0.05


def test_auto_backend_choice():
    op = ParallelBeam(32, uniform_angles(10))
    assert op.resolve_backend("cpu") == "matrix"
    if torch.cuda.is_available():
        assert op.resolve_backend("cuda") == ("cuda" if HAS_CUDA else "matrix")


def test_backends_agree():
    x = torch.rand(3, 1, 40, 40, dtype=torch.float64)
    a = ParallelBeam(40, uniform_angles(24), backend="cpu")
    b = ParallelBeam(40, uniform_angles(24), backend="matrix")
    assert torch.allclose(a(x), b(x), rtol=1e-5, atol=1e-5)
    y = torch.rand(3, *a.range_shape, dtype=torch.float64)
    assert torch.allclose(a.adjoint(y), b.adjoint(y), rtol=1e-5, atol=1e-5)


def test_backends_are_chosen_by_name():
    from operators.radon import BACKENDS
    from operators.radon.backend import RadonBackend, create_backend

    assert BACKENDS == ("auto", "matrix", "cpu", "cuda")
    assert list(available_backends()) == list(BACKENDS[1:])
    op = ParallelBeam(24, uniform_angles(12))
    be = create_backend("cpu", op.geometry, "linear")
    assert isinstance(be, RadonBackend)
    x = torch.rand(2, *op.domain_shape, dtype=torch.float64)
    assert torch.allclose(be.project(x, adjoint=False), op(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown Radon backend"):
        create_backend("gpu", op.geometry, "linear")


def test_matrix_shared_between_operators():
    a = ParallelBeam(24, uniform_angles(12), backend="matrix")
    b = ParallelBeam.from_geometry(a.geometry, backend="matrix")
    a(torch.zeros(1, 1, 24, 24))
    b(torch.zeros(1, 1, 24, 24))
    assert a._backends["matrix"] is b._backends["matrix"]


def test_autograd_of_adjoint_is_forward_and_double_backward():
    op = ParallelBeam(24, uniform_angles(12), backend="cpu")
    gen = torch.Generator().manual_seed(1)
    y = torch.randn(2, *op.range_shape, generator=gen, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, *op.domain_shape, generator=gen, dtype=torch.float64)
    (g,) = torch.autograd.grad((op.adjoint(y) * x).sum(), y)
    assert torch.allclose(g, op(x), rtol=1e-5, atol=1e-6)
    # gradient of ||A x - b||^2 / 2 is A^T (A x - b); its gradient w.r.t. x again (Hessian-vector) is A^T A v
    xg = x.clone().requires_grad_(True)
    b = torch.randn(2, *op.range_shape, generator=gen, dtype=torch.float64)
    (gx,) = torch.autograd.grad(0.5 * (op(xg) - b).pow(2).sum(), xg, create_graph=True)
    v = torch.randn_like(x)
    (hv,) = torch.autograd.grad((gx * v).sum(), xg)
    assert torch.allclose(hv, op.normal(v), rtol=1e-5, atol=1e-6)


def test_non_contiguous_input():
    op = ParallelBeam(24, uniform_angles(12), backend="matrix")
    x = torch.rand(1, 1, 24, 24)
    assert torch.allclose(op(x.transpose(-1, -2)), op(x.transpose(-1, -2).contiguous()))


# --- physical units -------------------------------------------------------------------------------------
def _disc(n: int, pixel_mm: float, radius_mm: float, mu: float, supersample: int = 4) -> torch.Tensor:
    """Uniform disc of attenuation ``mu`` (1/mm), pixel values = area fraction x mu (supersampled)."""
    s = supersample
    c = (np.arange(n * s) + 0.5) / s - n / 2
    xx, yy = np.meshgrid(c * pixel_mm, c * pixel_mm)
    inside = (xx**2 + yy**2 <= radius_mm**2).astype(np.float64)
    frac = inside.reshape(n, s, n, s).mean(axis=(1, 3))
    return torch.from_numpy(mu * frac)[None, None]


@pytest.mark.parametrize("pixel_mm", [0.5, 0.8])
@pytest.mark.parametrize("projector", ["linear", "strip", "line"])
def test_parallel_disc_line_integrals_in_physical_units(pixel_mm, projector):
    """mu = 0.02 /mm, diameter 100 mm: central line integral 2.0 and the chord profile 2 mu sqrt(R^2 - s^2)."""
    n = int(round(120 / pixel_mm))
    mu, radius = 0.02, 50.0
    op = ParallelBeam(n, uniform_angles(8), pixel_size_mm=pixel_mm, n_detectors=n + 1, projector=projector, backend="cpu")
    y = op(_disc(n, pixel_mm, radius, mu))[0, 0]
    s = (np.arange(n + 1) - n / 2) * op.geometry.detector_spacing_mm
    expected = 2 * mu * np.sqrt(np.clip(radius**2 - s**2, 0, None))
    centre = y[:, n // 2]
    assert torch.allclose(centre, torch.full_like(centre, 2.0), rtol=5e-3), centre
    # the chord's slope is unbounded at the rim, so compare whole profiles in the L2 sense
    rel = float((y - torch.from_numpy(expected)).norm() / (np.linalg.norm(expected) * y.shape[0] ** 0.5))
    assert rel < 1.5e-2, rel


@pytest.mark.parametrize("projector", ["line", "strip"])
def test_fan_disc_central_ray(projector):
    pixel_mm, n, mu, radius = 0.6, 200, 0.02, 50.0
    op = FanBeam(n, uniform_angles(8, 2 * math.pi), source_origin_mm=300, origin_detector_mm=200,
                 pixel_size_mm=pixel_mm, projector=projector, backend="cpu")
    d = op.geometry.n_detectors
    assert d % 2 == 1  # the default count puts an element on the central ray
    y = op(_disc(n, pixel_mm, radius, mu))[0, 0]
    centre = y[:, d // 2]
    assert torch.allclose(centre, torch.full_like(centre, 2.0), rtol=5e-3), centre
    # a ray at fan angle gamma passes the centre at distance SO sin(gamma): chord 2 sqrt(R^2 - that^2)
    u = (np.arange(d) - (d - 1) / 2) * op.geometry.detector_spacing_mm
    dist = 300 * np.sin(np.arctan(u / 500))
    expected = 2 * mu * np.sqrt(np.clip(radius**2 - dist**2, 0, None))
    rel = float((y - torch.from_numpy(expected)).norm() / (np.linalg.norm(expected) * y.shape[0] ** 0.5))
    assert rel < 1.5e-2, rel


def test_fbp_units_disc():
    pixel_mm, n = 0.5, 128
    op = ParallelBeam(n, uniform_angles(90), pixel_size_mm=pixel_mm, backend="cpu")
    x = _disc(n, pixel_mm, 25.0, 0.02)
    rec = op.pinv(op(x))
    centre = rec[0, 0, n // 2 - 20 : n // 2 + 20, n // 2 - 20 : n // 2 + 20]
    assert abs(float(centre.mean()) - 0.02) < 0.02 * 0.01


# --- FBP quality -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def phantom() -> torch.Tensor:
    img = resize(shepp_logan_phantom(), (256, 256), anti_aliasing=True)
    return torch.from_numpy(img).float()[None, None]


def _psnr(ref: torch.Tensor, rec: torch.Tensor) -> float:
    return peak_signal_noise_ratio(ref[0, 0].double().numpy(), rec[0, 0].double().numpy(), data_range=1.0)


def test_fbp_shepp_logan_parallel_180(phantom):
    """Full-view (180 angles) parallel FBP of the 256x256 Shepp-Logan phantom: PSNR >= 28 dB."""
    op = ParallelBeam(256, uniform_angles(180), backend="cpu")
    y = op(phantom)
    assert _psnr(phantom, op.pinv(y)) >= 28.0
    for filt in FBP_FILTERS:
        assert _psnr(phantom, op.pinv(y, filter=filt)) >= 26.0, filt


def test_fbp_shepp_logan_fan_full_and_short_scan(phantom):
    phantom = torch.nn.functional.avg_pool2d(phantom, 2)  # 128x128 keeps the test fast
    op = FanBeam(128, uniform_angles(240, 2 * math.pi), source_origin_mm=250, origin_detector_mm=150, backend="cpu")
    assert _psnr(phantom, op.pinv(op(phantom))) >= 28.0
    # Parker-weighted short scan: pi + 2 x fan half-angle
    arc = math.pi + 2 * op.geometry.fan_half_angle
    short = FanBeam.from_geometry(op.geometry.with_angles(uniform_angles(160, arc)), backend="cpu")
    assert _psnr(phantom, short.pinv(short(phantom))) >= 28.0


def test_fbp_sparse_view_weights(phantom):
    """Fewer views give worse but still correctly scaled FBP (mean preserved)."""
    op = ParallelBeam(256, uniform_angles(32), backend="cpu")
    rec = op.pinv(op(phantom))
    assert abs(float(rec.mean()) - float(phantom.mean())) < 0.02 * float(phantom.mean()) + 1e-3


def test_fbp_float64_and_batch():
    op = ParallelBeam(32, uniform_angles(20), backend="cpu")
    y = torch.rand(3, *op.range_shape, dtype=torch.float64)
    r = op.pinv(y)
    assert r.dtype == torch.float64 and r.shape == (3, 1, 32, 32)
    assert torch.allclose(r[1:2], op.pinv(y[1:2]))


# --- geometry and bad input ---------------------------------------------------------------------------------
def test_from_geometry_round_trip():
    g = FanGeometry((30, 40), uniform_angles(10, 2 * math.pi), 200.0, 100.0, pixel_size_mm=0.7)
    op = FanBeam.from_geometry(g, projector="strip")
    assert op.geometry == g
    assert op.range_shape == (1, 10, g.n_detectors) and op.domain_shape == (1, 30, 40)
    p = ParallelGeometry(16, uniform_angles(5))
    assert ParallelBeam.from_geometry(p).geometry == p
    with pytest.raises(ValueError, match="expected ParallelGeometry"):
        ParallelBeam.from_geometry(g)
    assert isinstance(radon_from_geometry(g, projector="strip"), FanBeam)
    assert isinstance(radon_from_geometry(p), ParallelBeam)
    with pytest.raises(ValueError, match="expected ParallelGeometry or FanGeometry"):
        radon_from_geometry({"type": "parallel"})


def test_bad_inputs():
    op = ParallelBeam(16, uniform_angles(6), backend="cpu")
    with pytest.raises(ValueError, match=r"image has shape \(1, 1, 16, 15\), expected \[B, 1, 16, 16\]"):
        op(torch.zeros(1, 1, 16, 15))
    with pytest.raises(ValueError, match="expected"):
        op(torch.zeros(16, 16))
    bad = torch.zeros(1, 1, 16, 16)
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        op(bad)
    bad[0, 0, 3, 3] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        op(bad)
    with pytest.raises(ValueError, match="dtype"):
        op(torch.zeros(1, 1, 16, 16, dtype=torch.int32))
    # a sinogram from another geometry (wrong number of angles)
    with pytest.raises(ValueError, match=r"measurement has shape .*expected \[B, 1, 6, 23\]"):
        op.adjoint(torch.zeros(1, 1, 7, 23))
    with pytest.raises(ValueError, match="measurement"):
        op.pinv(torch.zeros(1, 1, 6, 22))
    with pytest.raises(ValueError, match="filter"):
        op.pinv(torch.zeros(1, 1, 6, 23), filter="gauss")


def test_bad_construction():
    with pytest.raises(ValueError, match="projector"):
        ParallelBeam(16, uniform_angles(6), projector="joseph")
    with pytest.raises(ValueError, match="projector"):
        FanBeam(16, uniform_angles(6), projector="linear", **FAN)
    with pytest.raises(ValueError, match="backend"):
        ParallelBeam(16, uniform_angles(6), backend="opencl")
    with pytest.raises(ValueError, match="filter"):
        ParallelBeam(16, uniform_angles(6), filter="butterworth")
    with pytest.raises(ValueError, match="angles"):
        ParallelBeam(16, [0.0, float("nan")])
    with pytest.raises(ValueError, match="pixel_size_mm"):
        ParallelBeam(16, uniform_angles(6), pixel_size_mm=-1)
    with pytest.raises(ValueError, match="source_origin_mm"):
        FanBeam(100, uniform_angles(6), source_origin_mm=50, origin_detector_mm=50)
    if not HAS_CUDA:
        with pytest.raises(ValueError, match="cuda"):
            ParallelBeam(16, uniform_angles(6), backend="cuda")
