"""recon package: posterior samplers, classical solvers, metrics, file I/O and the CLI.

``recon.reconstruct`` / ``recon.Result`` are imported on first use so that ``import recon`` stays
light (no torch import until a reconstruction is asked for).
"""

from __future__ import annotations

from typing import Any

__all__ = ["reconstruct", "Result", "available_methods", "SAMPLERS", "METHODS"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from recon import api

        return getattr(api, name)
    raise AttributeError(f"module 'recon' has no attribute {name!r}")
