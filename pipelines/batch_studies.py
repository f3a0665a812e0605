"""The studies of a ``recon batch`` run: a folder of study folders, a glob, or a CSV manifest.

Each study becomes ``OUT/<name>/``, so every study needs a name that is a plain folder name and
unique within the batch: a study folder's own name, or a manifest's ``name`` column. Two studies
with the same name would write into one output folder, so they are refused before any work.
"""

from __future__ import annotations

import csv
import glob
from dataclasses import dataclass
from pathlib import Path

from recon.errors import InputError

__all__ = ["MANIFEST_NAME_COLUMN", "MANIFEST_PATH_COLUMNS", "BatchStudy", "find_studies"]

#: Manifest columns that name a study's path (matched case-insensitively, first found wins).
MANIFEST_PATH_COLUMNS: tuple[str, ...] = ("path", "study", "study_path", "input", "directory", "dir")
#: Optional manifest column giving the output folder name (default: the study folder's name).
MANIFEST_NAME_COLUMN = "name"

_GLOB_CHARS = "*?["
#: Folders that a run leaves beside finished studies (``recon simulate`` assembles ``X.partial``).
_WORK_SUFFIX = ".partial"


@dataclass(frozen=True)
class BatchStudy:
    """One study of a batch: its input folder and the name of its output folder ``OUT/<name>``."""

    name: str
    path: Path


def find_studies(spec: str | Path, *, exclude: Path | None = None) -> list[BatchStudy]:
    """The studies ``spec`` names, in a stable order.

    ``spec`` is a folder (each non-hidden subfolder is a study, sorted by name), a CSV manifest
    (``.csv``: one row per study, path column one of :data:`MANIFEST_PATH_COLUMNS`, relative paths
    taken from the manifest's folder, optional ``name`` column), or a glob pattern (matching
    folders, sorted). ``exclude`` (the batch's output folder) is never a study, so an output
    folder inside the studies folder is not picked up by a rerun.

    Raises:
        InputError: nothing found, an unreadable manifest, a manifest without a path column, a
            bad or duplicate study name.
    """
    text = str(spec)
    path = Path(text)
    if path.is_dir():
        studies = _folder_studies(path, exclude)
    elif path.is_file():
        if path.suffix.lower() != ".csv":
            raise InputError(path, "is neither a folder of study folders nor a CSV manifest (.csv)")
        studies = _manifest_studies(path)
    elif any(c in text for c in _GLOB_CHARS):
        studies = _glob_studies(text, exclude)
    else:
        raise InputError(path, "no such folder of studies, CSV manifest or glob pattern")
    _check_names(studies, path)
    return studies


def _is_excluded(p: Path, exclude: Path | None) -> bool:
    return exclude is not None and p.resolve() == exclude.resolve()


def _folder_studies(folder: Path, exclude: Path | None) -> list[BatchStudy]:
    subs = sorted(
        (p for p in folder.iterdir()
         if p.is_dir() and not p.name.startswith(".") and not p.name.endswith(_WORK_SUFFIX)
         and not _is_excluded(p, exclude)),
        key=lambda p: p.name,
    )
    if not subs:
        hint = " (it looks like a single study: run the single command on it)" if any(folder.iterdir()) else ""
        raise InputError(folder, f"no study folders found; expected one subfolder per study{hint}")
    return [BatchStudy(p.name, p) for p in subs]


def _glob_studies(pattern: str, exclude: Path | None) -> list[BatchStudy]:
    matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
    subs = [p for p in matches if p.is_dir() and not p.name.endswith(_WORK_SUFFIX) and not _is_excluded(p, exclude)]
    if not subs:
        raise InputError(pattern, "no study folders match this pattern")
    return [BatchStudy(p.name, p) for p in subs]


def _manifest_studies(manifest: Path) -> list[BatchStudy]:
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as fh:  # -sig: spreadsheets write a BOM
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = [h.strip() for h in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(manifest, f"unreadable CSV manifest ({e})") from None
    by_lower = {h.lower(): h for h in header}
    column = next((by_lower[c] for c in MANIFEST_PATH_COLUMNS if c in by_lower), None)
    if column is None:
        found = ", ".join(header) if header else "none"
        raise InputError(manifest, f"no study path column; expected one of {', '.join(MANIFEST_PATH_COLUMNS)} "
                                   f"(found: {found})")
    name_column = by_lower.get(MANIFEST_NAME_COLUMN)
    studies = []
    for row_number, raw in enumerate(rows, start=2):  # row 1 is the header
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        if not any(row.values()):
            continue
        value = row.get(column, "")
        if not value:
            raise InputError(manifest, f"row {row_number}: empty {column!r}")
        p = Path(value).expanduser()
        p = p if p.is_absolute() else manifest.parent / p
        name = row.get(name_column, "") if name_column else ""
        studies.append(BatchStudy(name or p.name, p))
    if not studies:
        raise InputError(manifest, "no studies found: the manifest has no rows")
    return studies


def _check_names(studies: list[BatchStudy], source: Path) -> None:
    """Every name a plain, unique folder name: each study gets its own ``OUT/<name>``."""
    seen: dict[str, Path] = {}
    for s in studies:
        if not s.name or s.name in (".", "..") or "/" in s.name or "\\" in s.name or s.name.startswith("."):
            raise InputError(source, f"study name {s.name!r} ({s.path}) is not a plain folder name")
        if s.name in seen:
            raise InputError(source, f"two studies are named {s.name!r} ({seen[s.name]} and {s.path}); "
                                     "give each its own name in a manifest's name column")
        seen[s.name] = s.path
