"""`recon demo` on a fresh install: the sample study, the bundled CT prior, three methods."""

from __future__ import annotations

import json

import pydicom
import pytest

from pipelines.cli import main


def _bundled_ct_prior() -> bool:
    from priors import available_priors

    return "ct" in available_priors()


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    if not _bundled_ct_prior():
        pytest.skip("no bundled CT prior in this installation")
    out = tmp_path / "demo"
    # fewer views and network evaluations than the default keep the test short; same code path
    assert main(["demo", "--out", str(out), "--nfe", "4", "--views", "16", "--no-progress"]) == 0
    assert (out / "comparison.png").stat().st_size > 10_000
    for method in ("fbp", "tv", "dds"):
        report = json.loads((out / method / "report.json").read_text())
        assert report["n_slices"] == 4 and "mean_psnr" in report
        files = sorted((out / method / "dicom").glob("*.dcm"))
        assert len(files) == 4
        assert pydicom.dcmread(files[0]).Modality == "CT"
    dds = json.loads((out / "dds" / "report.json").read_text())
    assert dds["settings"]["nfe"] == 4 and dds["slices"][0]["nfe"] >= 4
    assert dds["settings"]["init"] == "tv"  # the warm start actually used is on record
    # run again: everything is there, nothing is redone, nothing is overwritten (a rewrite, even
    # with the same bytes, renames a new file into place: another inode and modification time)
    outputs = [out / "comparison.png", out / "measurements" / "sinogram.npy"]
    for method in ("fbp", "tv", "dds"):
        outputs += [out / method / "report.json", *sorted((out / method / "dicom").glob("*.dcm"))]

    def stamps() -> dict[str, tuple[int, int]]:
        return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in outputs}

    before = stamps()
    assert main(["demo", "--out", str(out), "--nfe", "4", "--views", "16", "--no-progress"]) == 0
    assert stamps() == before
