import numpy as np
import pytest
from PIL import Image

from pipelines.training_data import describe_source, load_training_slices
from recon.errors import InputError


def test_npy_png_patient_ids(tmp_path):
    (tmp_path / "pA").mkdir()
    np.save(tmp_path / "pA" / "stack.npy", np.zeros((3, 8, 8), np.float32))
    np.save(tmp_path / "loose.npy", np.ones((8, 8), np.float32))
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(tmp_path / "pA" / "x.png")
    d = load_training_slices([tmp_path], "ct")
    assert len(d) == 5
    assert sorted(set(d.patient_ids)) == ["loose", "pA"]
    assert d.sources[0]["licence"] == "unknown" and d.sources[0]["n_slices"] == 5


def test_nifti_with_mask_skips_empty_and_shifts(tmp_path):
    nib = pytest.importorskip("nibabel")
    vol = np.full((16, 16, 6), -2.0, np.float32)
    mask = np.zeros_like(vol)
    mask[4:12, 4:12, 1:4] = 1
    vol[mask > 0] = np.random.default_rng(0).normal(0, 1, int(mask.sum()))
    p = tmp_path / "patient7"
    p.mkdir()
    nib.save(nib.Nifti1Image(vol, np.eye(4)), p / "T1.nii.gz")
    nib.save(nib.Nifti1Image(mask, np.eye(4)), p / "brainmask.nii.gz")
    d = load_training_slices([tmp_path], "mr")
    assert len(d) == 3 and set(d.patient_ids) == {"patient7"}
    assert all(s.min() >= 0 for s in d.slices)
    assert all(s[0, 0] == 0 for s in d.slices)  # background outside the mask is 0


def test_empty_and_missing(tmp_path):
    with pytest.raises(InputError, match="no usable CT slices"):
        load_training_slices([tmp_path], "ct")
    with pytest.raises(InputError, match="no such file"):
        load_training_slices([tmp_path / "x"], "ct")


def test_licence_from_source_txt(tmp_path):
    (tmp_path / "SOURCE.txt").write_text("repo: x\nlicence: CC BY 4.0\n")
    (tmp_path / "sub").mkdir()
    info = describe_source(tmp_path / "sub")
    assert info["licence"] == "CC BY 4.0" and info["source"] == "repo: x"


def test_licence_field_spanning_lines(tmp_path):
    (tmp_path / "SOURCE.txt").write_text("repo: x\nlicence: no LICENSE file; the dataset is\n"
                                          "         believed CC BY 4.0\nfile names: unchanged\n")
    assert describe_source(tmp_path)["licence"] == "no LICENSE file; the dataset is believed CC BY 4.0"


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_ct_dicom(shared_data):
    d = load_training_slices([shared_data("ct_tcga_luad", "dicom")], "ct")
    assert len(d) == 82 and len(set(d.patient_ids)) >= 40
    assert d.slices[0].shape == (512, 512) and d.slices[0].min() >= -1100
    assert "CC BY 3.0" in d.sources[0]["licence"]


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_brats_nifti(shared_data):
    d = load_training_slices([shared_data("mr_brats2015", "validation")], "mr")
    assert len(set(d.patient_ids)) == 2 and len(d) > 100
    assert "NC" in d.sources[0]["licence"]
