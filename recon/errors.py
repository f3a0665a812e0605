"""Errors reported to users as one line naming the file and the problem.

:class:`InputError` is defined in :mod:`priors.errors`, the bottom layer (which may not import
``recon``), so that one class serves every layer; this is its name for ``recon`` and above.
"""

from __future__ import annotations

from priors.errors import InputError

__all__ = ["InputError"]
