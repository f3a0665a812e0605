"""``typicality.json``: the reference statistics shipped beside a prior's weights.

A prior directory (a bundled prior's data folder or any checkpoint directory) may hold
``typicality.json``::

    {
      "format": "recon-typicality", "format_version": 1,
      "prior": {"modality": "ct", "weights_sha256": "...", "image_size": 256, "normalization": {...}},
      "level": 0.01,
      "default_method": "msma",
      "methods": {
        "msma": {"options": {"sigmas": [...]}, "unit": "...", "model": {GaussianModel},
                 "reference": {TailModel}, "n_slices": 51, "n_patients": 12},
        "ode":  {"options": {"steps": 32, "seed": 0, "probes": 1}, "unit": "bits/dim",
                 "reference": {TailModel}, ...}
      },
      "data": {"inputs": [...], "n_slices": 51, "n_patients": 12, "description": "..."},
      "versions": {...}
    }

``weights_sha256`` is the hash ``config.json`` records for the weights the statistics were
fitted with: a retrained prior with stale statistics is refused rather than scored against them.
Nothing in the file identifies a patient (counts and folder names only).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from priors.checkpoint import read_config, resolve_checkpoint_dir
from priors.errors import PriorError
from priors.registry import bundled_prior_dirs
from priors.typicality.reference import GaussianModel, TailModel

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "REFERENCE_FILE",
    "METHODS",
    "DEFAULT_METHOD",
    "DEFAULT_LEVEL",
    "MethodReference",
    "TypicalityReference",
    "prior_directory",
    "reference_path",
    "load_reference",
    "save_reference",
]

FORMAT = "recon-typicality"
FORMAT_VERSION = 1
REFERENCE_FILE = "typicality.json"
#: ``"msma"``: multiscale score statistic (default, cheap); ``"ode"``: PF-ODE bits/dim.
METHODS = ("msma", "ode")
DEFAULT_METHOD = "msma"
#: Slices with a p-value below this are flagged as out of distribution.
DEFAULT_LEVEL = 0.01


@dataclass(frozen=True)
class MethodReference:
    """The reference of one statistic.

    Attributes:
        method: ``"msma"`` or ``"ode"``.
        options: how the statistic is computed (MSMA: ``sigmas``; ODE: ``steps``, ``seed``, ``probes``).
        tail: the reference score distribution (p-values).
        model: MSMA only: the Gaussian over feature vectors whose Mahalanobis distance is the score.
        unit: what the score measures.
        n_slices, n_patients: size of the reference set.
    """

    method: str
    options: dict[str, Any]
    tail: TailModel
    model: GaussianModel | None = None
    unit: str = ""
    n_slices: int = 0
    n_patients: int = 0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"options": dict(self.options), "unit": self.unit,
                             "n_slices": self.n_slices, "n_patients": self.n_patients}
        if self.model is not None:
            d["model"] = self.model.to_dict()
        d["reference"] = self.tail.to_dict()
        return d

    @classmethod
    def from_dict(cls, method: str, d: Mapping[str, Any]) -> MethodReference:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r} (known: {', '.join(METHODS)})")
        model = GaussianModel.from_dict(d["model"]) if "model" in d else None
        if method == "msma" and model is None:
            raise ValueError("the msma reference has no 'model'")
        return cls(method=method, options=dict(d.get("options", {})), tail=TailModel.from_dict(d["reference"]),
                   model=model, unit=str(d.get("unit", "")), n_slices=int(d.get("n_slices", 0)),
                   n_patients=int(d.get("n_patients", 0)))


@dataclass(frozen=True)
class TypicalityReference:
    """Everything needed to turn a prior's scores into p-values and flags, offline.

    Attributes:
        methods: ``{method: MethodReference}``.
        level: flag slices with ``p_value < level``.
        prior: the prior it was fitted for (modality, ``weights_sha256``, image size, normalisation).
        data: the reference set (inputs as folder names, slice and patient counts).
        versions: library versions at fitting time.
        path: the file it was read from (``None`` when built in memory).
    """

    methods: dict[str, MethodReference]
    level: float = DEFAULT_LEVEL
    prior: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    default_method: str = DEFAULT_METHOD
    path: Path | None = None

    def method(self, name: str | None = None) -> MethodReference:
        """The reference of ``name`` (default: :attr:`default_method`); ``PriorError`` if not fitted."""
        key = name or self.default_method
        if key not in self.methods:
            fitted = ", ".join(sorted(self.methods)) or "none"
            raise PriorError(self.path, f"no {key!r} reference statistics (fitted: {fitted}); "
                             f"fit them with: recon score --fit-reference DATA... --prior DIR --method {key}")
        return self.methods[key]

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "prior": dict(self.prior), "level": self.level,
                "default_method": self.default_method,
                "methods": {k: v.to_dict() for k, v in sorted(self.methods.items())},
                "data": dict(self.data), "versions": dict(self.versions)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path: Path | None = None) -> TypicalityReference:
        if d.get("format") != FORMAT:
            raise PriorError(path, f"not a {FORMAT} file (format={d.get('format')!r})")
        if d.get("format_version") != FORMAT_VERSION:
            raise PriorError(path, f"unsupported format_version {d.get('format_version')!r} "
                             f"(this version reads {FORMAT_VERSION})")
        try:
            methods = {k: MethodReference.from_dict(k, v) for k, v in dict(d["methods"]).items()}
            level = float(d.get("level", DEFAULT_LEVEL))
        except (KeyError, TypeError, ValueError) as e:
            raise PriorError(path, f"invalid reference statistics: {e}") from None
        if not methods:
            raise PriorError(path, "no reference statistics in the file")
        default = str(d.get("default_method", DEFAULT_METHOD))
        if default not in methods:
            default = sorted(methods)[0]
        return cls(methods=methods, level=level, prior=dict(d.get("prior", {})), data=dict(d.get("data", {})),
                   versions=dict(d.get("versions", {})), default_method=default, path=path)


def prior_directory(prior: str | Path) -> Path:
    """The directory of a bundled prior (by name, from :func:`priors.registry.bundled_prior_dirs`)
    or of a checkpoint / training run directory (by path), as :func:`priors.load_prior` reads it."""
    text = str(prior)
    bundled = bundled_prior_dirs()
    if not isinstance(prior, Path) and text in bundled and not Path(text).exists():
        return bundled[text]
    return resolve_checkpoint_dir(prior)


def reference_path(prior: str | Path) -> Path:
    """Where the reference statistics of ``prior`` (bundled name or directory) live."""
    return prior_directory(prior) / REFERENCE_FILE


def _weights_sha256(directory: Path) -> str | None:
    return (read_config(directory).get("weights") or {}).get("sha256")


def load_reference(prior: str | Path) -> TypicalityReference:
    """Read the ``typicality.json`` of ``prior`` (bundled name, prior directory or the file itself).

    Raises:
        PriorError: one line: no reference statistics for this prior (with the command that fits
            them), an unreadable or invalid file, or statistics fitted for other weights.
    """
    p = Path(prior)
    path = p if p.suffix == ".json" and p.is_file() else reference_path(prior)
    if not path.is_file():
        raise PriorError(path, f"prior {str(prior)!r} has no reference statistics; fit them with: "
                         f"recon score --fit-reference DATA... --prior {prior}")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PriorError(path, f"unreadable reference statistics: {e}") from None
    if not isinstance(raw, dict):
        raise PriorError(path, "expected a JSON object")
    ref = TypicalityReference.from_dict(raw, path)
    fitted = ref.prior.get("weights_sha256")
    if fitted and (path.parent / "config.json").is_file() and _weights_sha256(path.parent) not in (None, fitted):
        raise PriorError(path, "fitted for other weights than the prior's (retrained?); refit with: "
                         f"recon score --fit-reference DATA... --prior {path.parent}")
    return ref


def save_reference(reference: TypicalityReference, path: str | Path) -> Path:
    """Write ``reference`` as JSON at ``path`` (a directory gets ``typicality.json``), atomically."""
    path = Path(path)
    if path.is_dir():
        path = path / REFERENCE_FILE
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(reference.to_dict(), indent=1) + "\n")
    os.replace(tmp, path)
    return path
