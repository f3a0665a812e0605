"""De-identification: the PS3.15 Basic Profile with modified dates, on a small study (no server)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from recon.io.pacs import Deidentifier, load_key
from tests.pacs.conftest import IDENTITY, LEAK_STRINGS, make_study

KEY = b"0123456789abcdef0123456789abcdef"


def _deid(files: list[Path], d: Deidentifier) -> list[Dataset]:
    out = []
    for f in files:
        ds = pydicom.dcmread(f)
        out.append(d.apply(ds))
    return out


def test_identifiers_are_removed_and_geometry_and_pixels_kept(study_files: list[Path]) -> None:
    originals = [pydicom.dcmread(f) for f in study_files]
    result = _deid(study_files, Deidentifier(KEY))
    for before, after in zip(originals, result, strict=True):
        text = str(after) + str(after.file_meta)
        assert [s for s in LEAK_STRINGS if s in text] == []
        assert "Quentinella Memorial" not in text and after.get("InstitutionName") in (None, "", "ANONYMIZED")
        assert not any(e.tag.is_private for e in after)
        assert after.PatientIdentityRemoved == "YES"
        assert [i.CodeValue for i in after.DeidentificationMethodCodeSequence] == ["113100", "113107"]
        assert after.AccessionNumber == "" and after.PatientBirthDate == ""
        for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "Rows",
                   "Columns", "RescaleSlope", "RescaleIntercept", "Modality", "SOPClassUID"):
            assert after.get(kw) == before.get(kw), kw
        assert np.array_equal(after.pixel_array, before.pixel_array)


def test_uids_are_remapped_consistently_and_references_follow(study_files: list[Path]) -> None:
    first = pydicom.dcmread(study_files[0])
    referring = pydicom.dcmread(study_files[1])
    item = Dataset()
    item.ReferencedSOPClassUID = first.SOPClassUID
    item.ReferencedSOPInstanceUID = first.SOPInstanceUID
    referring.SourceImageSequence = DicomSequence([item])
    d = Deidentifier(KEY)
    a, b = d.apply(first), d.apply(referring)
    assert a.StudyInstanceUID == b.StudyInstanceUID and a.SeriesInstanceUID == b.SeriesInstanceUID
    assert a.FrameOfReferenceUID == b.FrameOfReferenceUID
    assert b.SourceImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID  # nested references remapped too
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert str(a.StudyInstanceUID).startswith("2.25.") and len(str(a.StudyInstanceUID)) <= 64
    # the same key gives the same UIDs (a rerun or a resumed pull writes the same files); another key does not
    again = Deidentifier(KEY).apply(pydicom.dcmread(study_files[0]))
    other = Deidentifier(b"another key, another export....").apply(pydicom.dcmread(study_files[0]))
    assert again.SOPInstanceUID == a.SOPInstanceUID and other.SOPInstanceUID != a.SOPInstanceUID


def test_dates_shift_by_one_offset_per_patient(tmp_path: Path) -> None:
    d = Deidentifier(KEY)
    one = _deid(make_study(tmp_path / "a", n=1), d)[0]
    later = make_study(tmp_path / "b", n=1)
    ds = pydicom.dcmread(later[0])
    ds.StudyDate = "20240412"  # 31 days after the first study
    ds.save_as(later[0])
    two = _deid(later, d)[0]
    other = make_study(tmp_path / "c", n=1, identity={**IDENTITY, "PatientID": "SOMEONE-ELSE"})
    three = _deid(other, d)[0]
    days = (np.datetime64(_iso(two.StudyDate)) - np.datetime64(_iso(one.StudyDate))).astype(int)
    assert days == 31  # intervals within a patient are kept
    shift = (np.datetime64(_iso(one.StudyDate)) - np.datetime64("2024-03-12")).astype(int)
    assert -3650 <= shift <= -365
    assert one.StudyTime == "101500"  # whole-day shifts keep the time of day
    assert three.StudyDate != one.StudyDate  # another patient, another offset
    assert one.PatientID == two.PatientID != three.PatientID and one.PatientID.startswith("ANON")


def _iso(da: str) -> str:
    return f"{da[:4]}-{da[4:6]}-{da[6:]}"


def test_mapping_only_when_asked(study_files: list[Path], tmp_path: Path) -> None:
    quiet = Deidentifier(KEY)
    _deid(study_files, quiet)
    with pytest.raises(ValueError, match="record"):
        quiet.write_mapping(tmp_path / "map.json")
    assert not (tmp_path / "map.json").exists()
    recording = Deidentifier(KEY, record=True)
    out = _deid(study_files, recording)
    path = recording.write_mapping(tmp_path / "map.json")
    mapping = json.loads(path.read_text())
    assert mapping["patients"][IDENTITY["PatientID"]]["pseudonym"] == out[0].PatientID
    original = pydicom.dcmread(study_files[0], stop_before_pixels=True)
    assert mapping["uids"][str(original.StudyInstanceUID)] == out[0].StudyInstanceUID
    assert path.stat().st_mode & 0o077 == 0


def test_key_from_environment_or_a_private_key_file(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = load_key()
    path = isolated_env / "config" / "recon" / "deid.key"
    assert path.is_file() and path.stat().st_mode & 0o077 == 0
    assert load_key() == key  # created once, then reused
    monkeypatch.setenv("RECON_DEID_KEY", "from-the-environment-0123")
    assert load_key() == b"from-the-environment-0123"


def test_burned_in_annotation_is_refused(study_files: list[Path]) -> None:
    ds = pydicom.dcmread(study_files[0])
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(ValueError, match="burned-in"):
        Deidentifier(KEY).apply(ds)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not installed")
def test_deidentified_files_pass_dciodvfy(study_files: list[Path], tmp_path: Path) -> None:
    for i, ds in enumerate(_deid(study_files[:2], Deidentifier(KEY))):
        path = tmp_path / f"deid{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        assert [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")] == []
