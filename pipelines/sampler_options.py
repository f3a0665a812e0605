"""``--set KEY=VALUE``: sampler or classical-method options from the command line.

The options are the keyword arguments of the sampler functions (``recon.samplers.dds.sample``:
``eta``, ``cg_iters``, ``gamma_scale``, ...; ``dps``: ``zeta``, ...; ``song22``: ``lam``, ``snr``, ...)
or of the classical methods (``n_iter``, ``weight``, ...), passed through ``recon.reconstruct``.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_estimator_arguments", "add_set_argument", "parse_options"]


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_options(items: list[str] | None) -> dict[str, Any]:
    """``["zeta=10", "eps_source=refined"]`` -> ``{"zeta": 10, "eps_source": "refined"}``.

    Numbers become int/float, ``true``/``false`` bools, ``none`` None; anything else stays a string.
    Raises ``ValueError`` naming an item without ``=`` or with an empty key.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. --set zeta=10")
        out[key] = _value(value.strip())
    return out


def add_set_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
        help="a sampler / method option, repeatable (e.g. --set zeta=10, --set cg_iters=8)",
    )


def add_estimator_arguments(parser: argparse._ActionsContainer, samples_help: str) -> None:
    """``--nfe`` and ``--samples``, defaulting to :data:`recon.api.DEFAULT_ESTIMATOR` of the modality."""
    from recon.api import DEFAULT_ESTIMATOR

    text = ", ".join(f"{nfe} x {s} for {m.upper()}" for m, (nfe, s) in DEFAULT_ESTIMATOR.items() if m)
    parser.add_argument("--nfe", type=int, default=None,
                        help=f"network evaluations per sample (default with --samples: {text})")
    parser.add_argument("--samples", type=int, default=None, help=f"{samples_help} (default: see --nfe)")
