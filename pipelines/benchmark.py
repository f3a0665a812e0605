"""``recon benchmark``: how far can dose (CT) or scan time (MR) be cut before images degrade?

For every *setting* of a grid (CT: views x photon fraction; MR: acceleration x mask kind) the
selected slices are simulated once (:mod:`pipelines.simulate`) and reconstructed by every method
(classical baselines and posterior samplers, through :func:`recon.api.reconstruct`); quality is
measured against the full-dose reference with :mod:`recon.metrics` (CT: PSNR/SSIM/RMSE in HU on
[-1000, 1000] HU; MR: magnitude normalised to the reference's 99.9th percentile).

Dose. CT dose is relative to the full-dose reference acquisition: ``views / FULL_VIEWS[geometry] x
photon fraction`` (:attr:`pipelines.simulate.CTSimulation.relative_dose`; the reference has 720
parallel or 1440 fan views at ``--i0`` photons). For MR the dose axis is the scan-time fraction
``1 / acceleration`` (the nominal one; the achieved sampling fraction of each mask is recorded
beside it). The summary table gives, per method and quality level, the lowest dose at which the
method's mean over the slices reaches the level.

Inputs. CT: DICOM series directories. MR: DICOM series directories or NIfTI volumes (a ``.nii`` /
``.nii.gz`` file, or a directory whose image volumes are all used). NIfTI volumes are read by the
training-data loader: only slices with at least 1 % brain mask are kept (so slice indices count
those), and z-scored intensities (BraTS ``*_subtrMeanDivStd``) are shifted so the darkest brain
voxel is 0 and the background 0, a non-negative magnitude as the MR percentile normalisation
expects. MR k-space is simulated noise-free.

Output directory::

    REPORT_DIR/
      benchmark.json        the settings the directory belongs to (a rerun must match them)
      cells/<setting>__<method>.json   per-slice metrics, seconds, NFE of one setting x method
      cells/<setting>__<method>.npz    its images (mean; std with --samples > 1), float32
      cells/reference.npz   the reference images on the reconstruction grid
      results.csv / results.json       one row per setting x method
      plots/psnr_vs_dose.{png,svg}, plots/ssim_vs_dose.{png,svg}
      panels/<setting>.png  reference, each method, error maps, posterior std
      report.html           everything above in one self-contained page

Cells are written atomically (images first, the JSON last as the completion mark); a killed run
reruns only the missing cells. A directory that belongs to other settings is only reused with
``--overwrite``, which removes the benchmark's own outputs first.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from pipelines.sampler_options import add_set_argument, parse_options
from priors.precision import add_precision_argument
from recon.errors import InputError
from recon.io.atomic import (
    atomic_save_npz,
    atomic_write_json,
    atomic_write_text,
    ensure_output_dir,
    remove_stale_partials,
)

__all__ = [
    "CT_METHODS",
    "MR_METHODS",
    "SAMPLER_METHODS",
    "Setting",
    "Volume",
    "BenchmarkConfig",
    "load_volumes",
    "parse_slice_spec",
    "select_slices",
    "settings_grid",
    "run_benchmark",
    "summarize",
    "register",
    "run",
]

CT_METHODS = ("fbp", "sirt", "cgls", "tv")
MR_METHODS = ("zero_filled", "cg_sense", "cs_tv")
SAMPLER_METHODS = ("dds", "dps", "song22")

DEFAULT_CT_METHODS = "fbp,sirt,tv,song22,dps,dds"
DEFAULT_MR_METHODS = "zero_filled,cg_sense,cs_tv,dds"
DEFAULT_PSNR_LEVELS = (30.0, 35.0)
DEFAULT_SSIM_LEVELS = (0.8, 0.9)

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

NIFTI_SUFFIXES = (".nii", ".nii.gz")


# ------------------------------------------------------------------------------------ inputs
@dataclass
class Volume:
    """The selected slices of one input volume.

    It offers the attributes :func:`pipelines.simulate.simulate_ct` / ``simulate_mr`` read from a
    DICOM :class:`~recon.io.dicom_read.Series` (``pixels``, ``pixel_spacing_mm``, ``n_slices``), so
    a NIfTI volume is simulated exactly like a DICOM series.

    Attributes:
        name: a short label (the file or directory name; no patient identifiers).
        path: where it was read from.
        kind: ``"dicom"`` or ``"nifti"``.
        pixels: float32 ``[n, H, W]`` selected slices (HU for CT, magnitude for MR).
        pixel_spacing_mm: ``(row, column)`` spacing.
        slice_indices: index of each selected slice in the volume's slice list.
        n_available: slices the volume offered before selection.
    """

    name: str
    path: Path
    kind: str
    pixels: np.ndarray
    pixel_spacing_mm: tuple[float, float]
    slice_indices: list[int]
    n_available: int

    @property
    def n_slices(self) -> int:
        return int(self.pixels.shape[0])


def parse_slice_spec(spec: str, n: int, where: Path | None = None) -> list[int]:
    """Slice indices of a volume with ``n`` slices selected by ``spec``.

    ``spec`` is ``"all"``; a Python-style range ``"start:stop[:step]"`` (stop exclusive, parts may
    be empty: ``"::4"`` is every 4th slice, ``"40:80"`` slices 40-79); or a comma-separated list
    of indices (``"10,20,30"``). Negative indices count from the end. Indices outside the volume
    are an error for lists and clipped for ranges.
    """
    text = spec.strip().lower()
    if text in ("", "all"):
        return list(range(n))
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) > 3:
                raise ValueError
            vals = [int(p) if p.strip() else None for p in parts]
            if len(vals) == 3 and vals[2] == 0:
                raise ValueError
            return list(range(n))[slice(*vals)]
        idx = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise InputError(where, f"--slices {spec!r}: expected 'all', 'start:stop[:step]' or a list like '10,20,30'") from None
    out = []
    for i in idx:
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise InputError(where, f"--slices {spec!r}: slice {i} is outside the volume's {n} slices")
        out.append(j)
    return sorted(set(out))


def select_slices(indices: Sequence[int], max_slices: int) -> list[int]:
    """At most ``max_slices`` of ``indices``, evenly spread over them (all when ``max_slices <= 0``)."""
    idx = list(indices)
    if max_slices <= 0 or len(idx) <= max_slices:
        return idx
    picks = np.linspace(0, len(idx) - 1, max_slices).round().astype(int)
    return [idx[k] for k in sorted(set(picks.tolist()))]


def _is_nifti(p: Path) -> bool:
    return p.is_file() and p.name.lower().endswith(NIFTI_SUFFIXES)


def _nifti_files(path: Path) -> list[Path]:
    from pipelines.training_data import is_mask_name

    return sorted(p for p in path.iterdir() if _is_nifti(p) and not is_mask_name(p.name))


def _read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """Non-empty axial slices (shifted to non-negative magnitude) and in-plane spacing of a NIfTI file."""
    import nibabel as nib

    from pipelines.training_data import nifti_slices

    slices = nifti_slices(path)
    if not slices:
        raise InputError(path, "NIfTI volume has no non-empty slices")
    zooms = nib.load(str(path)).header.get_zooms()
    # the loader transposes (x, y) -> rows = y, columns = x
    spacing = (float(zooms[1]), float(zooms[0])) if len(zooms) >= 2 else (1.0, 1.0)
    return np.stack(slices).astype(np.float32), spacing


def load_volumes(inputs: Sequence[str | Path], modality: str, slices: str = "all", max_slices: int = 8) -> list[Volume]:
    """Read every input and keep the selected slices.

    Args:
        inputs: DICOM series directories; for MR also NIfTI files or directories of NIfTI volumes.
        modality: ``"ct"`` or ``"mr"``; a DICOM series of another modality is an error.
        slices: slice selection per volume (:func:`parse_slice_spec`).
        max_slices: at most this many slices per volume, evenly spread over the selection
            (``0``: no limit).

    Raises:
        InputError: a missing path, unreadable data, wrong modality, a bad selection.
    """
    from recon.io.dicom_read import read_series

    vols: list[Volume] = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise InputError(path, "no such file or directory")
        nifti = [path] if _is_nifti(path) else (_nifti_files(path) if path.is_dir() else [])
        if nifti:
            if modality != "mr":
                raise InputError(path, "NIfTI input is supported for --modality mr only (CT needs DICOM in HU)")
            for f in nifti:
                pixels, spacing = _read_nifti(f)
                # the parent folder names the subject (BraTS: one folder per case), the stem the contrast
                name = f"{f.parent.name}/{f.name.split('.')[0]}"
                vols.append(_select(name, f, "nifti", pixels, spacing, slices, max_slices))
            continue
        if not path.is_dir():
            raise InputError(path, "expected a DICOM series directory" + (" or a NIfTI volume" if modality == "mr" else ""))
        series = read_series(path)
        if series.modality != modality.upper():
            raise InputError(path, f"series modality is {series.modality}, but --modality {modality} was given")
        pixels = np.asarray(series.pixels, dtype=np.float32)
        if modality == "mr":
            pixels = np.abs(pixels)
        vols.append(_select(path.name, path, "dicom", pixels, tuple(series.pixel_spacing_mm), slices, max_slices))
    if not vols:
        raise InputError(None, "no input volumes")
    return vols


def _select(name: str, path: Path, kind: str, pixels: np.ndarray, spacing: tuple[float, float], spec: str,
            max_slices: int) -> Volume:
    idx = select_slices(parse_slice_spec(spec, pixels.shape[0], path), max_slices)
    if not idx:
        raise InputError(path, f"--slices {spec!r} selects no slice of its {pixels.shape[0]}")
    return Volume(name=name, path=path, kind=kind, pixels=np.ascontiguousarray(pixels[idx]),
                  pixel_spacing_mm=(float(spacing[0]), float(spacing[1])), slice_indices=idx,
                  n_available=int(pixels.shape[0]))


# ------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class Setting:
    """One acquisition of the grid.

    CT: ``views`` and ``photons`` (fraction of the full-dose I0). MR: ``accel`` and ``mask``.
    ``relative_dose`` is the fraction of the full-dose reference (CT: view fraction x photon
    fraction; MR: 1 / acceleration).
    """

    modality: str
    relative_dose: float
    views: int | None = None
    photons: float | None = None
    accel: float | None = None
    mask: str | None = None

    @property
    def key(self) -> str:
        """File-name-safe identifier, e.g. ``v0032_p0.25`` or ``x8_poisson``."""
        if self.modality == "ct":
            return f"v{self.views:04d}_p{self.photons:g}"
        return f"x{self.accel:g}_{self.mask}"

    @property
    def label(self) -> str:
        """Human-readable description."""
        if self.modality == "ct":
            return f"{self.views} views x {_pct(self.photons)} photons"
        return f"{self.accel:g}x {self.mask}"

    @property
    def group(self) -> Any:
        """The secondary grid axis (CT: photon fraction; MR: mask kind): one curve per value in the plots."""
        return self.photons if self.modality == "ct" else self.mask

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if v is not None}
        d.update(key=self.key, label=self.label)
        return d


def _pct(f: float) -> str:
    p = 100.0 * f
    return f"{p:.3g}%"


def settings_grid(
    modality: str,
    *,
    views: Sequence[int] = (),
    doses: Sequence[float] = (),
    accels: Sequence[float] = (),
    masks: Sequence[str] = (),
    geometry: str = "parallel",
) -> list[Setting]:
    """All settings of the grid in run order (CT: views x photons; MR: acceleration x mask)."""
    from pipelines.simulate import FULL_VIEWS

    if modality == "ct":
        if geometry not in FULL_VIEWS:
            raise ValueError(f"--geometry is {geometry!r}, expected one of {tuple(FULL_VIEWS)}")
        return [Setting("ct", v / FULL_VIEWS[geometry] * d, views=int(v), photons=float(d))
                for v in views for d in doses]
    return [Setting("mr", 1.0 / float(a), accel=float(a), mask=str(m)) for a in accels for m in masks]


@dataclass
class BenchmarkConfig:
    """Everything that determines the cells of a benchmark; a resumed run must match it exactly."""

    modality: str
    inputs: list[str]
    slices: str
    max_slices: int
    selected: dict[str, list[int]]
    size: int
    seed: int
    methods: list[str]
    nfe: int
    samples: int
    prior: str | None
    views: list[int] = field(default_factory=list)
    doses: list[float] = field(default_factory=list)
    geometry: str = "parallel"
    i0: float = 0.0
    accels: list[float] = field(default_factory=list)
    masks: list[str] = field(default_factory=list)
    center_fraction: float = 0.08
    coils: int = 1
    precision: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_config(modality: str, methods: Sequence[str], views: Sequence[int], doses: Sequence[float],
                  accels: Sequence[float], masks: Sequence[str], nfe: int, samples: int, size: int) -> None:
    if modality not in ("ct", "mr"):
        raise ValueError(f"--modality is {modality!r}, expected 'ct' or 'mr'")
    allowed = (CT_METHODS if modality == "ct" else MR_METHODS) + SAMPLER_METHODS
    bad = [m for m in methods if m not in allowed]
    if bad:
        raise ValueError(f"--methods: unknown for {modality.upper()}: {', '.join(bad)} (choose from {', '.join(allowed)})")
    if not methods:
        raise ValueError("--methods is empty")
    if len(set(methods)) != len(methods):
        raise ValueError("--methods lists a method twice")
    if modality == "ct":
        if not views or not doses:
            raise ValueError("--views and --dose need at least one value each")
        if any(v < 1 for v in views):
            raise ValueError("--views must be positive integers")
        if any(not (0 < d <= 1e3 and math.isfinite(d)) for d in doses):
            raise ValueError("--dose values must be photon fractions > 0 (1 = full dose)")
    else:
        from operators.masks import MASK_KINDS

        if not accels or not masks:
            raise ValueError("--accel and --mask need at least one value each")
        if any(not (a >= 1 and math.isfinite(a)) for a in accels):
            raise ValueError("--accel values must be >= 1")
        bad_masks = [m for m in masks if m not in MASK_KINDS]
        if bad_masks:
            raise ValueError(f"--mask: unknown kind(s) {', '.join(bad_masks)} (choose from {', '.join(MASK_KINDS)})")
    if nfe < 1 or samples < 1:
        raise ValueError("--nfe and --samples must be positive integers")
    if size < 8:
        raise ValueError(f"--size is {size}, expected at least 8 pixels")


# ------------------------------------------------------------------------------------ output dir
def _prepare_output(out: Path, config: dict[str, Any], overwrite: bool) -> None:
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


def _cell_paths(out: Path, setting: Setting, method: str) -> tuple[Path, Path]:
    # not Path.with_suffix: keys hold dots ("p0.5") that it would take for a suffix
    stem = f"{setting.key}__{method}"
    return out / CELLS_DIR / f"{stem}.json", out / CELLS_DIR / f"{stem}.npz"


def _cell_done(out: Path, setting: Setting, method: str) -> bool:
    js, npz = _cell_paths(out, setting, method)
    return js.is_file() and npz.is_file()


# ------------------------------------------------------------------------------------ simulation
@dataclass
class _Simulated:
    """One setting simulated for every volume: per volume the operator, data and noise model."""

    ops: list[Any]
    ys: list[torch.Tensor]
    i0: list[float | None]  # CT photons per ray (the reconstruction's noise model); None for MR
    truth: np.ndarray  # [N, size, size] reference over all volumes (HU / magnitude)
    info: dict[str, Any]
    seconds: float


def _simulate(setting: Setting, volumes: Sequence[Volume], cfg: BenchmarkConfig) -> _Simulated:
    t0 = time.perf_counter()
    ops, ys, nvs, truths = [], [], [], []
    info: dict[str, Any] = {}
    if setting.modality == "ct":
        from operators.geometry import geometry_from_dict
        from operators.radon import radon_from_geometry
        from pipelines.simulate import CTSimulation, simulate_ct

        sim = CTSimulation(views=setting.views, dose=setting.photons, geometry=cfg.geometry, size=cfg.size,
                           i0_full=cfg.i0, seed=cfg.seed)
        for vol in volumes:
            # simulate_ct reads only pixels / pixel_spacing_mm / n_slices, which Volume provides
            sinos, geom, truth = simulate_ct(vol, sim, vol.path)  # type: ignore[arg-type]
            y = torch.from_numpy(np.ascontiguousarray(sinos)).unsqueeze(1)
            ops.append(radon_from_geometry(geometry_from_dict(geom)))
            ys.append(y)
            nvs.append(sim.i0)
            truths.append(truth)
        info = {"i0": sim.i0, "relative_dose": sim.relative_dose, "geometry": cfg.geometry}
    else:
        from operators.fourier import CartesianFourier
        from operators.masks import achieved_acceleration
        from pipelines.simulate import MRSimulation, simulate_mr

        sim = MRSimulation(acceleration=setting.accel, mask=setting.mask, center_fraction=cfg.center_fraction,
                           coils=cfg.coils, size=cfg.size, seed=cfg.seed)
        achieved = None
        for vol in volumes:
            k, mask, maps, truth = simulate_mr(vol, sim)  # type: ignore[arg-type]
            m = torch.from_numpy(mask)
            ops.append(CartesianFourier(m, coil_maps=None if maps is None else torch.from_numpy(maps)))
            ys.append(torch.from_numpy(k))
            nvs.append(None)
            truths.append(truth)
            achieved = achieved_acceleration(mask)
        info = {"achieved_acceleration": achieved, "sampled_fraction": 1.0 / achieved if achieved else None,
                "coils": cfg.coils, "center_fraction": cfg.center_fraction}
    return _Simulated(ops, ys, nvs, np.concatenate(truths).astype(np.float32), info, time.perf_counter() - t0)


# ------------------------------------------------------------------------------------ reconstruction
def _options_for(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``options`` that ``method`` takes."""
    from recon.api import method_options

    accepted = set(method_options(method))
    return {k: v for k, v in options.items() if k in accepted}


def _check_options(methods: Sequence[str], options: dict[str, Any]) -> None:
    from recon.api import method_options

    for key in options:
        if not any(key in method_options(m) for m in methods):
            raise ValueError(f"--set {key}: none of the methods {', '.join(methods)} takes it")


def _reconstruct_cell(
    method: str, sim: _Simulated, volumes: Sequence[Volume], cfg: BenchmarkConfig, prior: Any, device: Any,
    batch: int,
) -> tuple[np.ndarray, np.ndarray | None, list[float], list[float], int]:
    """Reconstruct every slice of one setting with one method.

    Returns ``(mean [N, H, W], std [N, H, W] or None, seconds per slice, residual per slice, nfe)``;
    ``std`` only for samplers with ``cfg.samples > 1``.
    """
    from recon.api import reconstruct

    is_sampler = method in SAMPLER_METHODS
    # Samplers run one slice per call so that each slice has its own seed (cfg.seed + its index in
    # the pooled slice list): results then do not depend on batching, resumption or method order.
    # Classical methods are deterministic and run in batches.
    step = 1 if is_sampler else batch
    means, stds, secs, res = [], [], [], []
    nfe = 0
    offset = 0
    for vol, op, y, i0 in zip(volumes, sim.ops, sim.ys, sim.i0):
        for start in range(0, vol.n_slices, step):
            stop = min(start + step, vol.n_slices)
            kwargs: dict[str, Any] = dict(device=device, **_options_for(method, cfg.options))
            if i0 is not None:
                kwargs["i0"] = i0  # Poisson dose model: noise-aware data terms (samplers, TV)
            if is_sampler:
                result = reconstruct(y[start:stop], op, prior, method=method, nfe=cfg.nfe, samples=cfg.samples,
                                     seed=cfg.seed + offset + start, precision=cfg.precision, **kwargs)
            else:
                result = reconstruct(y[start:stop], op, None, method=method, **kwargs)
            n = stop - start
            means.append(_magnitude(result.mean))
            if is_sampler and cfg.samples > 1 and result.std is not None:
                stds.append(_magnitude(result.std))
            secs.extend([float(result.seconds) / n] * n)
            res.extend(float(v) for v in np.asarray(_to_numpy(result.residual), dtype=np.float64).reshape(-1)[:n])
            nfe = int(result.nfe)
        offset += vol.n_slices
    mean = np.concatenate(means).astype(np.float32)
    std = np.concatenate(stds).astype(np.float32) if stds else None
    return mean, std, secs, res, nfe


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _magnitude(x: Any) -> np.ndarray:
    """``[B, 1, H, W]`` (real or complex, torch or numpy) -> float32 ``[B, H, W]``."""
    a = _to_numpy(x)
    a = np.abs(a) if np.iscomplexobj(a) else a
    return a.reshape(a.shape[0], *a.shape[-2:]).astype(np.float32)


def _metrics(images: np.ndarray, truth: np.ndarray, modality: str) -> dict[str, np.ndarray]:
    """Per-slice metrics of ``[N, H, W]`` images, through :mod:`recon.metrics` (the one place they live)."""
    from recon.metrics import ct_metrics, mr_metrics

    fn = ct_metrics if modality == "ct" else mr_metrics
    m = fn(images[:, None], truth[:, None])
    return {k: np.asarray(v, dtype=np.float64) for k, v in m.items()}


def _json_number(v: float) -> float | None:
    """JSON has no inf/NaN: a perfect match (PSNR inf) is stored as None."""
    return float(v) if math.isfinite(v) else None


def _warm_start_of(method: str, options: dict[str, Any], modality: str) -> str | None:
    """The classical method a sampler cell started from (``None``: a cold start or a classical method)."""
    from recon.api import resolve_init

    if method not in SAMPLER_METHODS:
        return None
    return resolve_init(_options_for(method, options).get("init", "auto"), modality)


def _run_cell(
    out: Path, setting: Setting, method: str, sim: _Simulated, volumes: Sequence[Volume], cfg: BenchmarkConfig,
    prior: Any, device: Any, batch: int,
) -> None:
    t0 = time.perf_counter()
    mean, std, secs, res, nfe = _reconstruct_cell(method, sim, volumes, cfg, prior, device, batch)
    met = _metrics(mean, sim.truth, setting.modality)
    labels = [(v.name, i) for v in volumes for i in v.slice_indices]
    per_slice = []
    for j, (name, idx) in enumerate(labels):
        row: dict[str, Any] = {"volume": name, "slice": idx, "seconds": secs[j],
                               "residual": _json_number(res[j]) if j < len(res) else None}
        row.update({k: _json_number(float(v[j])) for k, v in met.items()})
        per_slice.append(row)
    js, npz = _cell_paths(out, setting, method)
    arrays = {"mean": mean} if std is None else {"mean": mean, "std": std}
    # images first, JSON last: the JSON marks a complete cell
    atomic_save_npz(npz, **arrays)
    atomic_write_json(js, {
        "setting": setting.to_dict(),
        "method": method,
        "kind": "sampler" if method in SAMPLER_METHODS else "classical",
        "nfe": nfe,
        "samples": cfg.samples if method in SAMPLER_METHODS else 1,
        "seed": cfg.seed,
        "prior": cfg.prior if method in SAMPLER_METHODS else None,
        "init": _warm_start_of(method, cfg.options, setting.modality),
        "device": str(device),
        "simulation": sim.info,
        "simulation_seconds": sim.seconds,
        "cell_seconds": time.perf_counter() - t0,
        "slices": per_slice,
    })


# ------------------------------------------------------------------------------------ aggregation
def _cell_row(cell: dict[str, Any], modality: str) -> dict[str, Any]:
    s = cell["setting"]
    sl = cell["slices"]

    def stat(key: str) -> tuple[float | None, float | None]:
        vals = [r[key] for r in sl if r.get(key) is not None]
        if not vals:
            return None, None
        a = np.asarray(vals, dtype=np.float64)
        return float(a.mean()), float(a.std())  # population std over slices (ddof=0)

    row: dict[str, Any] = {"setting": s["key"], "label": s["label"]}
    if modality == "ct":
        row.update(views=s["views"], photons=s["photons"])
    else:
        row.update(accel=s["accel"], mask=s["mask"],
                   sampled_fraction=cell.get("simulation", {}).get("sampled_fraction"))
    row.update(relative_dose=s["relative_dose"], method=cell["method"], n_slices=len(sl))
    for key in ("psnr", "ssim"):
        row[f"{key}_mean"], row[f"{key}_std"] = stat(key)
    rkey = "rmse_hu" if modality == "ct" else "rmse"
    row[f"{rkey}_mean"], row[f"{rkey}_std"] = stat("rmse")
    row["nfe"] = cell["nfe"]
    row["samples"] = cell["samples"]
    row["seconds_per_slice_mean"], row["seconds_per_slice_std"] = stat("seconds")
    row["residual_mean"], _ = stat("residual")
    row["seed"] = cell["seed"]
    return row


def _result_columns(modality: str) -> list[str]:
    axes = ["views", "photons"] if modality == "ct" else ["accel", "mask", "sampled_fraction"]
    rkey = "rmse_hu" if modality == "ct" else "rmse"
    return (["setting", "label", *axes, "relative_dose", "method", "n_slices", "psnr_mean", "psnr_std",
             "ssim_mean", "ssim_std", f"{rkey}_mean", f"{rkey}_std", "nfe", "samples", "seconds_per_slice_mean",
             "seconds_per_slice_std", "residual_mean", "seed"])


def summarize(rows: Sequence[dict[str, Any]], methods: Sequence[str], psnr_levels: Sequence[float],
              ssim_levels: Sequence[float]) -> list[dict[str, Any]]:
    """Per method and quality level, the lowest relative dose whose mean quality reaches the level.

    Returns one dict per method: ``{"method", "levels": [{"metric", "level", "relative_dose",
    "setting", "label", "value"} ...], "best": {metric: (value, relative_dose, label)}}`` with
    ``relative_dose`` None when no setting reaches the level. Ties in dose go to the better value.
    """
    out = []
    for m in methods:
        mrows = [r for r in rows if r["method"] == m]
        levels = []
        best: dict[str, Any] = {}
        for metric, lvls in (("psnr", psnr_levels), ("ssim", ssim_levels)):
            vals = [r for r in mrows if r.get(f"{metric}_mean") is not None]
            if vals:
                b = max(vals, key=lambda r: (r[f"{metric}_mean"], -r["relative_dose"]))
                best[metric] = {"value": b[f"{metric}_mean"], "relative_dose": b["relative_dose"], "label": b["label"]}
            for lv in lvls:
                ok = [r for r in vals if r[f"{metric}_mean"] >= lv]
                entry: dict[str, Any] = {"metric": metric, "level": float(lv), "relative_dose": None}
                if ok:
                    r = min(ok, key=lambda r: (r["relative_dose"], -r[f"{metric}_mean"]))
                    entry.update(relative_dose=r["relative_dose"], setting=r["setting"], label=r["label"],
                                 value=r[f"{metric}_mean"])
                levels.append(entry)
        out.append({"method": m, "levels": levels, "best": best})
    return out


def _level_name(metric: str, level: float) -> str:
    return f"PSNR >= {level:g} dB" if metric == "psnr" else f"SSIM >= {level:g}"


def _dose_text(d: float) -> str:
    return f"{100 * d:.3g}% dose"


def headlines(summary: Sequence[dict[str, Any]], modality: str) -> list[str]:
    """One sentence per method: the strictest PSNR and SSIM levels it reaches and at which dose, or
    its best value where it reaches none."""
    dose_word = "of the full dose" if modality == "ct" else "of the full scan time"
    lines = []
    for s in summary:
        reached, missed = [], []
        for metric in ("psnr", "ssim"):
            hits = [e for e in s["levels"] if e["metric"] == metric and e["relative_dose"] is not None]
            if hits:
                e = max(hits, key=lambda e: e["level"])
                reached.append(f"{_level_name(metric, e['level'])} at {100 * e['relative_dose']:.3g}% {dose_word} "
                               f"({e['label']}: {_metric_text(metric, e['value'])})")
            elif metric in s["best"]:
                b = s["best"][metric]
                lowest = min((e["level"] for e in s["levels"] if e["metric"] == metric), default=None)
                if lowest is not None:
                    missed.append(f"{_level_name(metric, lowest)} (best {_metric_text(metric, b['value'])} at "
                                  f"{100 * b['relative_dose']:.3g}%, {b['label']})")
        parts = []
        if reached:
            parts.append("reaches " + " and ".join(reached))
        if missed:
            parts.append("does not reach " + " or ".join(missed))
        if parts:
            lines.append(f"{s['method']} " + "; ".join(parts) + ".")
    return lines


def _metric_text(metric: str, v: float) -> str:
    return f"{v:.2f} dB" if metric == "psnr" else f"{v:.3f}"


def _write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else (repr(r[k]) if isinstance(r[k], float) else r[k])) for k in columns})
    atomic_write_text(path, buf.getvalue())


def _versions(device: Any) -> dict[str, str]:
    import importlib

    from recon.io.dicom_write import software_version

    v = {"recon": software_version(), "python": platform.python_version(), "platform": platform.platform()}
    for mod in ("torch", "numpy", "scipy", "skimage", "astra", "pydicom", "nibabel", "matplotlib"):
        try:
            v[mod] = str(getattr(importlib.import_module(mod), "__version__", "unknown"))
        except ImportError:
            continue
    v["device"] = str(device)
    v["torch threads"] = str(torch.get_num_threads())
    return v


# ------------------------------------------------------------------------------------ report
def _write_outputs(out: Path, cfg: BenchmarkConfig, settings: Sequence[Setting], volumes: Sequence[Volume],
                   psnr_levels: Sequence[float], ssim_levels: Sequence[float], device: Any,
                   wall_seconds: float) -> dict[str, Any]:
    from pipelines import plots
    from pipelines.report_html import ReportContent, write_report

    modality = cfg.modality
    cells = {}
    for s in settings:
        for m in cfg.methods:
            js, _ = _cell_paths(out, s, m)
            cells[(s.key, m)] = json.loads(js.read_text())
    rows = [_cell_row(cells[(s.key, m)], modality) for s in settings for m in cfg.methods]
    columns = _result_columns(modality)
    summary = summarize(rows, cfg.methods, psnr_levels, ssim_levels)
    heads = headlines(summary, modality)
    compute = sum(c["cell_seconds"] for c in cells.values())
    compute += sum(max(cells[(s.key, m)]["simulation_seconds"] for m in cfg.methods) for s in settings)
    versions = _versions(device)
    _write_csv(out / CSV_FILE, rows, columns)

    # plots
    (out / PLOTS_DIR).mkdir(exist_ok=True)
    prow = [dict(r, group=(r["photons"] if modality == "ct" else r["mask"])) for r in rows]
    group_label = "photon fraction" if modality == "ct" else "mask"
    dose_name = "dose" if modality == "ct" else "scan time"
    xlabel = ("relative dose (views / full-dose views x photon fraction, log scale)" if modality == "ct"
              else "relative scan time (1 / acceleration, log scale)")
    psnr_plot = plots.dose_plot(prow, "psnr", out / PLOTS_DIR / "psnr_vs_dose", methods=cfg.methods,
                                group_key="group", group_label=group_label, ylabel="PSNR (dB)",
                                levels=psnr_levels, title=f"PSNR against relative {dose_name}", xlabel=xlabel)
    ssim_plot = plots.dose_plot(prow, "ssim", out / PLOTS_DIR / "ssim_vs_dose", methods=cfg.methods,
                                group_key="group", group_label=group_label, ylabel="SSIM",
                                levels=ssim_levels, title=f"SSIM against relative {dose_name}", xlabel=xlabel)

    # panels: the middle slice of the pooled selection, the same slice for every setting
    (out / PANELS_DIR).mkdir(exist_ok=True)
    ref_all = np.load(out / CELLS_DIR / REFERENCE_FILE)["reference"]
    j = ref_all.shape[0] // 2
    labels = [(v.name, i) for v in volumes for i in v.slice_indices]
    panels = []
    for s in sorted(settings, key=lambda s: -s.relative_dose):
        images, stds, caps = {}, {}, {}
        for m in cfg.methods:
            _, npz = _cell_paths(out, s, m)
            with np.load(npz) as z:
                images[m] = z["mean"][j]
                stds[m] = z["std"][j] if "std" in z.files else None
            sl = cells[(s.key, m)]["slices"][j]
            psnr = sl.get("psnr")
            caps[m] = (f"{psnr:.2f} dB / {sl['ssim']:.3f}" if psnr is not None else f"exact / {sl['ssim']:.3f}")
        title = f"{s.label} (relative {dose_name} {_pct(s.relative_dose)}); {labels[j][0]} slice {labels[j][1]}"
        p = plots.setting_panel(out / PANELS_DIR / f"{s.key}.png", ref_all[j], images, modality=modality,
                                stds=stds, captions=caps, title=title)
        panels.append((p, f"{s.label}: relative {dose_name} {_pct(s.relative_dose)}; slice PSNR / SSIM under each method"))

    result = {
        "config": cfg.to_dict(),
        "thresholds": {"psnr": list(psnr_levels), "ssim": list(ssim_levels)},
        "rows": rows,
        "summary": summary,
        "headlines": heads,
        "versions": versions,
        "compute_seconds": compute,
        "wall_seconds_this_run": wall_seconds,
        "outputs": {"csv": CSV_FILE, "plots": [str(p.relative_to(out)) for p in psnr_plot + ssim_plot],
                    "panels": [str(p.relative_to(out)) for p, _ in panels], "html": HTML_FILE},
    }
    atomic_write_json(out / JSON_FILE, _finite_json(result))

    # HTML
    level_cols = [("psnr", lv) for lv in psnr_levels] + [("ssim", lv) for lv in ssim_levels]
    srows = []
    for s in summary:
        row: list[str | None] = [s["method"]]
        for metric, lv in level_cols:
            e = next(e for e in s["levels"] if e["metric"] == metric and e["level"] == float(lv))
            row.append(None if e["relative_dose"] is None
                       else f"{_pct(e['relative_dose'])} ({e['label']}; {_metric_text(metric, e['value'])})")
        srows.append(row)
    n_slices = sum(v.n_slices for v in volumes)
    header = [
        ("modality", modality.upper()),
        ("inputs", "; ".join(f"{v.name} ({v.kind}, {v.n_slices} of {v.n_available} slices: "
                             f"{_index_text(v.slice_indices)})" for v in volumes)),
        ("slices", f"{n_slices} in total, reconstruction grid {cfg.size} x {cfg.size}"),
    ]
    if modality == "ct":
        from pipelines.simulate import FULL_VIEWS

        header += [
            ("views", ", ".join(str(v) for v in cfg.views)),
            ("photon fractions", ", ".join(f"{d:g}" for d in cfg.doses)),
            ("full-dose reference", f"{FULL_VIEWS[cfg.geometry]} {cfg.geometry}-beam views at I0 = {cfg.i0:g} photons "
                                    "per detector element"),
        ]
    else:
        header += [
            ("accelerations", ", ".join(f"{a:g}" for a in cfg.accels)),
            ("masks", ", ".join(cfg.masks) + f" (centre fraction {cfg.center_fraction:g}, {cfg.coils} coil(s))"),
        ]
    header += [
        ("methods", ", ".join(cfg.methods)),
        ("sampler settings", f"NFE {cfg.nfe}, {cfg.samples} sample(s) per slice, prior {cfg.prior or '-'}"),
        ("seed", str(cfg.seed)),
        ("compute time", f"{compute:.1f} s (simulation and reconstruction of all cells; this invocation "
                         f"{wall_seconds:.1f} s wall)"),
        ("generated", time.strftime("%Y-%m-%d %H:%M:%S")),
    ]
    if modality == "ct":
        notes = [
            "Relative dose = views / full-dose views x photon fraction (Poisson transmission noise at I0 x photon "
            "fraction). Quality: PSNR, SSIM and RMSE in HU on the window [-1000, 1000] HU (data range 2000), "
            "mean over slices; the table gives the lowest dose at which the mean reaches each level.",
        ]
    else:
        notes = [
            "Relative scan time = 1 / acceleration (nominal; the achieved sampled fraction is in the results "
            "table). Quality: PSNR and SSIM on magnitude normalised to the reference's 99.9th percentile "
            "(data range 1), mean over slices; the table gives the lowest scan-time fraction at which the mean "
            "reaches each level.",
        ]
    content = ReportContent(
        title=f"Dose-reduction benchmark ({modality.upper()})",
        subtitle=f"{len(settings)} settings x {len(cfg.methods)} methods on {n_slices} slices",
        header=header,
        versions=list(versions.items()),
        headlines=heads,
        summary_columns=["method"] + [f"lowest {dose_name} for {_level_name(m, lv)}" for m, lv in level_cols],
        summary_rows=srows,
        plots=[(psnr_plot[0], f"PSNR against relative {dose_name} (mean +- std over slices)"),
               (ssim_plot[0], f"SSIM against relative {dose_name} (mean +- std over slices)")],
        panels=panels,
        result_columns=columns,
        result_rows=rows,
        notes=notes,
    )
    write_report(out / HTML_FILE, content)
    return result


def _index_text(idx: Sequence[int]) -> str:
    if len(idx) <= 8:
        return ",".join(str(i) for i in idx)
    return ",".join(str(i) for i in idx[:4]) + ",...," + ",".join(str(i) for i in idx[-2:])


def _finite_json(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------------ API
def run_benchmark(
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    modality: str,
    methods: Sequence[str],
    views: Sequence[int] = (8, 16, 32, 64, 128),
    doses: Sequence[float] = (1.0, 0.5, 0.25, 0.1),
    accels: Sequence[float] = (4.0, 8.0, 12.0),
    masks: Sequence[str] = ("equispaced", "poisson"),
    geometry: str = "parallel",
    i0: float | None = None,
    center_fraction: float = 0.08,
    coils: int = 1,
    nfe: int = 50,
    samples: int = 1,
    seed: int = 0,
    prior: str | Path | None = "auto",
    device: str = "auto",
    precision: str = "auto",
    options: dict[str, Any] | None = None,
    slices: str = "all",
    max_slices: int = 8,
    size: int = 256,
    batch: int = 4,
    psnr_levels: Sequence[float] = DEFAULT_PSNR_LEVELS,
    ssim_levels: Sequence[float] = DEFAULT_SSIM_LEVELS,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) a dose-reduction benchmark and write its report directory.

    Args:
        inputs: DICOM series directories (MR also NIfTI files / directories of NIfTI volumes).
        out: the report directory.
        modality: ``"ct"`` or ``"mr"``.
        methods: CT ``fbp, sirt, cgls, tv``; MR ``zero_filled, cg_sense, cs_tv``; samplers
            ``dds, dps, song22`` (need a prior).
        views, doses: CT grid: projection views and photon fractions of ``i0``.
        accels, masks: MR grid: accelerations and mask kinds (:data:`operators.masks.MASK_KINDS`).
        geometry: CT ``"parallel"`` or ``"fan"``.
        i0: CT full-dose photons per detector element (default
            :data:`pipelines.simulate.FULL_DOSE_I0`).
        center_fraction, coils: MR mask centre and simulated receive coils.
        nfe, samples: sampler network evaluations and posterior samples per slice.
        seed: simulation noise / masks and, per slice, the samplers' generators.
        prior: bundled prior name or checkpoint directory for the samplers; ``"auto"`` = the
            modality's bundled prior. Unused without sampler methods.
        device: ``"auto"``, ``"cpu"``, ``"cuda[:N]"``.
        precision: samplers' network arithmetic (:func:`priors.precision.resolve_precision`).
        options: method options (``{"zeta": 10}``); each goes to every method that takes it, and
            one that no listed method takes is refused.
        slices, max_slices: slice selection per volume (:func:`parse_slice_spec`,
            :func:`select_slices`).
        size: reconstruction grid (pixels per side).
        batch: slices reconstructed together.
        psnr_levels, ssim_levels: quality levels of the summary table (not part of the cells:
            changing them on a finished benchmark only rewrites the report).
        overwrite: replace a report directory that belongs to other settings (or start afresh).
        progress: show a progress bar over cells.

    Returns:
        The contents of ``results.json``.
    """
    from tqdm import tqdm

    from pipelines.simulate import FULL_DOSE_I0
    from priors.device import resolve_device

    wall0 = time.perf_counter()
    modality = modality.lower()
    methods = [m.strip().lower() for m in methods]
    _check_config(modality, methods, views, doses, accels, masks, nfe, samples, size)
    if batch < 1:
        raise ValueError("--batch must be a positive integer")
    _check_options(methods, dict(options or {}))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(out, "output path exists and is not a directory")
    uses_prior = any(m in SAMPLER_METHODS for m in methods)
    prior_name: str | None = None
    if uses_prior:
        prior_name = modality if prior in (None, "auto") else str(prior)
        if Path(prior_name).exists():
            prior_name = str(Path(prior_name).resolve())
    volumes = load_volumes(inputs, modality, slices, max_slices)
    cfg = BenchmarkConfig(
        modality=modality,
        inputs=[str(Path(p).resolve()) for p in inputs],
        slices=slices,
        max_slices=int(max_slices),
        selected={str(v.path.resolve()): list(v.slice_indices) for v in volumes},
        size=int(size),
        seed=int(seed),
        methods=methods,
        nfe=int(nfe),
        samples=int(samples),
        prior=prior_name,
        precision=precision,
        options=dict(options or {}),
    )
    if modality == "ct":
        cfg.views, cfg.doses, cfg.geometry = [int(v) for v in views], [float(d) for d in doses], geometry
        cfg.i0 = float(FULL_DOSE_I0 if i0 is None else i0)
    else:
        cfg.accels, cfg.masks = [float(a) for a in accels], [str(m) for m in masks]
        cfg.center_fraction, cfg.coils = float(center_fraction), int(coils)
    settings = settings_grid(modality, views=cfg.views, doses=cfg.doses, accels=cfg.accels, masks=cfg.masks,
                             geometry=cfg.geometry)
    dev = resolve_device(device)
    _prepare_output(out, cfg.to_dict(), overwrite)

    pending = {s.key: [m for m in methods if not _cell_done(out, s, m)] for s in settings}
    n_cells = len(settings) * len(methods)
    n_pending = sum(len(v) for v in pending.values())
    the_prior = None
    if uses_prior and any(m in SAMPLER_METHODS for v in pending.values() for m in v):
        the_prior = _load_prior(prior_name, modality, dev)  # type: ignore[arg-type]
    ref_path = out / CELLS_DIR / REFERENCE_FILE
    bar = tqdm(total=n_cells, initial=n_cells - n_pending, unit="cell", desc="benchmark", disable=not progress)
    for s in settings:
        todo = pending[s.key]
        if not todo and ref_path.is_file():
            continue
        bar.set_postfix_str(f"{s.label}: simulating")
        # one simulation per setting, shared by all its methods
        sim = _simulate(s, volumes, cfg)
        if not ref_path.is_file():
            atomic_save_npz(ref_path, reference=sim.truth)
        for m in todo:
            bar.set_postfix_str(f"{s.label}: {m}")
            _run_cell(out, s, m, sim, volumes, cfg, the_prior, dev, batch)
            bar.update(1)
    bar.close()
    return _write_outputs(out, cfg, settings, volumes, psnr_levels, ssim_levels, dev, time.perf_counter() - wall0)


def _load_prior(name: str, modality: str, device: Any) -> Any:
    from priors import load_prior

    prior = load_prior(name, device=device)
    if prior.modality not in (modality, "any"):
        raise InputError(name, f"prior is for {prior.modality.upper()}, but the benchmark is {modality.upper()}")
    return prior


# ------------------------------------------------------------------------------------ CLI
def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [t.strip().lower() for t in text.split(",") if t.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``benchmark`` subcommand."""
    from pipelines.simulate import FULL_DOSE_I0

    p = subparsers.add_parser(
        "benchmark",
        help="dose / scan-time reduction benchmark of several methods, with plots and an HTML report",
        description=(
            "Simulate reduced-dose CT (views x photons) or undersampled MR (acceleration x mask) from DICOM "
            "series (MR: also NIfTI volumes), reconstruct with every method, and report PSNR/SSIM against "
            "relative dose: results.csv/json, plots, image panels and a self-contained report.html. "
            "Resumable: rerun the same command after an interruption."
        ),
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="DICOM series directory (MR: also a NIfTI volume or a directory of them)")
    p.add_argument("--modality", choices=("ct", "mr"), required=True)
    p.add_argument("--out", type=Path, required=True, help="report directory")
    p.add_argument("--methods", type=_names, default=None,
                   help=f"comma-separated (default CT: {DEFAULT_CT_METHODS}; MR: {DEFAULT_MR_METHODS})")
    ct = p.add_argument_group("CT")
    ct.add_argument("--views", type=_ints, default=[8, 16, 32, 64, 128], help="projection views (default 8,16,32,64,128)")
    ct.add_argument("--dose", type=_floats, default=[1.0, 0.5, 0.25, 0.1],
                    help="photon fractions of the full-dose I0 (default 1,0.5,0.25,0.1)")
    ct.add_argument("--geometry", choices=("parallel", "fan"), default="parallel")
    ct.add_argument("--i0", type=float, default=FULL_DOSE_I0, help=f"full-dose photons per detector element (default {FULL_DOSE_I0:g})")
    mr = p.add_argument_group("MR")
    mr.add_argument("--accel", type=_floats, default=[4.0, 8.0, 12.0], help="accelerations (default 4,8,12)")
    mr.add_argument("--mask", type=_names, default=["equispaced", "poisson"], help="mask kinds (default equispaced,poisson)")
    mr.add_argument("--center-fraction", type=float, default=0.08, help="fully sampled centre fraction (default 0.08)")
    mr.add_argument("--coils", type=int, default=1, help="simulated receive coils (default 1)")
    g = p.add_argument_group("slices and reconstruction")
    g.add_argument("--slices", default="all", help="per volume: 'all', 'start:stop[:step]' or '10,20,30' (default all)")
    g.add_argument("--max-slices", type=int, default=8,
                   help="at most this many slices per volume, evenly spread over the selection; 0 = no limit (default 8)")
    g.add_argument("--size", type=int, default=256, help="reconstruction grid, pixels per side (default 256)")
    g.add_argument("--nfe", type=int, default=50, help="sampler network evaluations (default 50)")
    g.add_argument("--samples", type=int, default=1, help="posterior samples per slice; > 1 adds std maps (default 1)")
    g.add_argument("--prior", default="auto", help="bundled prior name or checkpoint directory (default: by modality)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    add_precision_argument(g)
    add_set_argument(g)
    g.add_argument("--batch", type=int, default=4,
                   help="slices a classical method reconstructs together (samplers: one slice per call, own seed; default 4)")
    r = p.add_argument_group("report")
    r.add_argument("--psnr-levels", type=_floats, default=list(DEFAULT_PSNR_LEVELS),
                   help="PSNR levels (dB) of the summary table (default 30,35)")
    r.add_argument("--ssim-levels", type=_floats, default=list(DEFAULT_SSIM_LEVELS),
                   help="SSIM levels of the summary table (default 0.8,0.9)")
    p.add_argument("--overwrite", action="store_true", help="replace a report directory that holds another benchmark")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``recon benchmark`` from parsed arguments; prints the headline and the report path."""
    methods = args.methods or _names(DEFAULT_CT_METHODS if args.modality == "ct" else DEFAULT_MR_METHODS)
    t0 = time.perf_counter()
    result = run_benchmark(
        args.inputs, args.out, modality=args.modality, methods=methods, views=args.views, doses=args.dose,
        accels=args.accel, masks=args.mask, geometry=args.geometry, i0=args.i0,
        center_fraction=args.center_fraction, coils=args.coils, nfe=args.nfe, samples=args.samples, seed=args.seed,
        prior=args.prior, device=args.device, precision=args.precision, options=parse_options(args.options), slices=args.slices, max_slices=args.max_slices, size=args.size,
        batch=args.batch, psnr_levels=args.psnr_levels, ssim_levels=args.ssim_levels, overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    for line in result["headlines"]:
        print(line)
    print(f"benchmark: {len(result['rows'])} cells in {time.perf_counter() - t0:.1f} s -> {Path(args.out) / HTML_FILE}")
    return 0
