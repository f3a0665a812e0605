"""``run_benchmark``: a dose-reduction benchmark from inputs to report, resumable.

For every setting of the grid the selected slices are simulated once and reconstructed by every
method; finished cells are skipped, so a killed run reruns only the missing ones. With
``workers`` / ``scheduler`` each pending setting is one Dask task doing the same steps on a
worker (:func:`run_setting`), and the report is written here from the cells they leave.
"""

from __future__ import annotations

import functools
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from operators.cpu import default_threads
from pipelines.benchmark import cells
from pipelines.benchmark.grid import (
    DEFAULT_PSNR_LEVELS,
    DEFAULT_SSIM_LEVELS,
    SAMPLER_METHODS,
    BenchmarkConfig,
    Setting,
    check_config,
    settings_grid,
)
from pipelines.benchmark.layout import CELLS_DIR, REFERENCE_FILE, cell_done, prepare_output
from pipelines.benchmark.report import write_outputs
from pipelines.benchmark.volumes import Volume, load_volumes
from pipelines.simulate import FULL_DOSE_I0
from recon.api import default_estimator
from recon.errors import InputError
from recon.io.atomic import atomic_save_npz

__all__ = ["run_benchmark"]


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
    nfe: int | None = None,
    samples: int | None = None,
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
    workers: int | None = None,
    scheduler: str | None = None,
    threads: int | None = None,
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
        nfe, samples: sampler network evaluations and posterior samples per slice (None:
            :func:`recon.api.default_estimator` of the modality).
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
        workers, scheduler: run the settings as Dask tasks (one per setting: simulated once,
            then its pending cells) on a new local cluster of ``workers`` processes or on the
            existing cluster at ``scheduler`` (:func:`pipelines.batch.open_client`); the report
            directory must be on a file system every worker sees. None of both: in this process.
        threads: CPU threads per task on a cluster (default: the cores divided by the workers).

    Returns:
        The contents of ``results.json``.
    """
    from tqdm import tqdm

    from priors.device import resolve_device

    wall0 = time.perf_counter()
    modality = modality.lower()
    methods = [m.strip().lower() for m in methods]
    default_nfe, default_samples = default_estimator(modality)
    nfe = default_nfe if nfe is None else nfe
    samples = default_samples if samples is None else samples
    check_config(modality, methods, views, doses, accels, masks, nfe, samples, size)
    if batch < 1:
        raise ValueError("--batch must be a positive integer")
    cells.check_options(methods, dict(options or {}))
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
    prepare_output(out, cfg.to_dict(), overwrite)

    pending = {s.key: [m for m in methods if not cell_done(out, s, m)] for s in settings}
    n_cells = len(settings) * len(methods)
    n_pending = sum(len(v) for v in pending.values())
    ref_path = out / CELLS_DIR / REFERENCE_FILE
    if workers is not None or scheduler is not None:
        todo = [(s, pending[s.key]) for s in settings if pending[s.key] or not ref_path.is_file()]
        _run_on_cluster(out, todo, volumes, cfg, prior_name, device, batch, n_cells, n_cells - n_pending,
                        workers=workers, scheduler=scheduler, threads=threads, progress=progress)
        return write_outputs(out, cfg, settings, volumes, psnr_levels, ssim_levels, dev, time.perf_counter() - wall0)
    the_prior = None
    if uses_prior and any(m in SAMPLER_METHODS for v in pending.values() for m in v):
        the_prior = _load_prior(prior_name, modality, dev)  # type: ignore[arg-type]
    bar = tqdm(total=n_cells, initial=n_cells - n_pending, unit="cell", desc="benchmark", disable=not progress)
    for s in settings:
        todo = pending[s.key]
        if not todo and ref_path.is_file():
            continue
        bar.set_postfix_str(f"{s.label}: simulating")
        # one simulation per setting, shared by all its methods
        sim = cells.simulate_setting(s, volumes, cfg)
        if not ref_path.is_file():
            atomic_save_npz(ref_path, reference=sim.truth)
        for m in todo:
            bar.set_postfix_str(f"{s.label}: {m}")
            cells.run_cell(out, s, m, sim, volumes, cfg, the_prior, dev, batch)
            bar.update(1)
    bar.close()
    return write_outputs(out, cfg, settings, volumes, psnr_levels, ssim_levels, dev, time.perf_counter() - wall0)


def run_setting(out: Path, setting: Setting, methods: Sequence[str], volumes: Sequence[Volume], cfg: BenchmarkConfig,
                prior_name: str | None, device: str, batch: int, threads: int | None) -> int:
    """One setting on a Dask worker: simulated once, then each of ``methods``' cells written.

    The same steps as the in-process loop; returns the number of cells written. Bad input is
    raised as ``ValueError`` with its one line, which survives the trip back to the client.
    """
    from operators.cpu import apply_thread_budget
    from pipelines.batch import task_threads
    from priors.device import resolve_device

    apply_thread_budget(task_threads(threads)[0])
    try:
        dev = resolve_device(device)
        prior = None
        if any(m in SAMPLER_METHODS for m in methods):
            prior = _worker_prior(str(prior_name), cfg.modality, str(dev))
        sim = cells.simulate_setting(setting, volumes, cfg)
        ref_path = out / CELLS_DIR / REFERENCE_FILE
        if not ref_path.is_file():  # every setting's reference is the same images: any task may write it
            atomic_save_npz(ref_path, reference=sim.truth)
        for m in methods:
            cells.run_cell(out, setting, m, sim, volumes, cfg, prior, dev, batch)
    except InputError as err:
        raise ValueError(str(err)) from None
    return len(methods)


@functools.lru_cache(maxsize=2)
def _worker_prior(name: str, modality: str, device: str) -> Any:
    """The prior, loaded once per worker process (a worker runs many settings)."""
    return _load_prior(name, modality, device)


def _run_on_cluster(out: Path, todo: list[tuple[Setting, list[str]]], volumes: Sequence[Volume], cfg: BenchmarkConfig,
                    prior_name: str | None, device: str, batch: int, n_cells: int, n_done: int, *,
                    workers: int | None, scheduler: str | None, threads: int | None, progress: bool) -> None:
    """Every pending setting as one Dask task; raises the first task's error once all have ended."""
    from distributed import as_completed
    from tqdm import tqdm

    from pipelines.batch import open_client

    if (workers is None) == (scheduler is None):
        raise ValueError("give --workers N or --scheduler ADDRESS, not both")
    if not todo:
        return
    per_task = threads if (threads or scheduler) else max(1, default_threads() // int(workers))  # type: ignore[arg-type]
    with open_client(workers=workers, scheduler=scheduler, threads_per_worker=per_task, resources=None) as (client, info):
        print(f"benchmark: {len(todo)} settings on {info['workers']} worker(s) at {info['scheduler']}; "
              f"dashboard: {info['dashboard'] or 'not served'}", file=sys.stderr)
        futures = {client.submit(run_setting, out, s, methods, volumes, cfg, prior_name, device, batch, per_task,
                                 key=f"recon-benchmark-{s.key}-{uuid.uuid4().hex[:8]}", pure=False): s
                   for s, methods in todo}
        bar = tqdm(total=n_cells, initial=n_done, unit="cell", desc="benchmark", disable=not progress)
        first_error: BaseException | None = None
        for future in as_completed(futures):
            s = futures.pop(future)
            try:
                bar.update(future.result())
                bar.set_postfix_str(s.label)
            except Exception as err:  # the others still finish: their cells are kept for a rerun
                first_error = first_error or err
            future.release()  # a result the scheduler forgets is not recomputed when its worker dies
        bar.close()
    if first_error is not None:
        raise first_error


def _load_prior(name: str, modality: str, device: Any) -> Any:
    """The prior ``name`` on ``device``; refused unless it is for ``modality`` (or any)."""
    from priors import load_prior

    prior = load_prior(name, device=device)
    if prior.modality not in (modality, "any"):
        raise InputError(name, f"prior is for {prior.modality.upper()}, but the benchmark is {modality.upper()}")
    return prior
