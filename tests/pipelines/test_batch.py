"""``recon batch``: simulate / reconstruct over many studies on a Dask LocalCluster with worker processes.

The studies are tiny (3-slice 64 x 64 phantom series, 32 x 32 reconstructions, fbp / tv), so the
module runs on 2 cores: one two-process cluster is shared by the tests, which reach it through
``--scheduler`` as a user reaches an existing cluster; one test starts its own with ``--workers``.

A resumed ``recon reconstruct`` (serial or in a batch) is not bit-identical in float32 to an
uninterrupted one with TV: the study's operator caches its norm from the first slice a process
reconstructs, so the first slice after a resume differs by rounding (~3e-4 HU; the DICOM series,
in integer HU, is identical). The killed-worker test therefore compares with a serial run resumed
after the same slices.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pipelines.batch_studies import find_studies
from pipelines.cli import main
from recon.errors import InputError

pytest.importorskip("astra")
distributed = pytest.importorskip("distributed")

SIM_OPTIONS = ["--modality", "ct", "--views", "16", "--size", "32"]
N_KILL = 8  # slices per study of the killed-worker test


# ------------------------------------------------------------------------------------ fixtures
def _phantom(n: int, size: int, shift: int) -> np.ndarray:
    """``n`` Shepp-Logan slices in HU, rolled by ``shift`` pixels so that studies differ."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    base = resize(shepp_logan_phantom(), (size, size), order=1, anti_aliasing=True)
    out = [np.where(np.roll(base, shift + k, axis=1) > 0.05, 40.0 + 800.0 * (np.roll(base, shift + k, axis=1) - 0.2),
                    -1000.0) for k in range(n)]
    return np.stack(out).astype(np.float32)


def _write_dicom_studies(root: Path, names: list[str], n_slices: int = 3) -> Path:
    from recon.io.dicom_write import write_series

    for k, name in enumerate(names):
        write_series(_phantom(n_slices, 64, 3 * k), root / name, modality="CT", pixel_spacing_mm=(2.0, 2.0),
                     slice_thickness_mm=2.0)
    return root


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes, one task at a time each, as ``recon batch --workers 2`` starts them."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        yield c


@pytest.fixture(scope="module")
def dicoms(tmp_path_factory) -> Path:
    return _write_dicom_studies(tmp_path_factory.mktemp("dicoms"), ["s0", "s1", "s2"])


@pytest.fixture(scope="module")
def sims(tmp_path_factory, dicoms, cluster) -> Path:
    """``recon batch simulate`` of the three DICOM studies."""
    out = tmp_path_factory.mktemp("batch") / "sims"
    rc = main(["batch", "simulate", str(dicoms), "--out", str(out), *SIM_OPTIONS, "--scheduler",
               cluster.scheduler_address, "--no-progress"])
    assert rc == 0
    return out


def _image_checksums(out: Path) -> dict[str, str]:
    """sha256 of every image array a reconstruction wrote: DICOM pixel data and the slice files' arrays.

    Arrays, not file bytes: DICOM files carry new UIDs and times and zip members a date on every run.
    """
    import pydicom

    sums = {}
    for f in sorted((out / "dicom").glob("*.dcm")):
        sums[f"dicom/{f.name}"] = hashlib.sha256(pydicom.dcmread(f).PixelData).hexdigest()
    for f in sorted((out / ".slices").glob("*.npz")):
        with np.load(f) as z:
            for key in ("mean", "std", "start"):
                sums[f".slices/{f.name}:{key}"] = hashlib.sha256(z[key].tobytes()).hexdigest()
    return sums


def _report(out: Path) -> dict:
    return json.loads((out / "batch_report.json").read_text())


# ------------------------------------------------------------------------------------ batch = serial
def test_batch_simulate_writes_what_the_single_command_writes(sims: Path, dicoms: Path, tmp_path: Path):
    report = _report(sims)
    assert [e["study"] for e in report["studies"]] == ["s0", "s1", "s2"]
    assert all(e["status"] == "ok" and e["seconds"] > 0 for e in report["studies"])
    assert len({e["worker"] for e in report["studies"]}) >= 1
    for name in ("s0", "s1", "s2"):
        serial = tmp_path / name
        assert main(["simulate", str(dicoms / name), "--out", str(serial), *SIM_OPTIONS]) == 0
        for f in ("sinogram.npy", "ground_truth.npy"):
            assert (sims / name / f).read_bytes() == (serial / f).read_bytes(), f"{name}/{f}"
        # the sidecar names its DICOM series relative to itself, so compare where it points
        batch_meta, serial_meta = (json.loads((d / "geometry.json").read_text()) for d in (sims / name, serial))
        for meta, d in ((batch_meta, sims / name), (serial_meta, serial)):
            meta["reference"] = str((d / meta["reference"]).resolve())
        assert batch_meta == serial_meta and batch_meta["reference"] == str((dicoms / name).resolve())
        assert sorted(p.name for p in (sims / name).iterdir()) == sorted(p.name for p in serial.iterdir())


def test_batch_reconstruct_matches_serial_and_a_rerun_skips_finished_studies(sims, cluster, tmp_path, capsys):
    out = tmp_path / "rec"
    cmd = ["batch", "reconstruct", str(sims), "--out", str(out), "--method", "tv", "--scheduler",
           cluster.scheduler_address, "--no-progress"]
    assert main(cmd) == 0
    assert "3 of 3 studies ok" in capsys.readouterr().out
    for name in ("s0", "s1", "s2"):
        serial = tmp_path / "serial" / name
        assert main(["reconstruct", str(sims / name), "--out", str(serial), "--method", "tv", "--no-progress"]) == 0
        batch_sums, serial_sums = _image_checksums(out / name), _image_checksums(serial)
        assert len(batch_sums) == 3 + 3 * 3 and batch_sums == serial_sums
        assert json.loads((out / name / "report.json").read_text())["settings"]["method"] == "tv"
    # a rerun finds every study complete and starts nothing
    assert main(cmd) == 0
    assert "(3 already complete)" in capsys.readouterr().out
    assert all(e["skipped"] and e["status"] == "ok" for e in _report(out)["studies"])
    # --overwrite redoes every study, from scratch, to the same images
    stamp = (out / "s1" / "report.json").stat().st_mtime_ns
    assert main([*cmd, "--overwrite"]) == 0
    assert not any(e.get("skipped") for e in _report(out)["studies"])
    assert (out / "s1" / "report.json").stat().st_mtime_ns != stamp
    assert _image_checksums(out / "s1") == _image_checksums(tmp_path / "serial" / "s1")


def test_a_failing_study_does_not_stop_the_batch(sims, cluster, tmp_path, capsys):
    studies = tmp_path / "studies"
    for name in ("s0", "s1"):
        shutil.copytree(sims / name, studies / name)
    shutil.copytree(sims / "s2", studies / "broken")
    (studies / "broken" / "geometry.json").write_text("{not json")
    out = tmp_path / "rec"
    rc = main(["batch", "reconstruct", str(studies), "--out", str(out), "--method", "fbp", "--scheduler",
               cluster.scheduler_address, "--no-progress"])
    assert rc != 0
    err = capsys.readouterr().err
    assert "1 of 3 studies failed" in err and "broken: " in err and "geometry.json" in err
    report = _report(out)
    by_name = {e["study"]: e for e in report["studies"]}
    assert by_name["broken"]["status"] == "failed" and "geometry.json" in by_name["broken"]["error"]
    assert report["failed"] == ["broken"] and report["n_ok"] == 2
    for name in ("s0", "s1"):
        assert by_name[name]["status"] == "ok" and (out / name / "report.json").is_file()


def test_manifest_on_a_local_cluster_of_its_own(sims, tmp_path, capsys):
    manifest = tmp_path / "studies.csv"
    rel = os.path.relpath(sims, tmp_path)
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Study_Path", "name", "site"])
        w.writerow([f"{rel}/s0", "first", "A"])
        w.writerow([f"{rel}/s2", "", "B"])
    out = tmp_path / "rec"
    rc = main(["batch", "reconstruct", str(manifest), "--out", str(out), "--method", "fbp", "--workers", "1",
               "--no-progress"])
    assert rc == 0
    report = _report(out)
    assert [e["study"] for e in report["studies"]] == ["first", "s2"]
    assert report["cluster"]["workers"] == 1 and report["cluster"]["threads_per_worker"] >= 1
    assert (out / "first" / "report.json").is_file() and (out / "s2" / "dicom").is_dir()
    assert "dashboard:" in capsys.readouterr().err


@pytest.mark.slow
def test_a_worker_killed_mid_study_is_retried_and_no_slice_is_lost_or_rewritten(tmp_path, cluster):
    """SIGKILL the worker that is writing a study's slices: Dask reruns the task elsewhere and the
    rerun reconstructs only the missing slices (the finished ones keep their inode and time)."""
    dicoms = _write_dicom_studies(tmp_path / "dicoms", ["k0", "k1"], n_slices=N_KILL)
    sims = tmp_path / "sims"
    assert main(["batch", "simulate", str(dicoms), "--out", str(sims), *SIM_OPTIONS, "--scheduler",
                 cluster.scheduler_address, "--no-progress"]) == 0
    out = tmp_path / "rec"
    # one slice per call and many iterations: a study takes seconds, time to catch it midway
    options = ["--method", "tv", "--set", "n_iter=400", "--batch", "1", "--no-volume"]
    rc: list[int] = []
    runner = threading.Thread(target=lambda: rc.append(main(
        ["batch", "reconstruct", str(sims), "--out", str(out), *options, "--scheduler", cluster.scheduler_address,
         "--no-progress"])))
    runner.start()
    with distributed.Client(cluster.scheduler_address) as client:
        victim = None
        deadline = time.monotonic() + 120
        while victim is None and time.monotonic() < deadline:
            for name in ("k0", "k1"):
                if len(list((out / name / ".slices").glob("slice_*.npz"))) >= 2:
                    workers = [w for w, keys in client.processing().items() if any(f"-{name}-" in k for k in keys)]
                    if workers:
                        victim = (name, workers[0])
                        break
            time.sleep(0.02)
        assert victim is not None, "no study was caught mid-run"
        pid = client.run(os.getpid, workers=[victim[1]])[victim[1]]
        os.kill(pid, signal.SIGKILL)
    written = [*out.glob("*/.slices/slice_*.npz"), *out.glob("*/report.json")]  # a finished study is not redone
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in written}
    assert 2 <= len(list((out / victim[0] / ".slices").glob("slice_*.npz"))) < N_KILL
    runner.join(timeout=300)
    assert rc == [0]
    report = _report(out)
    assert all(e["status"] == "ok" for e in report["studies"])
    assert {e["study"]: e for e in report["studies"]}[victim[0]]["worker"] != victim[1]
    for name in ("k0", "k1"):
        slices = sorted((out / name / ".slices").iterdir())
        assert [p.name for p in slices] == [f"slice_{i:04d}.npz" for i in range(N_KILL)]  # no partial left
        assert len(list((out / name / "dicom").glob("*.dcm"))) == N_KILL
    for p, stamp in before.items():
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == stamp, f"{p} was written again"
    # the same as a serial run interrupted after the same slices and run again (see the module's
    # note), and the DICOM series the same as an uninterrupted serial run's
    serial = tmp_path / "serial"
    argv = ["reconstruct", str(sims / victim[0]), "--out", str(serial), *options, "--no-progress"]
    assert main(argv) == 0
    uninterrupted = _image_checksums(serial)
    kept = {p.name for p in before if p.parent.name == ".slices" and p.parent.parent.name == victim[0]}
    (serial / "report.json").unlink()
    for p in (serial / ".slices").iterdir():
        if p.name not in kept:
            p.unlink()
    assert main(argv) == 0
    assert _image_checksums(out / victim[0]) == _image_checksums(serial)
    assert {k: v for k, v in _image_checksums(out / victim[0]).items() if k.startswith("dicom/")} == \
        {k: v for k, v in uninterrupted.items() if k.startswith("dicom/")}


# ------------------------------------------------------------------------------------ recon benchmark on the cluster
def test_benchmark_cells_on_the_cluster_equal_the_in_process_run(dicoms, cluster, tmp_path, capsys):
    from pipelines.benchmark import run_benchmark

    grid = dict(modality="ct", methods=["fbp", "tv"], views=[8, 16], doses=[1.0], size=32, progress=False,
                device="cpu", max_slices=2)
    local = tmp_path / "local"
    run_benchmark([dicoms / "s0"], local, **grid)
    spread = tmp_path / "cluster"
    rc = main(["benchmark", str(dicoms / "s0"), "--out", str(spread), "--modality", "ct", "--methods", "fbp,tv",
               "--views", "8,16", "--dose", "1", "--size", "32", "--max-slices", "2", "--device", "cpu",
               "--scheduler", cluster.scheduler_address, "--no-progress"])
    assert rc == 0 and "4 cells" in capsys.readouterr().out
    cells = sorted(p.name for p in (local / "cells").iterdir())
    assert cells == sorted(p.name for p in (spread / "cells").iterdir()) and len(cells) == 2 * 2 * 2 + 1
    for name in cells:
        if name.endswith(".npz"):
            with np.load(local / "cells" / name) as a, np.load(spread / "cells" / name) as b:
                assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files), name
    drop = ("seconds", "cell_seconds", "simulation_seconds")
    rows = [[{k: v for k, v in r.items() if not any(d in k for d in drop)}
             for r in json.loads((d / "results.json").read_text())["rows"]] for d in (local, spread)]
    assert rows[0] == rows[1]


# ------------------------------------------------------------------------------------ bad input
def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("recon: error: ") and len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_no_studies_is_one_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["batch", "reconstruct", str(empty), "--out", str(tmp_path / "o"), "--workers", "1"]) == 2
    err = _one_error_line(capsys)
    assert str(empty) in err and "no study folders" in err
    assert main(["batch", "reconstruct", str(tmp_path / "nope*" / "x"), "--out", str(tmp_path / "o"),
                 "--workers", "1"]) == 2
    assert "no study folders match" in _one_error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_unknown_command_is_one_line(tmp_path, capsys):
    assert main(["batch", "train", str(tmp_path), "--out", str(tmp_path / "o"), "--workers", "1"]) == 2
    err = _one_error_line(capsys)
    assert "train" in err and "simulate, reconstruct" in err


def test_manifest_without_a_path_column_is_one_line(tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text("patient,site\np1,A\n")
    assert main(["batch", "reconstruct", str(manifest), "--out", str(tmp_path / "o"), "--method", "fbp",
                 "--workers", "1"]) == 2
    err = _one_error_line(capsys)
    assert str(manifest) in err and "path column" in err and "patient, site" in err


def test_cluster_choice_and_out_are_required(tmp_path, capsys):
    assert main(["batch", "reconstruct", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "--workers" in _one_error_line(capsys)
    assert main(["batch", "reconstruct", str(tmp_path), "--workers", "1"]) == 2
    assert "--out" in _one_error_line(capsys)


def test_options_are_the_single_commands_own(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["batch", "reconstruct", str(tmp_path), "--help"])
    assert exc.value.code == 0
    assert "--method" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:  # argparse refuses it before any study is read
        main(["batch", "reconstruct", str(tmp_path), "--out", str(tmp_path / "o"), "--no-such-option",
              "--workers", "1"])
    assert exc.value.code == 2 and "--no-such-option" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_find_studies_skips_outputs_and_refuses_duplicate_names(tmp_path):
    root = tmp_path / "studies"
    for d in ("b", "a", ".hidden", "c.partial", "out"):
        (root / d).mkdir(parents=True)
    (root / "notes.txt").write_text("x")
    assert [s.name for s in find_studies(root, exclude=root / "out")] == ["a", "b"]
    (tmp_path / "other" / "a").mkdir(parents=True)
    with pytest.raises(InputError, match="two studies are named 'a'"):
        find_studies(str(tmp_path / "*" / "a"))
    manifest = tmp_path / "m.csv"
    manifest.write_text("path\n\n")
    with pytest.raises(InputError, match="no rows"):
        find_studies(manifest)
