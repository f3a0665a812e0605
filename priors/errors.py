"""Errors reported to users as one line naming the file and the problem.

:class:`InputError` is defined here, in the bottom layer, so that ``priors`` and the layers above
(``recon`` re-exports it as :class:`recon.errors.InputError`) raise the same class and the ``recon``
command reports them alike. :class:`PriorError` is the kind raised for priors.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["InputError", "PriorError"]


class InputError(ValueError):
    """Bad user input: a file or setting that cannot be used.

    ``str(err)`` is the one line the CLI prints: ``"<path>: <problem>"`` (or the problem alone
    when ``path`` is None).
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


class PriorError(InputError):
    """A prior checkpoint that is missing, corrupt or inconsistent, or an unknown prior name."""
