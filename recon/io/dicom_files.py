"""Finding the DICOM files of a directory or list, and reading their headers (no pixel data).

A directory is searched recursively; hidden files, ``DICOMDIR`` and files with obviously
non-DICOM suffixes (.txt, .json, .png, .nii.gz, ...) are skipped without complaint. Any other file
that is not DICOM is an :class:`InputError` naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from recon.errors import InputError

#: Names in a series directory that are clearly not DICOM and are skipped without complaint.
_SKIP_SUFFIXES = {".txt", ".json", ".md", ".png", ".jpg", ".jpeg", ".nii", ".gz", ".xml", ".csv",
                  ".npy", ".npz", ".html", ".pdf", ".zip", ".py", ".log", ".tif", ".tiff", ".h5"}
_SKIP_NAMES = {"DICOMDIR", "LOCKFILE", "VERSION", "Thumbs.db"}


def short_error(e: BaseException, limit: int = 160) -> str:
    """First line of an exception's message (its type name when empty), cut to ``limit`` characters."""
    s = str(e).splitlines()[0] if str(e) else type(e).__name__
    return s if len(s) <= limit else s[: limit - 3] + "..."


def list_files(path: str | Path | Sequence[str | Path]) -> list[Path]:
    """The candidate DICOM files: ``[path]`` for a file, the non-skipped files under a directory
    (sorted), or the given list, each checked to exist."""
    if isinstance(path, (str, Path)):
        p = Path(path)
        if not p.exists():
            raise InputError(p, "no such file or directory")
        if p.is_file():
            return [p]
        files = [
            f
            for f in sorted(p.rglob("*"))
            if f.is_file()
            and not any(part.startswith(".") for part in f.relative_to(p).parts)
            and f.name not in _SKIP_NAMES
            and f.suffix.lower() not in _SKIP_SUFFIXES
        ]
        if not files:
            raise InputError(p, "directory holds no DICOM files")
        return files
    files = [Path(f) for f in path]
    if not files:
        raise InputError(None, "empty list of DICOM files")
    for f in files:
        if not f.is_file():
            raise InputError(f, "no such file")
    return files


def read_header(path: Path) -> Dataset:
    """Read a file's header (no pixel data); InputError naming the file if it is not DICOM."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        # Old files may lack the 128-byte preamble and 'DICM'; accept them only if forcing the
        # read yields something that really looks like an image header.
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            if "SOPClassUID" in ds and "Rows" in ds:
                return ds
        except Exception:
            pass
        raise InputError(path, "not a DICOM file") from None
    except (OSError, EOFError) as e:
        raise InputError(path, f"cannot read DICOM file ({e})") from None
    except Exception as e:  # pydicom raises assorted errors on damaged headers
        raise InputError(path, f"damaged DICOM header ({type(e).__name__}: {short_error(e)})") from None
