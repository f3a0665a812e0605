"""Errors reported to users as one line naming the file and the problem.

:class:`InputError` is defined in :mod:`priors.errors`, the bottom layer (which may not import
``recon``), so that one class serves every layer; this is its name for ``recon`` and above.
"""

from __future__ import annotations

from priors.errors import InputError

__all__ = ["InputError", "one_line"]


def one_line(err: BaseException) -> str:
    """The error as the ``recon`` command prints it: one line, ``"<file>: <problem>"`` for OS
    errors, whitespace collapsed."""
    if isinstance(err, OSError) and err.filename is not None:
        text = f"{err.filename}: {err.strerror or err}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())
