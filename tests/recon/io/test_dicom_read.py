"""Reading CT/MR DICOM series: sorting, rescale, transfer syntaxes, multi-frame, bad input."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import UID

from recon.errors import InputError
from recon.io.dicom_read import Series, list_series, read_series

from ._dicom_helpers import edit, make_ct_series

# --------------------------------------------------------------------- synthetic (always run)


def test_sorts_by_position_not_by_file_order(tmp_path):
    values, files = make_ct_series(tmp_path / "s")
    # Shuffle file names so name order and InstanceNumber disagree with the geometry.
    order = [2, 0, 3, 1]
    tmp = tmp_path / "shuffled"
    tmp.mkdir()
    for new_i, old_i in enumerate(order):
        shutil.copy(files[old_i], tmp / f"x{new_i}.dcm")
        edit(tmp / f"x{new_i}.dcm", InstanceNumber=new_i + 1)
    s = read_series(tmp)
    assert isinstance(s, Series)
    assert s.shape == (4, 16, 12)
    np.testing.assert_array_equal(s.pixels, values)
    assert np.all(np.diff(s.positions @ s.normal) > 0)
    assert s.pixel_spacing_mm == pytest.approx((0.7, 0.8))
    assert s.slice_spacing_mm == pytest.approx(2.0)
    assert s.modality == "CT" and s.rescale_type == "HU"


def test_sorts_along_oblique_normal(tmp_path):
    values, files = make_ct_series(tmp_path / "s", n=3)
    # Oblique orientation; positions along its normal but in reverse file order.
    c, si = np.cos(0.3), np.sin(0.3)
    ori = [1, 0, 0, 0, c, si]
    normal = np.cross(ori[:3], ori[3:])
    for i, f in enumerate(files):
        pos = (10.0 - 3.0 * i) * normal + np.array([5.0, -2.0, 7.0])
        edit(f, ImageOrientationPatient=[f"{v:.8f}" for v in ori], ImagePositionPatient=[f"{v:.8f}" for v in pos])
    s = read_series(tmp_path / "s")
    np.testing.assert_array_equal(s.pixels, values[::-1])
    assert s.slice_spacing_mm == pytest.approx(3.0, abs=1e-5)


def test_instance_number_fallback_without_geometry(tmp_path):
    values, files = make_ct_series(tmp_path / "s", n=3)
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        del ds.ImagePositionPatient
        del ds.ImageOrientationPatient
        ds.InstanceNumber = 3 - i
        ds.save_as(f)
    s = read_series(tmp_path / "s")
    assert not s.geometry_known
    np.testing.assert_array_equal(s.pixels, values[::-1])


def test_list_of_files_and_series_choice(tmp_path):
    _, a = make_ct_series(tmp_path / "both", n=2, seed=1)
    values_b, b = make_ct_series(tmp_path / "b", n=3, seed=2)
    for f in b:
        shutil.copy(f, tmp_path / "both" / ("B" + f.name))
    with pytest.raises(InputError) as e:
        read_series(tmp_path / "both")
    msg = str(e.value)
    assert "2 series found" in msg and str(tmp_path / "both") in msg
    uid_b = pydicom.dcmread(b[0]).SeriesInstanceUID
    assert uid_b in msg
    s = read_series(tmp_path / "both", series_uid=uid_b)
    np.testing.assert_array_equal(s.pixels, values_b)
    assert read_series(b).n_slices == 3
    with pytest.raises(InputError, match="not found"):
        read_series(tmp_path / "both", series_uid="1.2.3")
    assert {d["n_files"] for d in list_series(tmp_path / "both")} == {2, 3}


def test_rescale_per_slice(tmp_path):
    values, files = make_ct_series(tmp_path / "s", n=2)
    ds = pydicom.dcmread(files[1])
    ds.RescaleSlope = "2"
    ds.RescaleIntercept = "-10"
    ds.save_as(files[1])
    s = read_series(tmp_path / "s")
    np.testing.assert_allclose(s.pixels[1], values[1] * 2 - 10)


def test_skips_hidden_and_sidecar_files(tmp_path):
    values, _ = make_ct_series(tmp_path / "s", n=2)
    (tmp_path / "s" / "notes.txt").write_text("hello")
    (tmp_path / "s" / ".IM0001.dcm.partial-1-ab").write_bytes(b"junk")
    assert read_series(tmp_path / "s").n_slices == 2


# bad input: every case is an InputError naming the file


def test_not_dicom(tmp_path):
    make_ct_series(tmp_path / "s", n=2)
    bad = tmp_path / "s" / "garbage.dcm"
    bad.write_bytes(b"this is not DICOM" * 20)
    with pytest.raises(InputError) as e:
        read_series(tmp_path / "s")
    assert "garbage.dcm" in str(e.value) and "not a DICOM file" in str(e.value)


def test_truncated_pixel_data(tmp_path):
    _, files = make_ct_series(tmp_path / "s", n=2)
    data = files[1].read_bytes()
    files[1].write_bytes(data[: len(data) - 100])
    with pytest.raises(InputError) as e:
        read_series(tmp_path / "s")
    assert files[1].name in str(e.value) and "truncated" in str(e.value)


def test_truncated_header(tmp_path):
    _, files = make_ct_series(tmp_path / "s", n=2)
    files[0].write_bytes(files[0].read_bytes()[:400])
    with pytest.raises(InputError) as e:
        read_series(tmp_path / "s")
    assert files[0].name in str(e.value)


def test_rgb_refused(tmp_path):
    _, files = make_ct_series(tmp_path / "s", n=2)
    edit(files[0], PhotometricInterpretation="RGB", SamplesPerPixel=3)
    with pytest.raises(InputError) as e:
        read_series(tmp_path / "s")
    assert files[0].name in str(e.value) and "colour" in str(e.value)


def test_non_image_object(tmp_path):
    _, files = make_ct_series(tmp_path / "s", n=2)
    sr = pydicom.dcmread(files[0])
    for kw in ("Rows", "Columns", "PixelData"):
        delattr(sr, kw)
    sr.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    sr.SeriesInstanceUID = "1.2.3.4.5"
    sr.save_as(tmp_path / "s" / "report.dcm")
    assert read_series(tmp_path / "s").n_slices == 2  # skipped inside a directory
    with pytest.raises(InputError) as e:
        read_series([tmp_path / "s" / "report.dcm"])
    assert "report.dcm" in str(e.value) and "not an image" in str(e.value)


def test_gantry_tilt_attribute_refused(tmp_path):
    _, files = make_ct_series(tmp_path / "s", n=2)
    edit(files[0], GantryDetectorTilt="12")
    with pytest.raises(InputError) as e:
        read_series(tmp_path / "s")
    assert files[0].name in str(e.value) and "gantry" in str(e.value).lower()


def test_sheared_stack_refused(tmp_path):
    _, files = make_ct_series(tmp_path / "s", n=3)
    for i, f in enumerate(files):
        pos = pydicom.dcmread(f).ImagePositionPatient
        edit(f, ImagePositionPatient=[pos[0], float(pos[1]) + 0.5 * i, pos[2]])  # 14 deg shear
    with pytest.raises(InputError) as e:
        read_series(tmp_path / "s")
    assert "not stacked along their normal" in str(e.value) and ".dcm" in str(e.value)


def test_duplicate_positions_refused(tmp_path):
    _, files = make_ct_series(tmp_path / "s", n=2)
    edit(files[1], ImagePositionPatient=pydicom.dcmread(files[0]).ImagePositionPatient)
    with pytest.raises(InputError, match="share a position"):
        read_series(tmp_path / "s")


def test_mixed_sizes_and_orientations_refused(tmp_path):
    _, files = make_ct_series(tmp_path / "s", n=2)
    edit(files[1], ImageOrientationPatient=[0, 1, 0, 0, 0, -1])
    with pytest.raises(InputError, match="orientation"):
        read_series(tmp_path / "s")


def test_undecodable_transfer_syntax_named(tmp_path):
    _, files = make_ct_series(tmp_path / "s", n=1)
    ds = pydicom.dcmread(files[0])
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.100")  # MPEG2: no decoder
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    ds.save_as(files[0], enforce_file_format=True)
    with pytest.raises(InputError) as e:
        read_series(tmp_path / "s")
    assert files[0].name in str(e.value) and "MPEG2" in str(e.value)


def test_other_modality_refused(tmp_path):
    _, files = make_ct_series(tmp_path / "s", n=1)
    edit(files[0], Modality="PT")
    with pytest.raises(InputError, match="modality PT"):
        read_series(tmp_path / "s")


def test_missing_path_and_empty_dir(tmp_path):
    with pytest.raises(InputError, match="no such"):
        read_series(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no DICOM"):
        read_series(tmp_path / "empty")


# --------------------------------------------------------------------- real data


@pytest.mark.shared_data
def test_ircad_contiguous_series(shared_data):
    s = read_series(shared_data("ct_ircad_patient01", "PATIENT_DICOM"))
    assert s.shape == (129, 512, 512)
    assert s.pixels.dtype == np.float32
    along = s.positions @ s.normal
    assert np.all(np.diff(along) > 0)
    assert s.pixel_spacing_mm == pytest.approx((0.57, 0.57), abs=1e-4)
    assert s.slice_spacing_mm == pytest.approx(1.6, abs=1e-4)
    assert s.uniform_spacing
    assert -1024 <= s.pixels.min() < -900 and 900 < s.pixels.max() <= 1023  # HU clipped at source
    assert s.identity["StudyInstanceUID"] and "PatientName" in s.identity
    assert len(set(s.sop_instance_uids)) == 129


@pytest.mark.shared_data
def test_ircad_order_independent_of_listing(shared_data):
    d = shared_data("ct_ircad_patient01", "PATIENT_DICOM")
    files = sorted(d.iterdir())[:20]
    random.Random(0).shuffle(files)
    s = read_series(files)
    assert np.all(np.diff(s.positions[:, 2]) > 0)


@pytest.mark.shared_data
def test_tcga_single_slices(shared_data):
    d = shared_data("ct_tcga_luad", "dicom")
    files = sorted(d.iterdir())
    with pytest.raises(InputError, match="series found"):
        read_series(d)
    for f in files[:: max(1, len(files) // 12)]:
        s = read_series(f)
        assert s.shape[0] == 1 and s.shape[1:] == (512, 512)
        assert s.modality == "CT"
        assert -3100 < s.pixels.min() < -500 and s.pixels.max() > 0  # air in HU present


EDGE = "dicom_edge_cases"


def _edge_dirs(root: Path) -> list[Path]:
    return sorted({p.parent for p in root.rglob("*.dcm")})


@pytest.mark.shared_data
def test_every_edge_case_decodes_or_fails_clearly(shared_data):
    root = shared_data(EDGE)
    outcomes = {}
    for d in _edge_dirs(root):
        rel = str(d.relative_to(root))
        try:
            s = read_series(d)
            assert s.pixels.ndim == 3 and np.isfinite(s.pixels).all()
            assert np.all(np.diff(s.positions @ s.normal) > 0)
            outcomes[rel] = "ok"
        except InputError as e:
            assert e.path is not None and str(e.path).startswith(str(d)), rel
            outcomes[rel] = e.problem
    assert "gantry tilt" in outcomes["failing/gantrytilting/001"]
    assert "colour image" in outcomes["generic/rgb/001"]
    failures = {k: v for k, v in outcomes.items() if v != "ok"}
    assert set(failures) == {"failing/gantrytilting/001", "generic/rgb/001"}, failures


@pytest.mark.shared_data
def test_compressed_syntaxes_decode_identically(shared_data):
    # The same lossless images in JPEG 2000, JPEG lossless, JPEG-LS and RLE must decode equal.
    root = shared_data(EDGE, "generic")
    ref = read_series(root / "compressed_rle" / "001").pixels
    for name in ("compressed", "compressed_j2k", "compressed_jpeg", "compressed_jpegls"):
        s = read_series(root / name / "001")
        np.testing.assert_array_equal(s.pixels, ref, err_msg=name)


@pytest.mark.shared_data
def test_edge_cases_match_ground_truth_volumes(shared_data):
    # dicom2nifti's NIfTI ground truth: same values (after rescale), same slices in stack order
    # (its slice axis may run the other way).
    nib = pytest.importorskip("nibabel")
    root = shared_data(EDGE)
    checked = 0
    for gt in sorted(root.rglob("*_ground_truth.nii.gz")):
        d = gt.parent / gt.name.replace("_ground_truth.nii.gz", "")
        if not d.is_dir() or "rgb" in d.parts:
            continue
        s = read_series(d)
        img = nib.load(gt)
        g = np.asarray(img.dataobj, dtype=np.float64).reshape(img.shape[:3])
        np.testing.assert_allclose(np.sort(s.pixels.ravel()), np.sort(g.ravel()), rtol=1e-4, atol=1e-3, err_msg=str(d))
        ours, theirs = s.pixels.sum(axis=(1, 2)), g.sum(axis=(0, 1))
        assert np.allclose(ours, theirs, rtol=1e-5) or np.allclose(ours, theirs[::-1], rtol=1e-5), d
        checked += 1
    assert checked >= 10


@pytest.mark.shared_data
def test_enhanced_multiframe(shared_data):
    p = read_series(shared_data(EDGE, "philips_enhanced", "anatomical", "001"))
    assert p.shape == (8, 256, 256) and p.modality == "MR"
    assert p.slice_spacing_mm == pytest.approx(1.2, abs=1e-3)
    assert p.frame_numbers == sorted(p.frame_numbers) or p.frame_numbers == sorted(p.frame_numbers, reverse=True)
    # Philips per-frame rescale slope 4.2588... is applied: values are not integers.
    assert not np.allclose(p.pixels, np.round(p.pixels))
    sm = read_series(shared_data(EDGE, "siemens_multiframe", "anatomical", "001"))
    assert sm.shape == (8, 256, 256)
    assert sm.pixel_spacing_mm == pytest.approx((0.9375, 0.9375))
    assert sm.slice_spacing_mm == pytest.approx(0.9, abs=1e-3)
    assert len(set(sm.sop_instance_uids)) == 1 and sm.frame_numbers[0] is not None
