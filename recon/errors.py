"""Errors reported to users as one line naming the file and the problem."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad user input: a file or setting that cannot be used.

    ``str(err)`` is the one line the CLI prints: ``"<path>: <problem>"``.
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)
