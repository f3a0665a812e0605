"""``recon benchmark``: a tiny CT and MR benchmark end to end, resumption, settings guard, the report.

Everything is synthetic (phantom DICOM series and a NIfTI volume written into ``tmp_path``) and small
(2 slices, 64 x 64, 2 settings, 2 methods) so the module runs in CI on 2 cores without a GPU.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from recon.errors import InputError

pytest.importorskip("astra")

CHROMIUM = Path("/usr/bin/chromium")


# ------------------------------------------------------------------------------------ fixtures
def _phantom(n: int, size: int) -> np.ndarray:
    """``n`` slightly different Shepp-Logan slices in HU: air -1000, skull ~680, soft tissue -40 to 120."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    base = resize(shepp_logan_phantom(), (size, size), order=1, anti_aliasing=True)
    out = []
    for k in range(n):
        img = np.roll(base, k, axis=1)
        out.append(np.where(img > 0.05, 40.0 + 800.0 * (img - 0.2), -1000.0))
    return np.stack(out).astype(np.float32)


@pytest.fixture(scope="module")
def ct_series(tmp_path_factory) -> Path:
    """A 2-slice CT DICOM series (96 x 96, 2 mm pixels) of phantom slices."""
    from recon.io.dicom_write import write_series

    d = tmp_path_factory.mktemp("ct") / "series"
    write_series(_phantom(2, 96), d, modality="CT", pixel_spacing_mm=(2.0, 2.0), slice_thickness_mm=2.0)
    return d


@pytest.fixture(scope="module")
def ct_bench(tmp_path_factory, ct_series) -> Path:
    """A finished tiny CT benchmark: 2 slices, 2 settings (8 and 16 views at full photons), fbp + tv."""
    from pipelines.benchmark import run_benchmark

    out = tmp_path_factory.mktemp("bench") / "report"
    run_benchmark([ct_series], out, **_CT_ARGS)
    return out


_CT_ARGS = dict(modality="ct", methods=["fbp", "tv"], views=[8, 16], doses=[1.0], size=64, progress=False,
                device="cpu")


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _quality(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if not k.startswith("seconds")} for r in rows]


def _mtimes(d: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(d.iterdir())}


# ------------------------------------------------------------------------------------ CT end to end
def test_ct_outputs_exist(ct_bench: Path) -> None:
    for name in ("benchmark.json", "results.csv", "results.json", "report.html",
                 "plots/psnr_vs_dose.png", "plots/psnr_vs_dose.svg", "plots/ssim_vs_dose.png",
                 "plots/ssim_vs_dose.svg", "panels/v0008_p1.png", "panels/v0016_p1.png", "cells/reference.npz"):
        assert (ct_bench / name).is_file(), name
    cells = sorted(p.name for p in (ct_bench / "cells").glob("*.json"))
    assert cells == ["v0008_p1__fbp.json", "v0008_p1__tv.json", "v0016_p1__fbp.json", "v0016_p1__tv.json"]
    assert (ct_bench / "plots/psnr_vs_dose.svg").read_text().lstrip().startswith(("<?xml", "<svg"))


def test_ct_csv_agrees_with_metrics(ct_bench: Path) -> None:
    """Every CSV figure is the mean / std over slices of recon.metrics on the saved images."""
    from pipelines.simulate import FULL_VIEWS
    from recon.metrics import ct_metrics

    ref = np.load(ct_bench / "cells" / "reference.npz")["reference"]
    assert ref.shape == (2, 64, 64)
    rows = _rows(ct_bench)
    assert len(rows) == 4
    for r in rows:
        img = np.load(ct_bench / "cells" / f"{r['setting']}__{r['method']}.npz")["mean"]
        assert img.shape == ref.shape
        m = ct_metrics(img[:, None], ref[:, None])
        for key, col in (("psnr", "psnr"), ("ssim", "ssim"), ("rmse", "rmse_hu")):
            assert float(r[f"{col}_mean"]) == pytest.approx(float(np.mean(m[key])), rel=1e-9, abs=1e-12)
            assert float(r[f"{col}_std"]) == pytest.approx(float(np.std(m[key])), rel=1e-6, abs=1e-9)
        assert int(r["n_slices"]) == 2
        assert float(r["relative_dose"]) == pytest.approx(int(r["views"]) / FULL_VIEWS["parallel"] * float(r["photons"]))
        assert float(r["seconds_per_slice_mean"]) > 0
    # more views must not make FBP worse on a noise-free-ish phantom
    fbp = {int(r["views"]): float(r["psnr_mean"]) for r in rows if r["method"] == "fbp"}
    assert fbp[16] > fbp[8]


def test_ct_results_json_and_summary(ct_bench: Path) -> None:
    res = json.loads((ct_bench / "results.json").read_text())
    assert res["config"]["methods"] == ["fbp", "tv"]
    assert {s["method"] for s in res["summary"]} == {"fbp", "tv"}
    assert res["thresholds"] == {"psnr": [30.0, 35.0], "ssim": [0.8, 0.9]}
    assert res["headlines"] and all(h.split()[0] in ("fbp", "tv") for h in res["headlines"])
    assert len(res["rows"]) == 4


def test_summary_lowest_dose() -> None:
    from pipelines.benchmark import summarize

    rows = [
        {"method": "a", "relative_dose": 0.1, "label": "lo", "setting": "lo", "psnr_mean": 29.0, "ssim_mean": 0.7},
        {"method": "a", "relative_dose": 0.2, "label": "mid", "setting": "mid", "psnr_mean": 31.0, "ssim_mean": 0.85},
        {"method": "a", "relative_dose": 0.5, "label": "hi", "setting": "hi", "psnr_mean": 36.0, "ssim_mean": 0.88},
    ]
    (s,) = summarize(rows, ["a"], [30.0, 35.0, 40.0], [0.8, 0.9])
    got = {(e["metric"], e["level"]): e["relative_dose"] for e in s["levels"]}
    assert got == {("psnr", 30.0): 0.2, ("psnr", 35.0): 0.5, ("psnr", 40.0): None,
                   ("ssim", 0.8): 0.2, ("ssim", 0.9): None}
    assert s["best"]["psnr"]["relative_dose"] == 0.5


# ------------------------------------------------------------------------------------ resumption
def test_rerun_resumes_without_recomputing(ct_bench: Path, ct_series: Path, monkeypatch) -> None:
    import pipelines.benchmark as bm
    from pipelines.benchmark import cells

    before = _mtimes(ct_bench / "cells")
    csv_before = _rows(ct_bench)

    def boom(*a, **k):
        raise AssertionError("a finished cell was recomputed")

    monkeypatch.setattr(cells, "reconstruct_cell", boom)
    monkeypatch.setattr(cells, "simulate_setting", boom)
    bm.run_benchmark([ct_series], ct_bench, **_CT_ARGS)
    assert _mtimes(ct_bench / "cells") == before
    assert _rows(ct_bench) == csv_before


def test_killed_run_recomputes_only_missing_cells(tmp_path: Path, ct_bench: Path, ct_series: Path, monkeypatch) -> None:
    import pipelines.benchmark as bm
    from pipelines.benchmark import cells

    out = tmp_path / "report"
    shutil.copytree(ct_bench, out)
    # a kill mid-cell leaves the images (or a temporary file) but no JSON completion mark
    (out / "cells" / "v0016_p1__tv.json").unlink()
    (out / "cells" / ".v0016_p1__fbp.json.partial-123-abcd").write_text("{")
    before = _mtimes(out / "cells")
    calls = []
    real = cells.reconstruct_cell

    def counting(method, *a, **k):
        calls.append(method)
        return real(method, *a, **k)

    monkeypatch.setattr(cells, "reconstruct_cell", counting)
    bm.run_benchmark([ct_series], out, **_CT_ARGS)
    assert calls == ["tv"]
    after = _mtimes(out / "cells")
    assert not any(".partial-" in n for n in after)
    for name, t in before.items():
        if name.startswith("v0016_p1__tv") or ".partial-" in name:
            continue
        assert after[name] == t, f"{name} was rewritten"
    # same seeds, same data: the recomputed cell reproduces the original figures (timings aside; the
    # threaded projector sums in a varying order, hence a tolerance)
    new, old = _quality(_rows(out)), _quality(_rows(ct_bench))
    assert [(r["setting"], r["method"]) for r in new] == [(r["setting"], r["method"]) for r in old]
    for a, b in zip(new, old, strict=True):
        for k in ("psnr_mean", "ssim_mean", "rmse_hu_mean"):
            assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-5)


def test_other_settings_need_overwrite(tmp_path: Path, ct_bench: Path, ct_series: Path) -> None:
    from pipelines.benchmark import run_benchmark

    out = tmp_path / "report"
    shutil.copytree(ct_bench, out)
    args = dict(_CT_ARGS, views=[8])
    with pytest.raises(InputError, match="other settings.*views"):
        run_benchmark([ct_series], out, **args)
    res = run_benchmark([ct_series], out, overwrite=True, **args)
    assert len(res["rows"]) == 2
    assert sorted(p.name for p in (out / "cells").glob("*.json")) == ["v0008_p1__fbp.json", "v0008_p1__tv.json"]


def test_non_benchmark_dir_is_not_touched(tmp_path: Path, ct_series: Path) -> None:
    from pipelines.benchmark import run_benchmark

    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="overwrite"):
        run_benchmark([ct_series], out, **dict(_CT_ARGS, views=[8], methods=["fbp"]))
    assert (out / "notes.txt").read_text() == "keep me"


def test_thresholds_only_rewrite_the_report(tmp_path: Path, ct_bench: Path, ct_series: Path) -> None:
    from pipelines.benchmark import run_benchmark

    out = tmp_path / "report"
    shutil.copytree(ct_bench, out)
    res = run_benchmark([ct_series], out, psnr_levels=[10.0], ssim_levels=[0.1], **_CT_ARGS)
    assert res["thresholds"] == {"psnr": [10.0], "ssim": [0.1]}
    assert "PSNR &gt;= 10 dB" in (out / "report.html").read_text()


# ------------------------------------------------------------------------------------ CLI
def test_cli(tmp_path: Path, ct_series: Path, capsys) -> None:
    from pipelines.cli import main

    out = tmp_path / "cli"
    rc = main(["benchmark", str(ct_series), "--modality", "ct", "--views", "8", "--dose", "1,0.5",
               "--methods", "fbp", "--size", "64", "--device", "cpu", "--out", str(out), "--no-progress"])
    assert rc == 0
    assert re.search(r"^fbp (reaches|does not reach) ", capsys.readouterr().out, re.M)
    rows = _rows(out)
    assert [(r["views"], r["photons"]) for r in rows] == [("8", "1.0"), ("8", "0.5")]
    rc = main(["benchmark", str(ct_series), "--modality", "ct", "--methods", "cs_tv", "--out", str(tmp_path / "x")])
    assert rc == 2
    assert "cs_tv" in capsys.readouterr().err


def test_slice_selection() -> None:
    from pipelines.benchmark import parse_slice_spec, select_slices

    assert parse_slice_spec("all", 5) == [0, 1, 2, 3, 4]
    assert parse_slice_spec("1:4", 5) == [1, 2, 3]
    assert parse_slice_spec("::2", 5) == [0, 2, 4]
    assert parse_slice_spec("3,1,-1", 5) == [1, 3, 4]
    with pytest.raises(InputError):
        parse_slice_spec("7", 5)
    with pytest.raises(InputError):
        parse_slice_spec("a:b", 5)
    assert select_slices(range(100), 4) == [0, 33, 66, 99]
    assert select_slices([3, 4], 8) == [3, 4]
    assert select_slices(range(10), 0) == list(range(10))


# ------------------------------------------------------------------------------------ MR (NIfTI input)
@pytest.fixture(scope="module")
def brats_like(tmp_path_factory) -> Path:
    """A z-scored (negative values) NIfTI volume with a brain mask, laid out like a BraTS case."""
    import nibabel as nib

    d = tmp_path_factory.mktemp("mr") / "case_0001"
    d.mkdir()
    size, nz = 72, 6
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    vol = np.zeros((size, size, nz), np.float32)
    mask = np.zeros_like(vol)
    for k in range(1, nz - 1):  # first and last slices empty: the loader skips them
        brain = r < 24 + k
        vol[..., k] = np.where(brain, np.cos(xx / 5.0) + 0.5 * (r < 10) - 0.3, 0.0)
        mask[..., k] = brain
    inside = vol[mask > 0]
    vol = np.where(mask > 0, (vol - inside.mean()) / inside.std(), 0.0).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(d / "T1c_subtrMeanDivStd.nii.gz"))
    nib.save(nib.Nifti1Image(mask, np.eye(4)), str(d / "brainmask.nii.gz"))
    return d


def test_mr_nifti_benchmark(tmp_path: Path, brats_like: Path) -> None:
    from pipelines.benchmark import load_volumes, run_benchmark
    from recon.metrics import mr_metrics

    (vol,) = load_volumes([brats_like], "mr", slices="all", max_slices=2)
    assert vol.n_available == 4 and vol.slice_indices == [0, 3]
    assert vol.pixels.min() >= 0  # z-scored intensities shifted to a non-negative magnitude
    out = tmp_path / "mr"
    res = run_benchmark([brats_like / "T1c_subtrMeanDivStd.nii.gz"], out, modality="mr",
                        methods=["zero_filled", "cg_sense"], accels=[4.0], masks=["equispaced", "poisson"],
                        max_slices=2, size=64, progress=False, device="cpu")
    rows = _rows(out)
    assert [(r["setting"], r["method"]) for r in rows] == [
        ("x4_equispaced", "zero_filled"), ("x4_equispaced", "cg_sense"),
        ("x4_poisson", "zero_filled"), ("x4_poisson", "cg_sense")]
    ref = np.load(out / "cells" / "reference.npz")["reference"]
    for r in rows:
        assert float(r["relative_dose"]) == pytest.approx(0.25)
        assert 0.15 < float(r["sampled_fraction"]) < 0.4
        img = np.load(out / "cells" / f"{r['setting']}__{r['method']}.npz")["mean"]
        m = mr_metrics(img[:, None], ref[:, None])
        assert float(r["psnr_mean"]) == pytest.approx(float(np.mean(m["psnr"])), rel=1e-9)
        assert float(r["ssim_mean"]) == pytest.approx(float(np.mean(m["ssim"])), rel=1e-9)
        assert float(r["rmse_mean"]) == pytest.approx(float(np.mean(m["rmse"])), rel=1e-9)
    assert [h.split()[0] for h in res["headlines"]] == ["zero_filled", "cg_sense"]
    assert (out / "panels" / "x4_poisson.png").is_file()


def test_nifti_refused_for_ct(brats_like: Path) -> None:
    from pipelines.benchmark import load_volumes

    with pytest.raises(InputError, match="NIfTI"):
        load_volumes([brats_like], "ct")


# ------------------------------------------------------------------------------------ sampler + std maps
def test_sampler_cell_with_tiny_prior(tmp_path: Path, ct_series: Path) -> None:
    """A posterior sampler with an untrained tiny prior: NFE recorded, std maps saved and shown."""
    import torch

    from pipelines.benchmark import run_benchmark
    from priors import CT_WINDOW, EDMPrior, preset, save_checkpoint

    torch.manual_seed(0)
    prior = EDMPrior(net_config=preset("tiny"), modality="ct", normalization=CT_WINDOW, image_size=64)
    ckpt = save_checkpoint(prior, tmp_path / "prior")
    out = tmp_path / "sampler"
    run_benchmark([ct_series], out, modality="ct", methods=["fbp", "dds"], views=[16], doses=[0.5], nfe=3,
                  samples=2, prior=str(ckpt), size=64, progress=False, device="cpu")
    rows = {r["method"]: r for r in _rows(out)}
    assert int(rows["dds"]["nfe"]) > 0 and int(rows["dds"]["samples"]) == 2
    with np.load(out / "cells" / "v0016_p0.5__dds.npz") as z:
        assert z["std"].shape == (2, 64, 64) and float(z["std"].max()) > 0
    with np.load(out / "cells" / "v0016_p0.5__fbp.npz") as z:
        assert "std" not in z.files
    cell = json.loads((out / "cells" / "v0016_p0.5__dds.json").read_text())
    assert cell["prior"] == str(ckpt.resolve())
    assert cell["init"] == "tv"  # the default warm start, resolved for a CT cell
    assert json.loads((out / "cells" / "v0016_p0.5__fbp.json").read_text())["init"] is None


# ------------------------------------------------------------------------------------ report in a browser
def _data_uri_images(html: str) -> list[tuple[str, bytes]]:
    return [(mime, base64.b64decode(b64)) for mime, b64 in
            re.findall(r'<img src="data:(image/[a-z+]+);base64,([A-Za-z0-9+/=]+)"', html)]


def test_report_is_self_contained(ct_bench: Path) -> None:
    html = (ct_bench / "report.html").read_text()
    imgs = _data_uri_images(html)
    # two plots + one panel per setting
    assert len(imgs) == 4
    for mime, data in imgs:
        assert mime == "image/png" and data.startswith(b"\x89PNG") and len(data) > 1000
    # nothing fetched from anywhere: no external URLs, no scripts
    assert not re.search(r'(src|href)="(https?:|//|file:)', html)
    assert "<script" not in html
    assert "Summary" in html and "All results" in html


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="headless Chromium (/usr/bin/chromium, Debian package 'chromium') is not installed")
def test_report_renders_in_headless_chromium(ct_bench: Path, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "shot.png"
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           f"--screenshot={shot}", "--window-size=1200,2000", (ct_bench / "report.html").resolve().as_uri()]
    env = dict(os.environ, HOME=str(tmp_path))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert shot.is_file(), f"no screenshot (rc {proc.returncode}): {proc.stderr[-2000:]}"
    console = [ln for ln in proc.stderr.splitlines() if "Uncaught" in ln or "ERROR:CONSOLE" in ln]
    assert not console, "console errors:\n" + "\n".join(console)
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert img.shape == (2000, 1200)
    assert img.std() > 10, "screenshot is blank"
    # the plots render: the screenshot holds colourful (non-grey) pixels from the method curves/panels
    rgb = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    chroma = (rgb.max(axis=2) - rgb.min(axis=2)) > 60
    assert chroma.sum() > 500, "no coloured plot pixels in the screenshot"
