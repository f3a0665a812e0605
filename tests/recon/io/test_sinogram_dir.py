"""The sinogram directory: round trips in every layout/format and every bad-input case."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from operators.noise import COUNT_FLOOR, counts_to_line_integrals
from recon.errors import InputError
from recon.io.sinogram_read import read_sinogram_dir
from recon.io.sinogram_write import write_sinogram_dir

PARALLEL = {
    "type": "parallel",
    "image_size": [32, 32],
    "pixel_size_mm": 1.0,
    "angles": {"start": 0.0, "stop": math.pi, "count": 12},
    "n_detectors": 48,
    "detector_spacing_mm": 1.0,
}
FAN = {
    "type": "fan",
    "image_size": [32, 32],
    "pixel_size_mm": 1.0,
    "angles": [2 * math.pi * k / 10 for k in range(10)],
    "n_detectors": 64,
    "detector_spacing_mm": 1.5,
    "source_origin_mm": 200.0,
    "origin_detector_mm": 100.0,
}


def _data(geo, n=3, seed=0):
    a = len(geo["angles"]) if isinstance(geo["angles"], list) else geo["angles"]["count"]
    return np.random.default_rng(seed).random((n, a, geo["n_detectors"])).astype(np.float32)


@pytest.mark.parametrize("layout,fmt", [("stacked", "npy"), ("stacked", "npz"), ("per_slice", "npy"),
                                        ("per_slice", "npz"), ("per_slice", "tif")])
@pytest.mark.parametrize("geo", [PARALLEL, FAN], ids=["parallel", "fan"])
def test_round_trip(tmp_path, layout, fmt, geo):
    d = _data(geo)
    write_sinogram_dir(tmp_path / "s", d, geo, layout=layout, fmt=fmt, identity={"PatientID": "P1"}, i0=1e4)
    s = read_sinogram_dir(tmp_path / "s")
    assert s.data.shape == (3, 1, *d.shape[1:]) and s.data.dtype == np.float32
    np.testing.assert_array_equal(s.data[:, 0], d)
    assert s.geometry["type"] == geo["type"] and len(s.angles) == d.shape[1]
    assert s.identity == {"PatientID": "P1"} and s.acquisition["i0"] == 1e4
    assert s.slice_names == ["slice_0000", "slice_0001", "slice_0002"]
    g = s.geometry_object()  # operators.geometry accepts it unchanged
    assert g.sinogram_shape == d.shape[1:]
    np.testing.assert_allclose(g.angles_array, s.angles)


def test_angles_range_semantics(tmp_path):
    write_sinogram_dir(tmp_path / "s", _data(PARALLEL), PARALLEL)
    s = read_sinogram_dir(tmp_path / "s")
    np.testing.assert_allclose(s.angles, np.arange(12) * math.pi / 12)  # stop excluded


def test_counts_converted_safely(tmp_path):
    p = np.random.default_rng(0).random((2, 12, 48)) * 3
    counts = 1e4 * np.exp(-p) + 10.0
    counts[0, 0, 0] = 0.0  # photon starvation below dark
    write_sinogram_dir(tmp_path / "s", counts, PARALLEL, values="counts", i0=1e4, dark=10.0)
    s = read_sinogram_dir(tmp_path / "s")
    assert np.isfinite(s.data).all()
    np.testing.assert_allclose(s.data[0, 0].ravel()[1:], p[0].ravel()[1:], rtol=1e-5, atol=1e-5)
    assert s.data[0, 0, 0, 0] == pytest.approx(-math.log(COUNT_FLOOR / 1e4), rel=1e-5)
    assert s.acquisition["values"] == "counts"


def test_counts_with_flat_field_file(tmp_path):
    flat = np.linspace(900.0, 1100.0, 48)
    counts = flat[None, None] * np.exp(-0.25) * np.ones((1, 12, 48))
    write_sinogram_dir(tmp_path / "s", counts, PARALLEL, values="counts", flat="flat.npy")
    np.save(tmp_path / "s" / "flat.npy", flat)
    np.testing.assert_allclose(read_sinogram_dir(tmp_path / "s").data, 0.25, rtol=1e-5)
    np.save(tmp_path / "s" / "flat.npy", flat[:40])
    with pytest.raises(InputError, match="flat.npy"):
        read_sinogram_dir(tmp_path / "s")


@pytest.mark.parametrize("flat", [None, 1.2e4, "file"], ids=["i0", "scalar-flat", "flat-file"])
def test_reader_and_operators_noise_give_identical_line_integrals(tmp_path, flat):
    """One log transform: the reader's line integrals are operators.noise's, bit for bit (in float32),
    including photon-starved readings at or below the dark level and a sidecar ``min_counts``."""
    rng = np.random.default_rng(1)
    dark = 12.0
    flat_field = np.round(rng.uniform(9e3, 1.1e4, 48)) if flat == "file" else None  # float32-exact, as stored
    ref = flat_field if flat == "file" else (1e4 if flat is None else flat - dark)
    p = rng.random((2, 12, 48)) * 9  # down to ~1 photon: the floor matters for some rays
    counts = np.round(rng.poisson(ref * np.exp(-p)) + dark).astype(np.float32)
    counts[0, 0, :4] = [0.0, dark, dark + 0.05, dark + 1.0]
    for extra, eps in (({}, COUNT_FLOOR), ({"min_counts": 0.5}, 0.5)):
        out = tmp_path / f"s{len(extra)}"
        kw = {"flat": "flat.npy"} if flat == "file" else ({"flat": flat} if flat is not None else {})
        write_sinogram_dir(out, counts, PARALLEL, values="counts", i0=1e4, dark=dark, extra=extra, **kw)
        if flat == "file":
            np.save(out / "flat.npy", flat_field)
        got = read_sinogram_dir(out).data[:, 0]
        f = torch.from_numpy(flat_field) if flat == "file" else flat
        want = counts_to_line_integrals(torch.from_numpy(counts).double(), 1e4, dark=dark, flat=f, eps=eps).float()
        np.testing.assert_array_equal(got, want.numpy())
        ref_d = flat_field[:3] - dark if flat == "file" else np.full(3, ref)
        np.testing.assert_allclose(got[0, 0, :3], -np.log(eps / ref_d), rtol=1e-6)  # starved: at the floor


def test_reference_dicom_and_identity_json(tmp_path):
    (tmp_path / "dicom").mkdir()
    (tmp_path / "ident.json").write_text(json.dumps({"PatientID": "A", "StudyInstanceUID": "1.2.3"}))
    write_sinogram_dir(tmp_path / "s", _data(PARALLEL), PARALLEL, reference=tmp_path / "dicom")
    s = read_sinogram_dir(tmp_path / "s")
    assert s.reference == (tmp_path / "dicom").resolve() and s.identity is None
    assert json.loads((tmp_path / "s" / "geometry.json").read_text())["reference"] == "../dicom"
    write_sinogram_dir(tmp_path / "t", _data(PARALLEL), PARALLEL, reference=tmp_path / "ident.json")
    t = read_sinogram_dir(tmp_path / "t")
    assert t.identity == {"PatientID": "A", "StudyInstanceUID": "1.2.3"} and t.reference is None


def test_aliases_from_hand_written_sidecar(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    np.save(d / "sinogram.npy", _data(PARALLEL, n=1)[0])  # a single [A, D] slice
    sidecar = {"type": "parallel", "image": {"size": [32, 32], "pixel_size_mm": [1.0, 1.0]},
               "angles_rad": {"start": 0, "stop": math.pi, "count": 12}, "n_detectors": 48, "detector_spacing_mm": 1.0}
    (d / "geometry.json").write_text(json.dumps(sidecar))
    s = read_sinogram_dir(d)
    assert s.data.shape == (1, 1, 12, 48) and s.geometry["image_size"] == [32, 32]


def test_refuses_overwrite(tmp_path):
    write_sinogram_dir(tmp_path / "s", _data(PARALLEL), PARALLEL)
    with pytest.raises(InputError, match="already exists"):
        write_sinogram_dir(tmp_path / "s", _data(PARALLEL), PARALLEL)
    write_sinogram_dir(tmp_path / "s", _data(PARALLEL), PARALLEL, overwrite=True)


# --------------------------------------------------------------------- bad input


def _good(tmp_path, **kw):
    write_sinogram_dir(tmp_path / "s", _data(PARALLEL), PARALLEL, **kw)
    return tmp_path / "s"


def _edit_sidecar(d, **changes):
    g = json.loads((d / "geometry.json").read_text())
    for k, v in changes.items():
        if v is None:
            g.pop(k, None)
        else:
            g[k] = v
    (d / "geometry.json").write_text(json.dumps(g))


def test_missing_geometry(tmp_path):
    d = _good(tmp_path)
    (d / "geometry.json").unlink()
    with pytest.raises(InputError) as e:
        read_sinogram_dir(d)
    assert "geometry.json" in str(e.value) and "missing" in str(e.value)


def test_invalid_json_reports_line(tmp_path):
    d = _good(tmp_path)
    (d / "geometry.json").write_text('{\n  "type": "parallel",\n  "n_detectors": 48,,\n}')
    with pytest.raises(InputError) as e:
        read_sinogram_dir(d)
    assert "geometry.json" in str(e.value) and "line 3" in str(e.value)


@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"n_detectors": None}, "missing field 'n_detectors'"),
        ({"type": "cone"}, "'type'"),
        ({"n_detectors": "48"}, "n_detectors"),
        ({"n_detectors": 47}, "47 detectors"),
        ({"angles": {"start": 0, "stop": 3}}, "count"),
        ({"angles": [0.0, "x"]}, "angles"),
        ({"angles": [0.1 * k for k in range(11)]}, "11 angles"),
        ({"pixel_size_mm": -1.0}, "pixel_size_mm"),
        ({"pixel_size_mm": [1.0, 2.0]}, "square"),
        ({"values": "intensity"}, "'values'"),
        ({"values": "counts"}, "i0"),
        ({"angles": [100.0] * 12}, "degrees"),
    ],
)
def test_bad_sidecar_fields(tmp_path, changes, needle):
    d = _good(tmp_path)
    _edit_sidecar(d, **changes)
    with pytest.raises(InputError) as e:
        read_sinogram_dir(d)
    assert needle in str(e.value)
    assert str(d) in str(e.value)


def test_nan_in_data_names_file(tmp_path):
    d = _good(tmp_path)
    arr = np.load(d / "sinogram.npy")
    arr[1, 2, 3] = np.nan
    np.save(d / "sinogram.npy", arr)
    with pytest.raises(InputError) as e:
        read_sinogram_dir(d)
    assert "sinogram.npy" in str(e.value) and "NaN" in str(e.value) and "(1, 2, 3)" in str(e.value)


def test_mixed_per_slice_shapes(tmp_path):
    write_sinogram_dir(tmp_path / "s", _data(PARALLEL), PARALLEL, layout="per_slice")
    np.save(tmp_path / "s" / "slice_0001.npy", np.zeros((12, 40), np.float32))
    with pytest.raises(InputError) as e:
        read_sinogram_dir(tmp_path / "s")
    assert "slice_0001.npy" in str(e.value) and "differs" in str(e.value)


def test_missing_listed_slice_and_no_data(tmp_path):
    write_sinogram_dir(tmp_path / "s", _data(PARALLEL), PARALLEL, layout="per_slice")
    (tmp_path / "s" / "slice_0002.npy").unlink()
    with pytest.raises(InputError, match="slice_0002.npy"):
        read_sinogram_dir(tmp_path / "s")
    d = _good(tmp_path / "x")
    (d / "sinogram.npy").unlink()
    with pytest.raises(InputError, match="sinogram.npy"):
        read_sinogram_dir(d)


def test_corrupt_data_file(tmp_path):
    d = _good(tmp_path)
    (d / "sinogram.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(InputError) as e:
        read_sinogram_dir(d)
    assert "sinogram.npy" in str(e.value) and "cannot read" in str(e.value)


def test_both_layouts_present(tmp_path):
    d = tmp_path / "s"
    write_sinogram_dir(d, _data(PARALLEL), PARALLEL, layout="per_slice")
    np.save(d / "sinogram.npy", _data(PARALLEL))
    with pytest.raises(InputError, match="keep one layout"):
        read_sinogram_dir(d)


def test_not_a_directory(tmp_path):
    with pytest.raises(InputError, match="no such directory"):
        read_sinogram_dir(tmp_path / "missing")


def test_missing_reference_is_tolerated(tmp_path):
    """A study stays readable after its source series moved; the reference is then None."""
    import json

    d = write_sinogram_dir(tmp_path / "s", np.zeros((1, 4, 9), np.float32), {
        "type": "parallel", "image_size": [8, 8], "pixel_size_mm": 1.0,
        "angles": {"start": 0, "stop": 3.141592653589793, "count": 4}, "n_detectors": 9,
        "detector_spacing_mm": 1.0,
    }, identity={"PatientID": "X"})
    sidecar = json.loads((d / "geometry.json").read_text())
    sidecar["reference"] = "../nowhere"
    (d / "geometry.json").write_text(json.dumps(sidecar))
    study = read_sinogram_dir(d)
    assert study.reference is None and study.identity == {"PatientID": "X"}
