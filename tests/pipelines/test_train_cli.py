import argparse
import json

import numpy as np
import pytest
from PIL import Image

from pipelines import sample as sample_cmd
from pipelines import train as train_cmd
from recon.errors import InputError
from tests.priors.helpers import synthetic_ct

pytestmark = pytest.mark.usefixtures("one_thread")


def _parse(module, argv):
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers())
    return parser.parse_args(argv)


@pytest.fixture
def npy_dir(tmp_path):
    d = tmp_path / "data"
    for i, img in enumerate(synthetic_ct(6, 40)):
        (d / f"patient{i}").mkdir(parents=True)
        np.save(d / f"patient{i}" / "slice.npy", img)
    (d / "SOURCE.txt").write_text("source: synthetic phantoms\nlicence: CC0-1.0\n")
    return d


def _train_argv(data, out, *extra):
    return ["train", str(data), "--modality", "ct", "--size", "32", "--patch", "16", "--steps", "4",
            "--batch", "4", "--out", str(out), "--preset", "tiny", "--device", "cpu", "--checkpoint-every", "2",
            "--samples", "2", "--sample-steps", "2", "--no-progress", "--val-fraction", "0.34", *extra]


def test_train_then_sample_end_to_end(npy_dir, tmp_path):
    out = tmp_path / "run"
    args = _parse(train_cmd, _train_argv(npy_dir, out))
    assert args.func(args) == 0
    for name in ("checkpoint/weights.safetensors", "checkpoint/config.json", "samples/step_0000004.png",
                 "metrics.jsonl", "val_loss.png", "split.json"):
        assert (out / name).is_file(), name
    cfg = json.loads((out / "checkpoint/config.json").read_text())
    assert cfg["data"]["sources"][0]["licence"] == "CC0-1.0"
    assert cfg["data"]["n_train_patients"] + cfg["data"]["n_val_patients"] == 6
    split = json.loads((out / "split.json").read_text())
    assert not set(split["train_patients"]) & set(split["val_patients"])

    # Refuses to overwrite; resumes to a larger step count; overwrites on request.
    with pytest.raises(InputError, match="--resume"):
        args.func(_parse(train_cmd, _train_argv(npy_dir, out)))
    a = _parse(train_cmd, _train_argv(npy_dir, out, "--resume"))
    a.steps = 6
    assert a.func(a) == 0
    assert json.loads((out / "checkpoint/config.json").read_text())["training"]["steps"] == 6
    a = _parse(train_cmd, _train_argv(npy_dir, out, "--overwrite"))
    assert a.func(a) == 0
    assert json.loads((out / "checkpoint/config.json").read_text())["training"]["steps"] == 4

    grid = tmp_path / "grid.png"
    s = _parse(sample_cmd, ["sample", "--prior", str(out), "-n", "3", "--out", str(grid), "--steps", "2", "--device", "cpu"])
    assert s.func(s) == 0
    assert Image.open(grid).size[0] > 32
    with pytest.raises(InputError, match="--overwrite"):
        s.func(s)


def test_train_rejects_bad_sizes_and_resume_mismatch(npy_dir, tmp_path):
    with pytest.raises(InputError, match="multiple of"):
        a = _parse(train_cmd, _train_argv(npy_dir, tmp_path / "r", "--preset", "small"))
        a.size, a.patch = 36, None
        a.func(a)
    out = tmp_path / "r2"
    a = _parse(train_cmd, _train_argv(npy_dir, out))
    a.func(a)
    b = _parse(train_cmd, _train_argv(npy_dir, out, "--resume"))
    b.patch = 8
    with pytest.raises(InputError, match="different patch_size"):
        b.func(b)
    c = _parse(train_cmd, _train_argv(npy_dir, out, "--resume"))
    c.val_fraction = 0.5
    with pytest.raises(InputError, match="different split"):
        c.func(c)


def test_missing_data_path(tmp_path):
    a = _parse(train_cmd, _train_argv(tmp_path / "absent", tmp_path / "r"))
    with pytest.raises(InputError, match="no such file"):
        a.func(a)


@pytest.mark.slow
def test_torchrun_ddp_two_processes(npy_dir, tmp_path):
    """DistributedDataParallel over gloo on CPU: two processes split the batch, rank 0 writes."""
    import os
    import shutil
    import subprocess
    import sys

    venv_torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    if shutil.which("torchrun") is None and not (os.path.dirname(sys.executable) and os.path.exists(venv_torchrun)):
        pytest.skip("torchrun not available")
    out = tmp_path / "ddp"
    argv = _train_argv(npy_dir, out, "--threads", "1")[1:]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "pipelines.train", *argv]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(cmd, cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]), env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    cfg = json.loads((out / "checkpoint/config.json").read_text())
    assert cfg["training"]["world_size"] == 2 and cfg["training"]["steps"] == 4


def test_train_init_from_a_previous_run(npy_dir, tmp_path):
    first = tmp_path / "first"
    a = _parse(train_cmd, _train_argv(npy_dir, first))
    assert a.func(a) == 0
    # fine-tune: a new run directory starts from the first run's weights; the architecture is the
    # source's even though another preset is named
    second = tmp_path / "second"
    b = _parse(train_cmd, _train_argv(npy_dir, second, "--init-from", str(first), "--preset", "small"))
    assert b.func(b) == 0
    cfg = json.loads((second / "checkpoint/config.json").read_text())
    assert cfg["training"]["initialised_from"] == str(first)
    assert cfg["architecture"]["model_channels"] == 8  # the tiny source, not "small"


def test_val_data_patients_never_reach_training(npy_dir, tmp_path):
    # A validation slice given on its own takes every other slice of its patient out of training.
    np.save(npy_dir / "patient0" / "slice2.npy", synthetic_ct(1, 40)[0])
    out = tmp_path / "run"
    argv = [a for a in _train_argv(npy_dir, out) if a not in ("--val-fraction", "0.34")]
    args = _parse(train_cmd, [*argv, "--val-data", str(npy_dir / "patient0" / "slice.npy")])
    assert args.func(args) == 0
    cfg = json.loads((out / "checkpoint/config.json").read_text())
    assert cfg["data"]["n_val_slices"] == 1
    assert cfg["data"]["n_train_patients"] == 5 and cfg["data"]["n_train_slices"] == 5
    split = json.loads((out / "split.json").read_text())
    assert split["val_patients"] == ["patient0"]
    assert "patient0" not in split["train_patients"]


def test_patch_mix_option(npy_dir, tmp_path):
    out = tmp_path / "mix"
    a = _parse(train_cmd, _train_argv(npy_dir, out, "--patch-mix", "32:0.5", "--samples", "0"))
    assert a.patch_mix == ((32, 0.5),)
    assert a.func(a) == 0
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["patch_mix"] == [[32, 0.5]]
    with pytest.raises(InputError, match="at most 32"):
        b = _parse(train_cmd, _train_argv(npy_dir, tmp_path / "m2", "--patch-mix", "48:0.5"))
        b.func(b)
    with pytest.raises(SystemExit):
        _parse(train_cmd, _train_argv(npy_dir, tmp_path / "m3", "--patch-mix", "big"))
