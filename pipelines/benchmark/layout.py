"""The report directory of a benchmark: what lives where, and how a run claims, resumes or clears it.

::

    REPORT_DIR/
      benchmark.json        the settings the directory belongs to (a rerun must match them)
      cells/<setting>__<method>.json   per-slice metrics, seconds, NFE of one setting x method
      cells/<setting>__<method>.npz    its images (mean; std with --samples > 1), float32
      cells/reference.npz   the reference images on the reconstruction grid
      results.csv / results.json       one row per setting x method
      plots/psnr_vs_dose.{png,svg}, plots/ssim_vs_dose.{png,svg}
      panels/<setting>.png  reference, each method, error maps, posterior std
      report.html           everything above in one self-contained page

A cell is complete when its JSON exists (it is written after the images). A directory that
belongs to other settings is only reused with ``overwrite``, which removes the benchmark's own
outputs first and nothing else.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from pipelines.benchmark.grid import Setting
from recon.errors import InputError
from recon.io.atomic import atomic_write_json, ensure_output_dir, remove_stale_partials

__all__ = [
    "STATE_FILE",
    "CELLS_DIR",
    "PLOTS_DIR",
    "PANELS_DIR",
    "REFERENCE_FILE",
    "CSV_FILE",
    "JSON_FILE",
    "HTML_FILE",
    "OWN_OUTPUTS",
    "prepare_output",
    "cell_paths",
    "cell_done",
]

STATE_FILE = "benchmark.json"
CELLS_DIR = "cells"
PLOTS_DIR = "plots"
PANELS_DIR = "panels"
REFERENCE_FILE = "reference.npz"
CSV_FILE = "results.csv"
JSON_FILE = "results.json"
HTML_FILE = "report.html"
# What --overwrite removes: only the benchmark's own outputs, never other files in the directory.
OWN_OUTPUTS = (STATE_FILE, CELLS_DIR, PLOTS_DIR, PANELS_DIR, CSV_FILE, JSON_FILE, HTML_FILE)


def prepare_output(out: Path, config: dict[str, Any], overwrite: bool) -> None:
    """Create, resume or (with ``overwrite``) clear the report directory; record the settings."""
    state_path = out / STATE_FILE
    if state_path.is_file() and not overwrite:
        try:
            state = json.loads(state_path.read_text())
        except (OSError, ValueError) as e:
            raise InputError(state_path, f"unreadable benchmark state ({e}); pass --overwrite to start again") from None
        old = state.get("config", {})
        if old != config:
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            raise InputError(out, "holds a benchmark with other settings (differs in: " + ", ".join(diff)
                             + "); pass --overwrite to replace it or choose another --out")
        ensure_output_dir(out, resume=True)
    else:
        if overwrite and out.is_dir():
            for name in OWN_OUTPUTS:
                p = out / name
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
        ensure_output_dir(out, overwrite=overwrite)
        atomic_write_json(state_path, {"config": config, "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    (out / CELLS_DIR).mkdir(exist_ok=True)
    remove_stale_partials(out / CELLS_DIR)


def cell_paths(out: Path, setting: Setting, method: str) -> tuple[Path, Path]:
    """``(json, npz)`` of the cell ``setting`` x ``method`` in the report directory ``out``."""
    # not Path.with_suffix: keys hold dots ("p0.5") that it would take for a suffix
    stem = f"{setting.key}__{method}"
    return out / CELLS_DIR / f"{stem}.json", out / CELLS_DIR / f"{stem}.npz"


def cell_done(out: Path, setting: Setting, method: str) -> bool:
    """Whether the cell ``setting`` x ``method`` is complete (its images and its JSON exist)."""
    js, npz = cell_paths(out, setting, method)
    return js.is_file() and npz.is_file()
