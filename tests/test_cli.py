"""The `recon` command itself: help, version, subcommands, error style."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipelines.cli import SUBCOMMAND_MODULES, main
from recon.errors import InputError


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    names = ("reconstruct", "simulate", "batch", "benchmark", "validate", "score", "train", "sample", "pacs", "demo")
    for name in names:
        assert name in out
    assert len(SUBCOMMAND_MODULES) == len(names)


def test_console_entry_point_runs_as_module():
    proc = subprocess.run([sys.executable, "-m", "pipelines", "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("recon ")


def test_missing_input_is_one_line_without_traceback(tmp_path, capsys):
    rc = main(["reconstruct", str(tmp_path / "absent"), "--out", str(tmp_path / "out"), "--method", "fbp"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("recon: error: ") and "absent" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(InputError):
        main(["--debug", "reconstruct", str(tmp_path / "absent"), "--out", str(tmp_path / "out"), "--method", "fbp"])


@pytest.mark.parametrize("preset", [None, "ACTIVE"])
def test_openmp_threads_wait_passively_unless_told_otherwise(preset):
    # read by torch's OpenMP runtime when it loads, so it must be set before torch is imported
    import os

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset is not None:
        env["OMP_WAIT_POLICY"] = preset
    code = "import sys, os, pipelines; assert 'torch' not in sys.modules; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (preset or "PASSIVE")
