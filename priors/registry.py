"""Bundled priors by name, any checkpoint directory by path.

Bundled priors live in ``data/priors/<name>/`` of the source tree, which is installed as the
``recon_data`` package (see ``pyproject.toml``), so ``load_prior("ct")`` works from an installed
wheel and from an editable install alike.
"""

from __future__ import annotations

from pathlib import Path

import torch

from priors.checkpoint import is_checkpoint_dir, load_checkpoint
from priors.edm import EDMPrior
from priors.errors import PriorError

__all__ = ["load_prior", "available_priors", "bundled_data_dir", "bundled_prior_dirs"]


def bundled_data_dir() -> Path:
    """The project's bundled data (priors, sample study): the installed ``recon_data`` package, or
    ``data/`` of the source tree when the project runs uninstalled."""
    from importlib.resources import files

    try:
        return Path(str(files("recon_data")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / "data"


def bundled_prior_dirs() -> dict[str, Path]:
    """``{name: directory}`` of every bundled prior that has a config and weights."""
    root = bundled_data_dir() / "priors"
    if not root.is_dir():
        return {}
    return {d.name: d for d in sorted(root.iterdir()) if is_checkpoint_dir(d)}


def available_priors() -> list[str]:
    """Names accepted by :func:`load_prior` (bundled priors present in this installation)."""
    return sorted(bundled_prior_dirs())


def load_prior(name_or_path: str | Path, device: str | torch.device = "cpu") -> EDMPrior:
    """Load a bundled prior by name (``"ct"``, ``"mr"``) or a checkpoint directory by path.

    Returns an :class:`EDMPrior` in eval mode with gradients disabled. A path is anything that
    contains a path separator or exists on disk; an unknown name raises ``PriorError`` listing the
    available names; a bad checkpoint raises ``PriorError`` naming the file and the problem.
    """
    from priors.device import resolve_device

    dev = resolve_device(device)
    text = str(name_or_path)
    p = Path(text)
    if isinstance(name_or_path, Path) or p.exists() or "/" in text or "\\" in text:
        return load_checkpoint(p, dev)
    bundled = bundled_prior_dirs()
    if text in bundled:
        return load_checkpoint(bundled[text], dev)
    names = ", ".join(sorted(bundled)) or "none installed"
    raise PriorError(None, f"unknown prior {text!r}: not a checkpoint directory and not a bundled prior (available: {names})")
