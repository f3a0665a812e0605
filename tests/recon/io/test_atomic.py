"""Atomic writes and output-directory checks."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from recon.errors import InputError
from recon.io import atomic
from recon.io.atomic import (
    atomic_path,
    atomic_save_npy,
    atomic_save_npz,
    atomic_save_png,
    atomic_write_bytes,
    atomic_write_json,
    ensure_output_dir,
    is_partial,
    remove_stale_partials,
)


def test_round_trips(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"abc")
    assert (tmp_path / "a.bin").read_bytes() == b"abc"
    atomic_write_json(tmp_path / "a.json", {"x": np.float32(1.5), "y": np.arange(3)})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1.5, "y": [0, 1, 2]}
    atomic_save_npy(tmp_path / "a.npy", np.eye(3))
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.eye(3))
    atomic_save_npz(tmp_path / "a.npz", k=np.ones(2))
    assert np.array_equal(np.load(tmp_path / "a.npz")["k"], np.ones(2))
    atomic_save_png(tmp_path / "a.png", np.linspace(0, 1, 64).reshape(8, 8))
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "a.json", "a.npy", "a.npz", "a.png"]


def test_exception_mid_write_leaves_no_partial_and_keeps_old_content(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"half of the new")
                raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_interrupted_new_file_does_not_appear(tmp_path, monkeypatch):
    # Failure inside the serialiser (here: the final rename) must not leave either name behind.
    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(OSError):
        atomic_save_npy(tmp_path / "x.npy", np.zeros(10))
    assert list(tmp_path.iterdir()) == []


def test_nan_json_refused_without_partial(tmp_path):
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "r.json", {"x": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_remove_stale_partials(tmp_path):
    stale = tmp_path / ".slice.npy.partial-123-abcd"
    stale.write_bytes(b"x")
    keep = tmp_path / "slice.npy"
    keep.write_bytes(b"y")
    assert is_partial(stale) and not is_partial(keep)
    assert remove_stale_partials(tmp_path) == [stale]
    assert [p.name for p in tmp_path.iterdir()] == ["slice.npy"]


def test_ensure_output_dir(tmp_path):
    out = ensure_output_dir(tmp_path / "new" / "deeper")
    assert out.is_dir()
    (out / "report.json").write_text("{}")
    with pytest.raises(InputError) as e:
        ensure_output_dir(out)
    assert str(out) in str(e.value) and "--overwrite" in str(e.value)
    assert ensure_output_dir(out, overwrite=True) == out
    assert ensure_output_dir(out, resume=True) == out


def test_ensure_output_dir_refuses_file_and_unwritable(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        ensure_output_dir(f)
    with pytest.raises(InputError, match="cannot create"):
        ensure_output_dir(f / "sub")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write to read-only-mode directories")
def test_ensure_output_dir_unwritable_permissions(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(InputError, match="not writable"):
            ensure_output_dir(d)
    finally:
        d.chmod(0o700)


def test_check_writable_reports_failure(tmp_path, monkeypatch):
    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", denied)
    with pytest.raises(InputError) as e:
        ensure_output_dir(tmp_path / "out")
    assert "not writable" in str(e.value) and "out" in str(e.value)
