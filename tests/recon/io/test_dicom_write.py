"""Writing derived DICOM series: round trip, identity, UIDs, geometry, validator."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from recon.errors import InputError
from recon.io import atomic
from recon.io.dicom_identity import synthetic_identity
from recon.io.dicom_provenance import provenance_description
from recon.io.dicom_read import read_series
from recon.io.dicom_rescale import choose_rescale, quantise
from recon.io.dicom_write import write_series, write_std_series

from ._dicom_helpers import make_ct_series

EXTRA = {"method": "dds", "prior": "/models/ct-prior-v2", "sampler": "dds", "nfe": 50, "seed": 7, "version": "0.1.0"}


def dciodvfy(path) -> tuple[list[str], list[str]]:
    """(errors, warnings) reported by dicom3tools' validator for one file."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy not installed (apt-get install dicom3tools)")
    out = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    lines = [ln.strip() for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    return [ln for ln in lines if ln.startswith("Error")], [ln for ln in lines if ln.startswith("Warning")]


@pytest.fixture
def ct_reference(tmp_path):
    values, _ = make_ct_series(tmp_path / "ref", n=4)
    return read_series(tmp_path / "ref")


def test_round_trip_with_reference(tmp_path, ct_reference):
    ref = ct_reference
    rng = np.random.default_rng(1)
    recon = ref.pixels + rng.normal(0, 3, ref.pixels.shape).astype(np.float32)
    files = write_series(recon, tmp_path / "out", modality="CT", reference=ref, extra=EXTRA, window=(40, 400))
    assert [f.name for f in files] == ["IM0001.dcm", "IM0002.dcm", "IM0003.dcm", "IM0004.dcm"]
    back = read_series(tmp_path / "out")
    # HU stored with slope 1: error at most half a unit.
    assert np.max(np.abs(back.pixels - recon)) <= 0.5 + 1e-4
    np.testing.assert_allclose(back.positions, ref.positions, atol=1e-5)
    np.testing.assert_allclose(back.orientation, ref.orientation, atol=1e-7)
    assert back.pixel_spacing_mm == pytest.approx(ref.pixel_spacing_mm)
    assert back.slice_thickness_mm == pytest.approx(ref.slice_thickness_mm)
    for kw in ("PatientName", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID", "StudyDate"):
        assert back.identity.get(kw) == ref.identity.get(kw), kw
    assert back.series_uid != ref.series_uid
    assert not set(back.sop_instance_uids) & set(ref.sop_instance_uids)
    assert len(set(back.sop_instance_uids)) == 4
    ds = pydicom.dcmread(files[0])
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert float(ds.RescaleSlope) == 1.0 and ds.RescaleType == "HU"
    assert float(ds.WindowCenter) == 40 and float(ds.WindowWidth) == 400
    assert len(ds.SeriesDescription) <= 64
    for token in ("dds", "ct-prior-v2", "nfe=50", "seed=7", "v0.1.0"):
        assert token in ds.SeriesDescription
    assert "prior=/models/ct-prior-v2" in ds.DerivationDescription
    assert '"nfe": 50' in ds.ImageComments
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == ref.sop_instance_uids[0]


def test_subset_and_resized_keep_field_of_view(tmp_path, ct_reference):
    ref = ct_reference  # 16 x 12 pixels of 0.7 x 0.8 mm
    img = np.zeros((2, 32, 24), np.float32)
    write_series(img, tmp_path / "o", modality="CT", reference=ref, slice_indices=[1, 3])
    back = read_series(tmp_path / "o")
    assert back.pixel_spacing_mm == pytest.approx((0.35, 0.4))
    # Field-of-view corner (outer edge of the top-left pixel) is unchanged.
    o = ref.orientation
    corner = lambda pos, sp: pos - 0.5 * sp[1] * o[:3] - 0.5 * sp[0] * o[3:]  # noqa: E731
    np.testing.assert_allclose(corner(back.positions, back.pixel_spacing_mm),
                               corner(ref.positions[[1, 3]], ref.pixel_spacing_mm), atol=1e-5)


def test_without_reference_synthetic_identity(tmp_path):
    vol = np.linspace(0, 1, 3 * 8 * 10, dtype=np.float32).reshape(3, 8, 10)
    ident = synthetic_identity()
    files = write_series(vol, tmp_path / "mr", modality="MR", identity=ident, extra=EXTRA,
                         pixel_spacing_mm=(0.5, 0.5), slice_thickness_mm=3.0)
    std_files = write_std_series(vol * 0.1, tmp_path / "mr", modality="MR", identity=ident, extra=EXTRA,
                                 pixel_spacing_mm=(0.5, 0.5), slice_thickness_mm=3.0)
    assert [f.name for f in std_files][0] == "STD0001.dcm"
    mean = read_series(files)
    std = read_series(std_files)
    ds = pydicom.dcmread(files[0])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    assert "Synthetic" in ds.StudyDescription and ds.PatientName == "ANONYMOUS^"
    # One study, one frame of reference, two series.
    assert mean.identity["StudyInstanceUID"] == std.identity["StudyInstanceUID"] == ident["StudyInstanceUID"]
    assert mean.identity["FrameOfReferenceUID"] == std.identity["FrameOfReferenceUID"]
    assert mean.series_uid != std.series_uid
    sd = pydicom.dcmread(std_files[0])
    assert sd.SeriesDescription.endswith(" posterior std") and len(sd.SeriesDescription) <= 64
    assert int(sd.SeriesNumber) != int(ds.SeriesNumber)
    # Non-HU values use the finest slope: error below one quantum.
    slope = float(ds.RescaleSlope)
    assert np.max(np.abs(mean.pixels - vol)) <= slope / 2 + 1e-7
    assert np.max(np.abs(std.pixels - vol * 0.1)) <= float(sd.RescaleSlope) / 2 + 1e-7
    assert mean.slice_spacing_mm == pytest.approx(3.0)
    np.testing.assert_allclose(mean.positions, std.positions)


def test_default_identity_without_anything(tmp_path):
    files = write_series(np.zeros((1, 4, 4)), tmp_path / "o", modality="CT")
    ds = pydicom.dcmread(files[0])
    assert ds.StudyInstanceUID and ds.FrameOfReferenceUID and ds.PatientID.startswith("RECON-")


@pytest.mark.parametrize(
    "lo,hi,unit_slope",
    [(-1024.0, 3071.0, True), (-0.02, 0.05, False), (0.0, 1e6, False), (-5e5, 5e5, True), (3.0, 3.0, False)],
)
def test_rescale_never_clips(lo, hi, unit_slope):
    v = np.linspace(lo, hi, 1001)
    dtype, slope, intercept = choose_rescale(v, unit_slope=unit_slope)
    stored = quantise(v, dtype, slope, intercept)
    back = stored.astype(np.float64) * slope + intercept
    assert np.max(np.abs(back - v)) <= slope / 2 * (1 + 1e-9) + 1e-12


def test_provenance_description_fits():
    d = provenance_description({**EXTRA, "prior": "x" * 200, "sampler": "y" * 80})
    assert len(d) <= 64 and d.startswith("dds")
    assert provenance_description(None) == "reconstruction"


def test_refuses_to_overwrite(tmp_path, ct_reference):
    files = write_series(ct_reference.pixels, tmp_path / "o", modality="CT", reference=ct_reference)
    with pytest.raises(InputError) as e:
        write_series(ct_reference.pixels, tmp_path / "o", modality="CT", reference=ct_reference)
    assert "IM0001.dcm" in str(e.value)
    write_series(ct_reference.pixels[:2], tmp_path / "o", modality="CT", reference=ct_reference, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["IM0001.dcm", "IM0002.dcm"]
    assert read_series(tmp_path / "o").n_slices == 2 and files


def test_interrupted_write_leaves_only_complete_files(tmp_path, ct_reference, monkeypatch):
    calls = {"n": 0}
    real_replace = atomic.os.replace

    def flaky_replace(src, dst):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed while the third file is being written
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", flaky_replace)
    with pytest.raises(KeyboardInterrupt):
        write_series(ct_reference.pixels, tmp_path / "o", modality="CT", reference=ct_reference)
    names = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert names == ["IM0001.dcm", "IM0002.dcm"]
    for n in names:
        _ = pydicom.dcmread(tmp_path / "o" / n).pixel_array  # complete and decodable


def test_rejects_bad_images(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        write_series(np.full((1, 4, 4), np.nan), tmp_path / "o", modality="CT")
    with pytest.raises(ValueError, match="modality"):
        write_series(np.zeros((1, 4, 4)), tmp_path / "o", modality="PT")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_lossy_source_is_flagged(tmp_path, ct_reference):
    ct_reference.lossy = True
    files = write_series(ct_reference.pixels, tmp_path / "o", modality="CT", reference=ct_reference)
    assert pydicom.dcmread(files[0]).LossyImageCompression == "01"


# --------------------------------------------------------------------- validator


def test_dciodvfy_ct_and_mr_without_reference(tmp_path):
    ct = write_series(np.random.default_rng(0).normal(0, 300, (2, 16, 16)), tmp_path / "ct", modality="CT", extra=EXTRA)
    mr = write_series(np.random.default_rng(0).random((2, 16, 16)), tmp_path / "mr", modality="MR", extra=EXTRA)
    std = write_std_series(np.random.default_rng(0).random((2, 16, 16)), tmp_path / "ct", modality="CT", extra=EXTRA)
    for f in (ct[0], mr[0], std[0]):
        errors, _ = dciodvfy(f)
        assert errors == [], f"{f}: {errors}"


@pytest.mark.parametrize("body_part", ["CHEST", "KNEE", None])
def test_laterality_only_where_its_condition_holds(tmp_path, body_part):
    # Type 2C: present (maybe empty) for a paired or unstated body part, absent beside an unpaired one
    _, files = make_ct_series(tmp_path / "ref", n=2)
    for f in files:
        ds = pydicom.dcmread(f)
        if body_part is not None:
            ds.BodyPartExamined = body_part
        ds.save_as(f)
    ref = read_series(tmp_path / "ref")
    out_files = write_series(ref.pixels, tmp_path / "o", modality="CT", reference=ref, extra=EXTRA)
    out = pydicom.dcmread(out_files[0])
    assert ("Laterality" in out) == (body_part in (None, "KNEE"))
    errors, _ = dciodvfy(out_files[0])
    assert not [e for e in errors if "Laterality" in e], errors


@pytest.mark.shared_data
def test_dciodvfy_from_real_references(tmp_path, shared_data):
    ct_ref = read_series(sorted(shared_data("ct_ircad_patient01", "PATIENT_DICOM").iterdir())[:2])
    ct = write_series(ct_ref.pixels + 0.25, tmp_path / "ct", modality="CT", reference=ct_ref, extra=EXTRA)
    errors, _ = dciodvfy(ct[0])
    assert errors == [], errors
    for sub in (("generic", "anatomical", "001"), ("philips_enhanced", "anatomical", "001"), ("hitachi", "anatomical", "001")):
        mr_ref = read_series(shared_data("dicom_edge_cases", *sub))
        out = tmp_path / "_".join(sub)
        mr = write_series(mr_ref.pixels / 1000.0, out, modality="MR", reference=mr_ref, extra=EXTRA)
        errors, _ = dciodvfy(mr[0])
        assert errors == [], (sub, errors)
        back = read_series(out)
        np.testing.assert_allclose(back.positions, mr_ref.positions, atol=1e-4)
        assert back.identity["StudyInstanceUID"] == mr_ref.identity["StudyInstanceUID"]
