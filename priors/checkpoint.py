"""Prior checkpoints: safetensors weights + JSON config, never a pickle.

A checkpoint is a directory::

    config.json                  format, architecture, sigma range, sizes, modality, normalisation,
                                 training summary, data sources and licences, versions, weights sha256
    weights.safetensors          EMA weights of the network (what inference uses)
    training_state.safetensors   optional: raw weights, optimizer moments, RNG states (for resume)
    training_state.json          optional: step, optimizer hyper-parameters, scalar training state

Loading checks everything it can and raises :class:`priors.errors.PriorError` with one line naming
the file and the problem: a missing file, unreadable JSON, an unknown format version, a truncated or
corrupt safetensors file (header check plus a sha256 of the weights recorded in ``config.json``),
and weights that do not match the architecture (missing / unexpected keys, wrong shapes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from priors.edm import EDMPrior
from priors.errors import PriorError
from priors.network import UNetConfig
from priors.normalization import Normalization

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "save_checkpoint",
    "load_checkpoint",
    "read_config",
    "is_checkpoint_dir",
    "atomic_directory",
    "save_tensors",
    "load_tensors",
    "versions",
]

FORMAT = "recon-prior"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
STATE_FILE = "training_state.safetensors"
STATE_JSON = "training_state.json"


def versions() -> dict[str, str]:
    """Library versions recorded in every checkpoint (for reproducibility)."""
    try:
        from importlib.metadata import version

        pkg = version("recon-diffusion")
    except Exception:  # not installed (running from a source tree)
        pkg = "unknown"
    import safetensors

    return {
        "recon-diffusion": pkg,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces ``path`` only when the block succeeds.

    An interruption leaves either the old directory or the new one, never a half-written one
    (``path.old`` may remain for an instant; :func:`resolve_checkpoint_dir` falls back to it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.with_name(path.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write tensors with safetensors (contiguous CPU copies; shared storage is duplicated)."""
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    save_file(flat, str(path), metadata=metadata)


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file; a missing, truncated or corrupt file raises ``PriorError``."""
    path = Path(path)
    if not path.is_file():
        raise PriorError(path, "file is missing")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise PriorError(path, f"not a readable safetensors file (truncated or corrupt?): {str(e).splitlines()[0]}") from None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PriorError(path, "file is missing")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PriorError(path, f"invalid JSON: {e}") from None
    if not isinstance(data, dict):
        raise PriorError(path, "expected a JSON object")
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def is_checkpoint_dir(path: str | Path) -> bool:
    p = Path(path)
    return (p / CONFIG_FILE).is_file() and (p / WEIGHTS_FILE).is_file()


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """A checkpoint directory, or a training run directory holding one in ``checkpoint/``."""
    p = Path(path)
    if not p.exists():
        raise PriorError(p, "no such checkpoint directory")
    if not p.is_dir():
        raise PriorError(p, "a prior checkpoint is a directory with config.json and weights.safetensors")
    if (p / CONFIG_FILE).exists() or (p / WEIGHTS_FILE).exists():
        return p
    for sub in ("checkpoint", "checkpoint.old"):
        if is_checkpoint_dir(p / sub):
            return p / sub
    raise PriorError(p, f"not a prior checkpoint: {CONFIG_FILE} and {WEIGHTS_FILE} are missing")


def read_config(path: str | Path) -> dict[str, Any]:
    """Read and validate ``config.json`` of a checkpoint directory (format and version)."""
    d = resolve_checkpoint_dir(path)
    cfg_path = d / CONFIG_FILE
    cfg = _read_json(cfg_path)
    if cfg.get("format") != FORMAT:
        raise PriorError(cfg_path, f"not a {FORMAT} config (format={cfg.get('format')!r})")
    ver = cfg.get("format_version")
    if ver != FORMAT_VERSION:
        raise PriorError(cfg_path, f"unsupported format_version {ver!r} (this version reads {FORMAT_VERSION})")
    for key in ("prior", "architecture"):
        if not isinstance(cfg.get(key), dict):
            raise PriorError(cfg_path, f"missing section {key!r}")
    return cfg


def build_config(prior: EDMPrior, weights_sha256: str | None = None, num_tensors: int | None = None) -> dict[str, Any]:
    """The ``config.json`` content for ``prior``."""
    p = prior.config
    arch = p.pop("architecture")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "prior": p,
        "architecture": arch,
        "num_parameters": prior.net.num_parameters(),
        **prior.metadata,
        "weights": {"file": WEIGHTS_FILE, "sha256": weights_sha256, "num_tensors": num_tensors},
        "versions": versions(),
    }


def save_checkpoint(
    prior: EDMPrior,
    path: str | Path,
    *,
    weights: dict[str, torch.Tensor] | None = None,
    training_state: dict[str, torch.Tensor] | None = None,
    training_state_json: dict[str, Any] | None = None,
    atomic: bool = True,
) -> Path:
    """Write ``prior`` as a checkpoint directory at ``path`` (replaced atomically when ``atomic``).

    Args:
        prior: the prior; its network weights are saved unless ``weights`` is given.
        path: the directory to create or replace.
        weights: network state dict to save instead of ``prior.net``'s (the trainer passes the EMA).
        training_state, training_state_json: optional resume state (tensors / JSON-able scalars).

    Returns the directory.
    """
    path = Path(path)
    state = weights if weights is not None else prior.net.state_dict()

    def write(d: Path) -> None:
        save_tensors(state, d / WEIGHTS_FILE, metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
        if training_state is not None:
            save_tensors(training_state, d / STATE_FILE)
            _write_json(d / STATE_JSON, training_state_json or {})
        # The config goes last and carries the weights' hash: a config is never newer than its weights.
        _write_json(d / CONFIG_FILE, build_config(prior, _sha256(d / WEIGHTS_FILE), len(state)))

    if atomic:
        with atomic_directory(path) as tmp:
            write(tmp)
    else:
        path.mkdir(parents=True, exist_ok=True)
        write(path)
    return path


def prior_from_config(cfg: dict[str, Any], cfg_path: Path | None = None) -> EDMPrior:
    """An untrained :class:`EDMPrior` with the architecture and settings of ``cfg``."""
    try:
        arch = UNetConfig.from_dict(cfg["architecture"])
        p = cfg["prior"]
        reserved = ("format", "format_version", "prior", "architecture", "weights", "versions", "num_parameters")
        meta = {k: v for k, v in cfg.items() if k not in reserved}
        return EDMPrior(
            net_config=arch,
            sigma_data=p.get("sigma_data", 0.5),
            sigma_min=p.get("sigma_min", 0.002),
            sigma_max=p.get("sigma_max", 80.0),
            modality=p.get("modality", "any"),
            normalization=Normalization.from_dict(p.get("normalization", {})),
            image_size=p.get("image_size"),
            patch_size=p.get("patch_size"),
            metadata=meta,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise PriorError(cfg_path, f"invalid prior config: {e}") from None


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Raise ``PriorError`` unless ``state`` has exactly ``model``'s keys and shapes."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensors (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatches (e.g. {wrong[0]})")
    if problems:
        raise PriorError(path, "weights do not match config.json architecture: " + "; ".join(problems))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", *, verify_hash: bool = True) -> EDMPrior:
    """Load a checkpoint directory (or a training run directory) as an :class:`EDMPrior` in eval mode.

    Raises ``PriorError`` (one line: file and problem) for anything that cannot be loaded.
    """
    d = resolve_checkpoint_dir(path)
    cfg = read_config(d)
    wpath = d / WEIGHTS_FILE
    if not wpath.is_file():
        raise PriorError(wpath, "file is missing")
    expected_hash = (cfg.get("weights") or {}).get("sha256")
    if verify_hash and expected_hash and _sha256(wpath) != expected_hash:
        raise PriorError(wpath, "sha256 differs from config.json (corrupt or replaced weights)")
    state = load_tensors(wpath)
    prior = prior_from_config(cfg, d / CONFIG_FILE)
    check_state_dict(prior.net, state, wpath)
    prior.net.load_state_dict(state)
    prior.metadata.setdefault("checkpoint", str(d))
    return prior.to(device).eval().requires_grad_(False)


def load_training_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, json)`` of the resume state in checkpoint directory ``path``."""
    d = resolve_checkpoint_dir(path)
    return load_tensors(d / STATE_FILE), _read_json(d / STATE_JSON)


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into safetensors-able tensors and JSON-able scalars."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{idx}.{k}"] = v
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], info: dict[str, Any]
) -> None:
    """Inverse of :func:`optimizer_to_tensors`: load into ``opt`` in place."""
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if not key.startswith("optim."):
            continue
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = v
    for idx, st in info.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(st)
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})
