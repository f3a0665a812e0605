"""Errors raised when a prior cannot be found or loaded."""

from __future__ import annotations

from pathlib import Path


class PriorError(ValueError):
    """A prior checkpoint that is missing, corrupt or inconsistent, or an unknown prior name.

    ``str(err)`` is one line for users: ``"<path>: <problem>"`` (or the problem alone).
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)
