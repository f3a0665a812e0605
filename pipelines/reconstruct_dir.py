"""``recon reconstruct``: a directory of sinograms or k-space in, a derived DICOM series out.

Output layout::

    OUT_DIR/
      dicom/IM0001.dcm ...      the reconstruction (CT: HU; MR: magnitude)  [--format dicom]
      dicom_std/STD0001.dcm ... pixel-wise posterior std (only with --samples > 1)
      recon.tif, recon_std.tif  or, with --format tiff, one float32 multi-page TIFF of the slices
      recon.nii.gz, ...         or, with --format nifti, one float32 NIfTI volume (and its std)
      preview.png               a few slices (and their std) side by side; for a volume, axial,
                                coronal and sagittal reformats beside the classical start image
      report.json               per slice: seconds, NFE, data residual (relative, and in units of
                                the noise: about 1 = explains the data to the noise level), PSNR/SSIM
                                when the study carries ground truth; settings, seed, versions
      .slices/slice_0000.npz    finished slices; what makes an interrupted run resumable
      state.json                the settings of the run the directory belongs to

Every file is written under a temporary name and renamed when complete. Run the same command
again after an interruption and only the missing slices are reconstructed; a directory that
belongs to different settings, or a finished one, is only replaced with ``--overwrite``.

A contiguous, regularly spaced stack is reconstructed as a volume by default (slices coupled
along z, in overlapping chunks: :mod:`pipelines.volume_plan`); ``--no-volume`` reconstructs every
slice on its own. The report says which and why.

CT data that are not HU-calibrated (sidecar ``units`` ``per_pixel``, or ``hu_calibrated`` false, as
for an HTC 2022 ``.mat`` file) are reconstructed in attenuation units (``reconstruct(...,
hu=False)``): ``1/mm``, or ``1/pixel`` for per-pixel data. A CT DICOM series declares HU, so such
data are written as TIFF unless ``--format`` says otherwise, and ``--format dicom`` is refused. A
clinical prior applied to them prints a warning, which the report keeps (``warnings``); the
typicality check scores them in the prior's HU, so its flags reach the report as for any study.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.pacs_options import add_pacs_options, push_outputs
from pipelines.plots import CT_DISPLAY_WINDOW
from pipelines.previews import slice_preview, volume_preview
from pipelines.sampler_options import add_estimator_arguments, add_set_argument, parse_options
from pipelines.studies import Study, load_study
from pipelines.typicality_check import (
    TURNED_OFF,
    TURNED_OFF_WARNING,
    clinical_prior_warning,
    flagged_warnings,
    provenance_summary,
    typicality_report,
    warn_flagged,
)
from pipelines.volume_plan import DEFAULT_CHUNK, VolumePlan, plan_volume, volume_chunks
from priors.precision import add_precision_argument
from recon.api import check_options, default_estimator, reconstruct, resolve_init
from recon.errors import InputError
from recon.io.atomic import atomic_save_npz, atomic_write_json, ensure_output_dir, remove_stale_partials

STATE_FILE = "state.json"
REPORT_FILE = "report.json"
PREVIEW_FILE = "preview.png"
SLICES_DIR = ".slices"
#: ``--format``: ``auto`` is DICOM, except TIFF for CT data that are not HU-calibrated.
OUTPUT_FORMATS = ("auto", "dicom", "tiff", "nifti")
#: Output files of the non-DICOM formats: (the reconstruction, its posterior std).
STACK_FILES = {"tiff": ("recon.tif", "recon_std.tif"), "nifti": ("recon.nii.gz", "recon_std.nii.gz")}


def run_settings(*, method: str | None, sampler: str, prior: str, nfe: int, samples: int, seed: int,
                 precision: str, options: dict[str, Any]) -> dict[str, Any]:
    """The settings that define a run (a classical ``method``, else the ``sampler`` with its prior);
    a resumed run must match them exactly."""
    s: dict[str, Any] = {"method": method or sampler, "seed": int(seed)}
    if options:
        s["options"] = dict(options)
    if method is None:
        s.update(prior=str(prior), sampler=sampler, nfe=int(nfe), samples=int(samples), precision=precision)
    return s


def _versions() -> dict[str, str]:
    import astra
    import pydicom

    from recon.io.dicom_provenance import software_version

    return {
        "recon": software_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "astra": str(getattr(astra, "__version__", "unknown")),
        "pydicom": pydicom.__version__,
    }


def prepare_output(out: Path, settings: dict[str, Any], input_dir: Path, overwrite: bool) -> dict[str, Any]:
    """Create, resume or (with ``overwrite``) replace the output directory; return its state."""
    state_path = out / STATE_FILE
    if out.exists() and overwrite:
        shutil.rmtree(out)
    elif state_path.is_file():
        state = json.loads(state_path.read_text())
        if state.get("settings") != settings or state.get("input") != str(input_dir):
            raise InputError(out, "holds a reconstruction with other settings or input; pass --overwrite to replace it")
        if (out / REPORT_FILE).is_file():
            raise InputError(out, "reconstruction already complete; pass --overwrite to redo it")
        ensure_output_dir(out, resume=True)
        remove_stale_partials(out / SLICES_DIR) if (out / SLICES_DIR).is_dir() else None
        return state
    ensure_output_dir(out, overwrite=False)
    state = {"settings": settings, "input": str(input_dir), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_json(state_path, state)
    return state


def _slice_path(out: Path, i: int) -> Path:
    return out / SLICES_DIR / f"slice_{i:04d}.npz"


def _load_prior(name: str, modality: str, device: torch.device):
    from priors import load_prior

    prior = load_prior(name, device=device)
    if prior.modality not in (modality, "any"):
        raise InputError(name, f"prior is for {prior.modality.upper()}, but the measurements are {modality.upper()}")
    return prior


def calibration(study: Study) -> dict[str, Any]:
    """How a study's values relate to HU: ``{"hu_calibrated", "units", "output_unit"}``.

    CT: output in ``HU`` when calibrated, else attenuation in ``1/mm`` (``units`` per_mm) or
    ``1/pixel`` (per_pixel); MR: magnitude (``hu_calibrated`` and ``units`` None).
    """
    if study.modality != "ct":
        return {"hu_calibrated": None, "units": None, "output_unit": "magnitude"}
    hu = bool(study.description.get("hu_calibrated", True))
    units = str(study.description.get("units", "per_mm"))
    unit = "HU" if hu else ("1/pixel" if units == "per_pixel" else "1/mm")
    return {"hu_calibrated": hu, "units": units, "output_unit": unit}


def resolve_format(output_format: str, study: Study) -> str:
    """``dicom``, ``tiff`` or ``nifti`` for ``--format`` (``auto``: DICOM, TIFF for CT without HU).

    Raises:
        InputError: ``dicom`` asked for CT data that are not HU-calibrated (a CT series stores HU).
    """
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"--format is {output_format!r}, expected one of {', '.join(OUTPUT_FORMATS)}")
    cal = calibration(study)
    if cal["hu_calibrated"] is False:
        if output_format == "dicom":
            why = f"units {cal['units']}" + (", hu_calibrated false" if cal["units"] == "per_mm" else "")
            raise InputError(study.path, f"values are not HU-calibrated ({why}) and a CT DICOM series stores HU; "
                                         "use --format tiff or --format nifti")
        return "tiff" if output_format == "auto" else output_format
    return "dicom" if output_format == "auto" else output_format


def _prior_units(images: np.ndarray, cal: dict[str, Any]) -> np.ndarray:
    """Reconstructed images (HU, or 1/mm without HU) in the clinical CT prior's HU, for scoring and metrics."""
    from operators.noise import mu_to_hu

    return images if cal["hu_calibrated"] is not False else mu_to_hu(images).astype(np.float32)


def _output_units(images: np.ndarray, study: Study, cal: dict[str, Any]) -> np.ndarray:
    """Reconstructed images in ``cal["output_unit"]``: per-pixel attenuation is 1/mm of the geometry
    times its pixel size."""
    return images * np.float32(study.pixel_spacing_mm[0]) if cal["output_unit"] == "1/pixel" else images


def reconstruct_directory(
    input_dir: str | Path,
    out: str | Path,
    *,
    method: str | None = None,
    prior: str = "auto",
    sampler: str = "dds",
    nfe: int | None = None,
    samples: int | None = None,
    seed: int = 0,
    batch: int = 4,
    device: str = "auto",
    precision: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
    options: dict[str, Any] | None = None,
    volume: bool | None = None,
    chunk: int = DEFAULT_CHUNK,
    output_format: str = "auto",
    typicality: bool = True,
) -> dict[str, Any]:
    """Reconstruct every slice of a measurement directory and write DICOM (or TIFF / NIfTI), preview and report.

    ``nfe`` / ``samples``: None takes :func:`recon.api.default_estimator` of the study's modality.
    ``volume``: True / False force volume or slice-wise mode, None decides from the study
    (:func:`pipelines.volume_plan.plan_volume`); ``chunk``: slices per volume chunk.
    ``output_format``: ``auto``, ``dicom``, ``tiff`` or ``nifti`` (:func:`resolve_format`).
    ``typicality``: score the start image and the result under the prior (False: the report and a
    warning say the check was off).
    Returns the report (also written to ``report.json``).
    """
    from tqdm import tqdm

    from priors.device import resolve_device

    input_dir, out = Path(input_dir), Path(out)
    study = load_study(input_dir)
    cal = calibration(study)
    fmt = resolve_format(output_format, study)  # before anything is written
    if prior == "auto":
        prior = study.modality
    default_nfe, default_samples = default_estimator(study.modality)
    nfe = default_nfe if nfe is None else nfe
    samples = default_samples if samples is None else samples
    settings = run_settings(method=method, sampler=sampler, prior=prior, nfe=nfe, samples=samples, seed=seed,
                            precision=precision, options=dict(options or {}))
    check_options(method or sampler, dict(options or {}))  # before anything is written
    plan = plan_volume(study, volume, method or sampler, chunk=chunk)
    settings["volume"] = plan.to_dict()
    if method is None:
        # the warm start actually used, so the report and the DICOM provenance name it
        settings["init"] = resolve_init((options or {}).get("init", "auto"), study.modality)
    dev = resolve_device(device)
    the_prior = None if method else _load_prior(prior, study.modality, dev)
    warnings = []
    if the_prior is not None and study.modality == "ct":
        warning = clinical_prior_warning(the_prior, prior, cal["hu_calibrated"] is not False, str(cal["units"]))
        if warning:
            print(f"recon: warning: {warning}", file=sys.stderr)
            warnings.append(warning)
    prepare_output(out, settings, input_dir.resolve(), overwrite)
    (out / SLICES_DIR).mkdir(exist_ok=True)

    pending = [i for i in range(study.n_slices) if not _slice_path(out, i).is_file()]
    done_before = study.n_slices - len(pending)
    bar = tqdm(total=study.n_slices, initial=done_before, unit="slice", disable=not progress, desc="reconstruct")
    for run_idx, keep in _work_units(study, plan, pending, batch):
        y = study.measurements[run_idx]
        noise_std = None if study.noise_variance is None else study.noise_variance[run_idx].sqrt()
        # the seed of a batch (chunk) follows from its first kept slice, so a resumed run draws what
        # an uninterrupted run with the same --batch (chunking) would have drawn
        result = reconstruct(
            y, study.operator_for(run_idx), the_prior, sampler=sampler, method=method, nfe=nfe, samples=samples,
            seed=seed + keep[0], device=dev, noise_std=noise_std, precision=precision, volume=plan.on,
            slice_spacing_mm=plan.slice_spacing_mm, hu=cal["hu_calibrated"] is not False, **(options or {}),
        )
        per_slice = result.seconds / len(run_idx)
        for i in keep:
            if _slice_path(out, i).is_file():
                continue  # written before an interruption; the chunk's seed makes it identical
            j = run_idx.index(i)
            mean = _magnitude(result.mean[j, 0])
            std = result.std[j, 0].abs().cpu().numpy() if result.std is not None else np.zeros_like(mean)
            start = np.full_like(mean, np.nan) if result.start is None else _magnitude(result.start[j, 0])
            sample = _magnitude(result.samples[j, 0, 0])
            atomic_save_npz(
                _slice_path(out, i), mean=mean.astype(np.float32), std=std.astype(np.float32),
                start=start.astype(np.float32), sample=sample.astype(np.float32),
                seconds=np.float64(per_slice), nfe=np.int64(result.nfe),
                residual=np.float64(float(result.residual[j])),
                noise_residual=np.float64(np.nan if result.noise_residual is None else float(result.noise_residual[j])),
            )
            bar.update(1)
    bar.close()
    if the_prior is not None and not typicality:
        print(f"recon: warning: {TURNED_OFF_WARNING}", file=sys.stderr)
        warnings.append(TURNED_OFF_WARNING)
    return finish(out, study, settings, method or sampler, the_prior, output_format=fmt, warnings=warnings,
                  typicality=typicality, progress=progress)


def _work_units(study: Study, plan: VolumePlan, pending: list[int], batch: int) -> list[tuple[list[int], list[int]]]:
    """``[(slices reconstructed together, slices written)]`` still to do: volume chunks with a
    pending slice, or batches of pending slices that share an operator."""
    if plan.on:
        todo = set(pending)
        return [(run, keep) for run, keep in volume_chunks(study.n_slices, plan.chunk, plan.overlap)
                if todo.intersection(keep)]
    return [(idx, idx) for idx in study.batches(pending, batch)]


def _magnitude(x: torch.Tensor) -> np.ndarray:
    return (x.abs() if x.is_complex() else x).detach().cpu().numpy()


def finish(out: Path, study: Study, settings: dict[str, Any], method: str, prior: Any, *,
           output_format: str = "dicom", warnings: list[str] | None = None, typicality: bool = True,
           progress: bool = False) -> dict[str, Any]:
    """Write the DICOM series (or the TIFF / NIfTI stacks), preview and report from the finished slices.

    ``output_format``: ``dicom``, ``tiff`` or ``nifti`` (resolved by :func:`resolve_format`);
    ``warnings``: lines already printed (a clinical prior on uncalibrated data), kept in the report;
    ``typicality``: score the start image and the result under ``prior``; ``progress``: its bar.
    """
    slices = [np.load(_slice_path(out, i)) for i in range(study.n_slices)]
    cal = calibration(study)
    mean = np.stack([s["mean"] for s in slices])  # HU / magnitude, or 1/mm without HU
    std = np.stack([s["std"] for s in slices])
    start = _start_images(slices)
    std_calibration = None
    if prior is not None and settings.get("samples", 1) > 1:
        std, std_calibration = calibrated_std(std, str(settings["prior"]), int(settings["samples"]))
    extra = {"method": method, **{k: v for k, v in settings.items() if k != "method"}}
    names = [study.slice_names[i] if i < len(study.slice_names) else str(i) for i in range(study.n_slices)]
    checked = None
    if prior is not None:
        extra["prior"] = settings.get("prior")
    if prior is not None and not typicality:
        checked = dict(TURNED_OFF)
    elif prior is not None:
        # scored in the prior's own units (HU for a CT prior), whatever the output unit
        start_prior = None if start is None else _prior_units(start, cal)
        scored, what = _scored_result(slices, mean)
        checked = typicality_report(prior, str(settings["prior"]),
                                    {"start": start_prior, "result": _prior_units(scored, cal)}, names,
                                    progress=progress)
        if checked.get("available"):
            checked["result_image"] = what
        if provenance_summary(checked):
            extra["ood"] = provenance_summary(checked)
    wrote_std = settings.get("samples", 1) > 1
    if std_calibration and std_calibration["calibrated"]:
        extra_std = {"std_scale": round(std_calibration["scale"], 3)}  # the std output holds the calibrated std
    else:
        extra_std = {}
    if output_format == "dicom":
        outputs = _write_dicom(out, study, extra, extra_std, mean, std if wrote_std else None)
    else:
        outputs = _write_stack(out, output_format, study, settings, cal, {**extra, "slices": names}, extra_std,
                               _output_units(mean, study, cal),
                               _output_units(std, study, cal) if wrote_std else None)
    out_start = None if start is None else _output_units(start, study, cal)
    _write_preview(out / PREVIEW_FILE, study, settings, out_start, _output_units(mean, study, cal),
                   _output_units(std, study, cal) if wrote_std else None)
    per_slice = []
    for i, s in enumerate(slices):
        row = {"slice": names[i], "seconds": float(s["seconds"]), "nfe": int(s["nfe"]), "residual": float(s["residual"]),
               "noise_residual": _noise_residual(s)}
        if study.ground_truth is not None:
            row.update(_metrics(_prior_units(mean[i], cal), study.ground_truth[i], study.modality))
        per_slice.append(row)
    all_warnings = list(warnings or []) + (flagged_warnings(checked) if checked is not None else [])
    report = {
        "input": str(study.path),
        "modality": study.modality,
        "acquisition": study.description,
        "settings": settings,
        "n_slices": study.n_slices,
        "seconds_total": float(sum(r["seconds"] for r in per_slice)),
        "unit": cal["output_unit"],
        "calibration": cal,
        "outputs": {**outputs, "preview": PREVIEW_FILE},
        "slices": per_slice,
        "typicality": checked,
        "warnings": all_warnings,
        "std_calibration": std_calibration,
        "versions": _versions(),
    }
    if study.ground_truth is not None:
        for key in ("psnr", "ssim", "rmse"):
            vals = [r[key] for r in per_slice if key in r]
            if vals:
                report[f"mean_{key}"] = float(np.mean(vals))
        if study.slice_spacing_mm is not None and study.n_slices > 1:
            stacks = {"result": _prior_units(mean, cal)}
            if start is not None:
                stacks["start"] = _prior_units(start, cal)
            report["z_variation"] = _z_variation(study.ground_truth, stacks, study.modality)
    atomic_write_json(out / REPORT_FILE, report)
    if checked is not None:
        warn_flagged(checked)
    return report


def _write_dicom(out: Path, study: Study, extra: dict[str, Any], extra_std: dict[str, Any], mean: np.ndarray,
                 std: np.ndarray | None) -> dict[str, Any]:
    """The derived series ``dicom/`` (and ``dicom_std/``), filed into the reference's study when it matches."""
    from recon.io.dicom_read import read_series
    from recon.io.dicom_write import write_series, write_std_series

    reference = None
    if study.reference is not None:
        try:
            reference = read_series(study.reference)
        except InputError:
            reference = None  # moved or deleted: identity from the sidecar still applies
        if reference is not None and reference.n_slices != study.n_slices:
            reference = None
    modality = "CT" if study.modality == "ct" else "MR"
    geometry = {} if reference is not None else {"pixel_spacing_mm": study.pixel_spacing_mm}
    window = CT_DISPLAY_WINDOW if modality == "CT" else None
    write_series(
        mean, out / "dicom", modality=modality, reference=reference, identity=study.identity, extra=extra,
        window=window, overwrite=True, **geometry,
    )
    if std is not None:
        write_std_series(std, out / "dicom_std", modality=modality, reference=reference, identity=study.identity,
                         extra={**extra, **extra_std}, overwrite=True, **geometry)
    return {"format": "dicom", "dicom": "dicom", "dicom_std": "dicom_std" if std is not None else None}


def _write_stack(out: Path, fmt: str, study: Study, settings: dict[str, Any], cal: dict[str, Any],
                 extra: dict[str, Any], extra_std: dict[str, Any], mean: np.ndarray,
                 std: np.ndarray | None) -> dict[str, Any]:
    """``recon.tif`` / ``recon.nii.gz`` (and the std) in ``cal["output_unit"]`` (:mod:`recon.io.stack_write`).

    The pixel size is the study's, unknown (None) for per-pixel data; the slice spacing is the
    volume plan's or the study's, when known.
    """
    from recon.io.stack_write import write_nifti, write_tiff_stack

    px = None if cal["output_unit"] == "1/pixel" else float(study.pixel_spacing_mm[0])
    dz = (settings.get("volume") or {}).get("slice_spacing_mm") or study.slice_spacing_mm
    dz = None if px is None else dz
    files = STACK_FILES[fmt]
    unit = str(cal["output_unit"])
    for name, images, more in ((files[0], mean, {}), (files[1], std, {"image": "posterior std", **extra_std})):
        if images is None:
            continue
        if fmt == "tiff":
            write_tiff_stack(out / name, images, pixel_size_mm=px, slice_spacing_mm=dz, unit=unit,
                             description={**extra, **more}, overwrite=True)
        else:
            write_nifti(out / name, images, pixel_size_mm=px, slice_spacing_mm=dz, unit=unit, overwrite=True)
    return {"format": fmt, "dicom": None, "dicom_std": None, fmt: files[0], f"{fmt}_std": files[1] if std is not None else None}


def calibrated_std(std: np.ndarray, prior_name: str, samples: int) -> tuple[np.ndarray, dict[str, Any]]:
    """``std`` times the prior's shipped calibration factor (:mod:`priors.calibration`), and what the
    report says about it; the raw std where the prior has no calibration."""
    from priors.calibration import load_std_calibration
    from priors.typicality import prior_directory

    cal = load_std_calibration(prior_directory(prior_name))
    if cal is None:
        return std, {"calibrated": False, "reason": "the prior ships no std calibration (uncertainty.json)"}
    note = {"calibrated": True, "scale": cal.scale, "fitted_with_samples": cal.samples,
            "coverage_on_validation": cal.coverage_calibrated}
    if cal.samples != samples:
        note["warning"] = f"fitted with {cal.samples} samples per slice, used with {samples}"
    return std * np.float32(cal.scale), note


def _scored_result(slices: list, mean: np.ndarray) -> tuple[np.ndarray, str]:
    """The result image the typicality check scores, ``[n, H, W]``, and what it is.

    With several samples it is the first posterior sample, not their mean: averaging removes the
    texture every real slice has, so the mean of a broad posterior (sparse-view CT) scores as
    atypical however typical each sample is, and a flag on it would say nothing about the sampler.
    """
    samples = [s.get("sample") for s in slices]
    if any(x is None for x in samples) or all(
            np.array_equal(x, s["mean"]) for x, s in zip(samples, slices, strict=True)):
        return mean, "the result"
    return np.stack(samples), "the first posterior sample (the mean of several is smoother than any real slice)"


def _start_images(slices: list) -> np.ndarray | None:
    """The classical start images ``[n, H, W]`` of a warm-started run (None for a cold start)."""
    if not all("start" in s for s in slices):
        return None
    start = np.stack([s["start"] for s in slices])
    return start if np.isfinite(start).all() else None


def _write_preview(path: Path, study: Study, settings: dict[str, Any], start: np.ndarray | None, mean: np.ndarray,
                   std: np.ndarray | None) -> None:
    """Reformats beside the classical start image for a volume, a few slices otherwise."""
    plan = settings.get("volume") or {}
    # uncalibrated attenuation (no HU): window from the data, not the soft-tissue window
    display = study.modality if study.description.get("hu_calibrated", True) else "attenuation"
    if not plan.get("on"):
        slice_preview(path, mean, std, display)
        return
    rows = {settings["method"]: mean}
    if start is not None:
        rows = {f"start ({settings.get('init') or 'classical'})": start, **rows}
    volume_preview(path, rows, display, slice_spacing_mm=plan["slice_spacing_mm"],
                   pixel_spacing_mm=study.pixel_spacing_mm[0])


def _noise_residual(saved: Any) -> float | None:
    """A saved slice's misfit in noise units; ``None`` without a noise model (or from a slice file
    written before the value was recorded)."""
    value = float(saved["noise_residual"]) if "noise_residual" in saved.files else float("nan")
    return None if np.isnan(value) else value


def _z_variation(reference: np.ndarray, stacks: dict[str, np.ndarray], modality: str) -> dict[str, Any]:
    """Mean absolute slice-to-slice difference inside the body of each stack and of the reference
    (CT in HU; MR on magnitude over the reference slice's 99.9th percentile, as the metrics)."""
    from recon.metrics import body_mask, z_variation

    def as_stack(images: np.ndarray) -> np.ndarray:
        x = np.asarray(images).reshape(len(images), *np.shape(images)[-2:])
        return np.abs(x).astype(np.float64) if modality == "mr" else x.astype(np.float64)

    ref = as_stack(reference)
    scale = np.percentile(ref, 99.9, axis=(1, 2), keepdims=True) if modality == "mr" else 1.0
    mask = body_mask(ref, modality)
    out: dict[str, Any] = {"reference": z_variation(ref / scale, mask)}
    for name, stack in stacks.items():
        out[name] = z_variation(as_stack(stack) / scale, mask)
    out["unit"] = "HU" if modality == "ct" else "fraction of the reference's 99.9th percentile"
    out["pixels"] = "inside the body on both slices of a pair"
    return out


def _metrics(x: np.ndarray, ref: np.ndarray, modality: str) -> dict[str, float]:
    from recon.metrics import ct_metrics, mr_metrics

    m = ct_metrics(x, ref) if modality == "ct" else mr_metrics(x, ref)
    return {k: float(np.asarray(v).reshape(-1)[0]) for k, v in m.items()}


# --------------------------------------------------------------------------------------- CLI
def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reconstruct",
        help="reconstruct a directory of sinograms or k-space into a DICOM series",
        description="Reconstruct every slice of a sinogram or k-space directory; write DICOM, a preview and a report.",
    )
    p.add_argument("input_dir", type=Path,
                   help="sinogram directory (geometry.json), k-space directory, or an HTC 2022 .mat file")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--prior", default="auto", help="bundled prior name (ct, mr) or checkpoint directory; auto = by modality")
    p.add_argument("--sampler", default="dds", help="posterior sampler: dds, dps, song22")
    p.add_argument("--method", default=None,
                   help="a classical method instead of a sampler: fbp, sirt, cgls, tv, zero_filled, cg_sense, cs_tv")
    add_estimator_arguments(p, "posterior samples averaged per slice; > 1 writes a std series")
    p.add_argument("--batch", type=int, default=4, help="slices reconstructed together (slice-wise mode)")
    vol = p.add_mutually_exclusive_group()
    vol.add_argument("--volume", dest="volume", action="store_true", default=None,
                     help="couple neighbouring slices (default: on for a contiguous, regularly spaced stack)")
    vol.add_argument("--no-volume", dest="volume", action="store_false", help="reconstruct every slice on its own")
    p.add_argument("--no-typicality", dest="typicality", action="store_false",
                   help="do not score the start image and the result under the prior (saves two scores per slice; "
                        "the report and a warning say no slice was screened)")
    p.add_argument("--chunk", type=int, default=DEFAULT_CHUNK,
                   help=f"slices per volume chunk; bounds memory (default {DEFAULT_CHUNK})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    add_precision_argument(p)
    add_set_argument(p)
    p.add_argument("--format", dest="output_format", choices=OUTPUT_FORMATS, default="auto",
                   help="output: dicom (CT in HU, MR), tiff (one float32 multi-page TIFF) or nifti (float32 "
                        ".nii.gz); auto = dicom, or tiff for CT data that are not HU-calibrated")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_pacs_options(p, pull=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if (args.nfe is not None and args.nfe < 1) or (args.samples is not None and args.samples < 1) or args.batch < 1:
        raise ValueError("--nfe, --samples and --batch must be positive integers")
    output_format = getattr(args, "output_format", "auto")
    if args.push:
        if output_format in ("tiff", "nifti"):
            raise InputError(args.out, f"--push stores DICOM series; it cannot push --format {output_format}")
        output_format = "dicom"  # refused up front for data without HU
    report = reconstruct_directory(
        args.input_dir, args.out, method=args.method, prior=args.prior, sampler=args.sampler, nfe=args.nfe,
        samples=args.samples, seed=args.seed, batch=args.batch, device=args.device, precision=args.precision,
        overwrite=args.overwrite, options=parse_options(args.options),
        progress=not args.no_progress, volume=args.volume, chunk=args.chunk, output_format=output_format,
        typicality=args.typicality,
    )
    line = f"reconstructed {report['n_slices']} slices in {report['seconds_total']:.1f} s -> {args.out}"
    if "mean_psnr" in report:
        line += f" (PSNR {report['mean_psnr']:.2f} dB, SSIM {report['mean_ssim']:.3f})"
    print(line)
    push_outputs(args, [Path(args.out) / "dicom", Path(args.out) / "dicom_std"], progress=not args.no_progress)
    return 0
