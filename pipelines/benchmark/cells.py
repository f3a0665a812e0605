"""One cell of the benchmark: a setting simulated, reconstructed by one method, and measured.

Each setting is simulated once for every volume (:mod:`pipelines.simulate`; MR k-space noise-free)
and shared by all its methods. A cell reconstructs every selected slice with one method through
:func:`recon.api.reconstruct` and measures it against the full-dose reference with
:mod:`recon.metrics` (CT: PSNR/SSIM/RMSE in HU on [-1000, 1000] HU; MR: magnitude normalised to the
reference's 99.9th percentile). Its images are written first and its JSON last, atomically, so a
killed run leaves no cell that looks complete.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.benchmark.grid import SAMPLER_METHODS, BenchmarkConfig, Setting
from pipelines.benchmark.layout import cell_paths
from pipelines.benchmark.volumes import Volume
from recon.api import method_options, reconstruct, resolve_init
from recon.io.atomic import atomic_save_npz, atomic_write_json

__all__ = ["Simulated", "simulate_setting", "check_options", "reconstruct_cell", "run_cell"]


@dataclass
class Simulated:
    """One setting simulated for every volume: per volume the operator, data and noise model."""

    ops: list[Any]
    ys: list[torch.Tensor]
    i0: list[float | None]  # CT photons per ray (the reconstruction's noise model); None for MR
    truth: np.ndarray  # [N, size, size] reference over all volumes (HU / magnitude)
    info: dict[str, Any]
    seconds: float


def simulate_setting(setting: Setting, volumes: Sequence[Volume], cfg: BenchmarkConfig) -> Simulated:
    """Simulate ``setting`` for every volume at the grid size ``cfg.size`` with seed ``cfg.seed``."""
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
    return Simulated(ops, ys, nvs, np.concatenate(truths).astype(np.float32), info, time.perf_counter() - t0)


def _options_for(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``options`` that ``method`` takes."""

    accepted = set(method_options(method))
    return {k: v for k, v in options.items() if k in accepted}


def check_options(methods: Sequence[str], options: dict[str, Any]) -> None:
    """Refuse (``ValueError``) an option that none of ``methods`` takes."""

    for key in options:
        if not any(key in method_options(m) for m in methods):
            raise ValueError(f"--set {key}: none of the methods {', '.join(methods)} takes it")


def reconstruct_cell(
    method: str, sim: Simulated, volumes: Sequence[Volume], cfg: BenchmarkConfig, prior: Any, device: Any,
    batch: int,
) -> tuple[np.ndarray, np.ndarray | None, list[float], list[float], int]:
    """Reconstruct every slice of one setting with one method.

    Returns ``(mean [N, H, W], std [N, H, W] or None, seconds per slice, residual per slice, nfe)``;
    ``std`` only for samplers with ``cfg.samples > 1``.
    """

    is_sampler = method in SAMPLER_METHODS
    # Samplers run one slice per call so that each slice has its own seed (cfg.seed + its index in
    # the pooled slice list): results then do not depend on batching, resumption or method order.
    # Classical methods are deterministic and run in batches.
    step = 1 if is_sampler else batch
    means, stds, secs, res = [], [], [], []
    nfe = 0
    offset = 0
    for vol, op, y, i0 in zip(volumes, sim.ops, sim.ys, sim.i0, strict=True):
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

    if method not in SAMPLER_METHODS:
        return None
    return resolve_init(_options_for(method, options).get("init", "auto"), modality)


def run_cell(
    out: Path, setting: Setting, method: str, sim: Simulated, volumes: Sequence[Volume], cfg: BenchmarkConfig,
    prior: Any, device: Any, batch: int,
) -> None:
    """Reconstruct and measure the cell ``setting`` x ``method``; write its ``.npz`` then its ``.json``."""
    t0 = time.perf_counter()
    mean, std, secs, res, nfe = reconstruct_cell(method, sim, volumes, cfg, prior, device, batch)
    met = _metrics(mean, sim.truth, setting.modality)
    labels = [(v.name, i) for v in volumes for i in v.slice_indices]
    per_slice = []
    for j, (name, idx) in enumerate(labels):
        row: dict[str, Any] = {"volume": name, "slice": idx, "seconds": secs[j],
                               "residual": _json_number(res[j]) if j < len(res) else None}
        row.update({k: _json_number(float(v[j])) for k, v in met.items()})
        per_slice.append(row)
    js, npz = cell_paths(out, setting, method)
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
