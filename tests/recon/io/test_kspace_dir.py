"""The k-space directory: npy/npz/HDF5/BART round trips, shared BART data, bad input."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from recon.errors import InputError
from recon.io.bart_cfl import read_cfl, write_cfl
from recon.io.kspace_read import read_kspace_dir
from recon.io.kspace_write import write_kspace_dir


def _kspace(n=2, c=3, h=8, w=10, seed=0):
    rng = np.random.default_rng(seed)
    k = (rng.standard_normal((n, c, h, w)) + 1j * rng.standard_normal((n, c, h, w))).astype(np.complex64)
    mask = np.zeros(w, bool)
    mask[::2] = True
    mask[w // 2] = True
    maps = (rng.standard_normal((n, c, h, w)) + 1j * rng.standard_normal((n, c, h, w))).astype(np.complex64)
    return k * mask, mask, maps


@pytest.mark.parametrize("fmt", ["npy", "npz", "h5", "cfl"])
@pytest.mark.parametrize("with_extras", [True, False], ids=["mask+maps", "bare"])
def test_round_trip(tmp_path, fmt, with_extras):
    k, mask, maps = _kspace()
    meta = {"acceleration": 2.0, "mask_kind": "equispaced", "seed": 3}
    write_kspace_dir(tmp_path / "k", k, mask=mask if with_extras else None, coil_maps=maps if with_extras else None,
                     fmt=fmt, meta=meta, identity={"PatientID": "P"}, slice_names=["a", "b"])
    s = read_kspace_dir(tmp_path / "k")
    assert s.kspace.dtype == np.complex64 and s.kspace.shape == (2, 3, 8, 10)
    np.testing.assert_array_equal(s.kspace, k)
    assert s.mask.dtype == bool and s.mask.shape == (2, 8, 10)
    np.testing.assert_array_equal(s.mask, np.broadcast_to(mask, (2, 8, 10)))
    assert s.mask_source == ("file" if with_extras else "derived")
    if with_extras:
        np.testing.assert_array_equal(s.coil_maps, maps)
    else:
        assert s.coil_maps is None
    assert s.meta["mask_kind"] == "equispaced" and s.meta["seed"] == 3
    assert s.identity == {"PatientID": "P"} and s.slice_names == ["a", "b"]
    assert s.source_format == fmt
    assert s.acceleration == pytest.approx(10 / 6)


def test_single_coil_shapes(tmp_path):
    k, mask, _ = _kspace(n=1, c=1)
    write_kspace_dir(tmp_path / "h", k, fmt="h5")
    with h5py.File(tmp_path / "h" / "kspace.h5") as f:
        assert f["kspace"].shape == (1, 8, 10)  # fastMRI single-coil layout
    assert read_kspace_dir(tmp_path / "h").kspace.shape == (1, 1, 8, 10)
    d = tmp_path / "n"
    d.mkdir()
    np.save(d / "kspace.npy", k[0, 0])
    assert read_kspace_dir(d).kspace.shape == (1, 1, 8, 10)


def test_fastmri_style_h5_with_column_mask_and_header(tmp_path):
    k, mask, _ = _kspace(n=3, c=4)
    xml = (
        '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding><reconSpace>'
        "<matrixSize><x>320</x><y>320</y><z>1</z></matrixSize>"
        "<fieldOfView_mm><x>160</x><y>160</y><z>3</z></fieldOfView_mm>"
        "</reconSpace></encoding></ismrmrdHeader>"
    )
    with h5py.File(tmp_path / "file1000.h5", "w") as f:
        f.create_dataset("kspace", data=k)
        f.create_dataset("mask", data=mask.astype(np.float32))
        f.create_dataset("ismrmrd_header", data=xml)
        f.attrs["acceleration"] = 4
        f.attrs["acquisition"] = "CORPD_FBK"
    s = read_kspace_dir(tmp_path)  # the single .h5 in the directory
    assert s.kspace.shape == (3, 4, 8, 10) and s.mask_source == "file"
    assert s.attrs["acquisition"] == "CORPD_FBK" and s.attrs["acceleration"] == 4
    assert s.meta["pixel_spacing_mm"] == pytest.approx([0.5, 0.5])
    assert read_kspace_dir(tmp_path / "file1000.h5").n_slices == 3  # the file itself


def test_cfl_read_write_exact(tmp_path):
    a = (np.arange(2 * 3 * 4) + 1j).astype(np.complex64).reshape(2, 3, 4)
    hdr, cfl = write_cfl(tmp_path / "x", a)
    assert hdr.read_text().splitlines()[1].split()[:4] == ["2", "3", "4", "1"]
    assert cfl.stat().st_size == a.size * 8
    b = read_cfl(tmp_path / "x")
    assert b.shape == (2, 3, 4) and b.dtype == np.complex64
    np.testing.assert_array_equal(a, b)
    # Column-major on disk: the first axis varies fastest.
    raw = np.fromfile(cfl, np.complex64)
    assert raw[1] == a[1, 0, 0]


@pytest.mark.shared_data
def test_shared_bart_kspace(shared_data):
    d = shared_data("mr_brain_kspace_8coil")
    raw = read_cfl(d / "ksp")
    assert raw.shape == (1, 180, 230, 8) and raw.dtype == np.complex64
    img = read_cfl(d / "img.cfl")
    assert img.shape == (1, 180, 230, 1, 2) and img.dtype == np.complex64
    s = read_kspace_dir(d)
    assert s.kspace.shape == (1, 8, 180, 230) and s.source_format == "cfl"
    np.testing.assert_array_equal(s.kspace[0, 5], raw[0, :, :, 5])
    assert s.mask_source == "derived" and s.mask.shape == (1, 180, 230)
    assert 0.10 < s.mask.mean() < 0.15  # ~12.7 % Poisson-disc sampling
    # Energy peaks at the centre: DC at (H // 2, W // 2) within a sample or two.
    e = np.abs(s.kspace[0]).sum(axis=0)
    peak = np.unravel_index(e.argmax(), e.shape)
    assert abs(peak[0] - 90) <= 2 and abs(peak[1] - 115) <= 2


# --------------------------------------------------------------------- bad input


def test_real_kspace_refused(tmp_path):
    d = tmp_path / "k"
    d.mkdir()
    np.save(d / "kspace.npy", np.zeros((1, 1, 4, 4), np.float32))
    with pytest.raises(InputError) as e:
        read_kspace_dir(d)
    assert "kspace.npy" in str(e.value) and "complex" in str(e.value)


def test_nan_kspace_refused(tmp_path):
    k, _, _ = _kspace()
    k[0, 1, 2, 2] = np.nan
    d = tmp_path / "k"
    d.mkdir()
    np.save(d / "kspace.npy", k)
    with pytest.raises(InputError) as e:
        read_kspace_dir(d)
    assert "kspace.npy" in str(e.value) and "NaN" in str(e.value)


def test_mask_and_maps_shape_mismatch(tmp_path):
    k, mask, maps = _kspace()
    write_kspace_dir(tmp_path / "k", k, mask=mask, coil_maps=maps)
    np.save(tmp_path / "k" / "mask.npy", np.ones(7, np.uint8))
    with pytest.raises(InputError) as e:
        read_kspace_dir(tmp_path / "k")
    assert "mask.npy" in str(e.value) and "shape" in str(e.value)
    np.save(tmp_path / "k" / "mask.npy", mask)
    np.save(tmp_path / "k" / "coil_maps.npy", maps[:, :2])
    with pytest.raises(InputError) as e:
        read_kspace_dir(tmp_path / "k")
    assert "coil_maps.npy" in str(e.value)


def test_bad_sidecar(tmp_path):
    k, _, _ = _kspace()
    write_kspace_dir(tmp_path / "k", k)
    (tmp_path / "k" / "kspace.json").write_text('{"data": "kspace.npy",\n "seed": }')
    with pytest.raises(InputError) as e:
        read_kspace_dir(tmp_path / "k")
    assert "kspace.json" in str(e.value) and "line 2" in str(e.value)
    (tmp_path / "k" / "kspace.json").write_text(json.dumps({"data": "other.npy"}))
    with pytest.raises(InputError, match="other.npy"):
        read_kspace_dir(tmp_path / "k")
    (tmp_path / "k" / "kspace.json").write_text(json.dumps({"slices": ["one"]}))
    with pytest.raises(InputError, match="slices"):
        read_kspace_dir(tmp_path / "k")


def test_truncated_cfl(tmp_path):
    k, _, _ = _kspace()
    write_kspace_dir(tmp_path / "k", k, fmt="cfl")
    cfl = tmp_path / "k" / "kspace.cfl"
    cfl.write_bytes(cfl.read_bytes()[:-8])
    with pytest.raises(InputError) as e:
        read_kspace_dir(tmp_path / "k")
    assert "kspace.cfl" in str(e.value) and "truncated" in str(e.value)


def test_3d_cfl_refused(tmp_path):
    write_cfl(tmp_path / "kspace", np.ones((4, 5, 6, 2), np.complex64))
    with pytest.raises(InputError, match="3-D"):
        read_kspace_dir(tmp_path)


def test_h5_without_kspace_and_ismrmrd(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_group("dataset").create_dataset("data", data=np.zeros(3))
    with pytest.raises(InputError) as e:
        read_kspace_dir(tmp_path / "a.h5")
    assert "a.h5" in str(e.value) and "ISMRMRD" in str(e.value)
    (tmp_path / "b.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="b.h5"):
        read_kspace_dir(tmp_path / "b.h5")


def test_no_data(tmp_path):
    with pytest.raises(InputError, match="no k-space data"):
        read_kspace_dir(tmp_path)
    with pytest.raises(InputError, match="no such"):
        read_kspace_dir(tmp_path / "missing")
