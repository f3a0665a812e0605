"""Atomic file writes and output-directory checks.

Every output is written to a temporary name in the destination directory and moved into place
with :func:`os.replace` only when complete, so a reader (or a resumed batch) never sees a
half-written file: after an interruption a path either holds the complete previous content, the
complete new content, or does not exist. Temporary names start with ``.`` and contain
``.partial-`` so that directory scanners skip them and :func:`remove_stale_partials` can clean up
after a hard kill (SIGKILL, power loss), the only case where one can be left behind.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import InputError

PARTIAL_MARKER = ".partial-"


def _partial_name(path: Path) -> Path:
    # Same directory as the target: os.replace is only atomic within one file system.
    return path.with_name(f".{path.name}{PARTIAL_MARKER}{os.getpid()}-{secrets.token_hex(4)}")


def is_partial(path: str | Path) -> bool:
    """True for a temporary file left by an interrupted atomic write."""
    name = Path(path).name
    return name.startswith(".") and PARTIAL_MARKER in name


@contextlib.contextmanager
def atomic_path(path: str | Path, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on normal exit move it onto ``path``.

    The caller writes the complete file to the yielded path. If the body raises, the temporary
    file is removed and ``path`` is left untouched.

    Args:
        path: final destination. Its directory must exist.
        fsync: flush the file to disk before the rename, so that a crash cannot leave a
            renamed but empty file (the rename may reach the disk before the data otherwise).
    """
    path = Path(path)
    tmp = _partial_name(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp}: nothing was written to the temporary file")
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        # BaseException too: a KeyboardInterrupt mid-write must not leave a partial file.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode(encoding))


def _json_default(obj: Any) -> Any:
    # numpy scalars/arrays and paths appear in reports and sidecars; JSON has no type for them.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_write_json(path: str | Path, obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as UTF-8 JSON (numpy values converted) to ``path`` atomically.

    NaN/inf are refused (``allow_nan=False``) because they are not valid JSON.
    """
    text = json.dumps(obj, indent=indent, default=_json_default, allow_nan=False, ensure_ascii=False)
    return atomic_write_text(path, text + "\n")


def atomic_save_npy(path: str | Path, array: np.ndarray) -> Path:
    """Save one array in ``.npy`` format atomically (no pickles)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_save_npz(path: str | Path, compressed: bool = True, **arrays: np.ndarray) -> Path:
    """Save named arrays in ``.npz`` format atomically (zip-deflated when ``compressed``)."""
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write_bytes(path, buf.getvalue())


def atomic_save_png(path: str | Path, image: np.ndarray, *, vmin: float | None = None, vmax: float | None = None) -> Path:
    """Save a greyscale ``[H, W]`` or RGB ``[H, W, 3]`` image as PNG atomically.

    ``uint8`` input is written as is. Any other dtype is mapped linearly from ``[vmin, vmax]``
    (default: the image's own min and max) to ``[0, 255]`` with clipping.
    """
    from PIL import Image  # imported here: only previews need Pillow

    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError(f"PNG image must be [H, W] or [H, W, 3|4], got shape {arr.shape}")
    if arr.dtype != np.uint8:
        a = arr.astype(np.float64)
        lo = float(np.nanmin(a)) if vmin is None else float(vmin)
        hi = float(np.nanmax(a)) if vmax is None else float(vmax)
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        arr = np.clip(np.nan_to_num((a - lo) * scale), 0, 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def refuse_to_overwrite(paths: Iterable[Path]) -> None:
    """The ``--overwrite`` check of every writer: :class:`InputError` naming the first of ``paths`` that exists."""
    for p in paths:
        if p.exists():
            raise InputError(p, "output file already exists; use --overwrite to replace it")


def remove_stale_partials(directory: str | Path) -> list[Path]:
    """Delete temporary files left in ``directory`` by interrupted atomic writes; returns them."""
    removed = []
    d = Path(directory)
    if d.is_dir():
        for p in d.iterdir():
            if p.is_file() and is_partial(p):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
    return removed


def check_writable(directory: str | Path) -> None:
    """Raise :class:`InputError` unless a file can be created in the existing ``directory``.

    Creating and deleting a probe file is the only reliable test: ``os.access`` is wrong for
    root, for read-only mounts and for some network file systems.
    """
    d = Path(directory)
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe", suffix=PARTIAL_MARKER + "probe", dir=d)
    except OSError as e:
        raise InputError(d, f"output directory is not writable ({e.strerror or e})") from None
    os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(probe)


def ensure_output_dir(path: str | Path, overwrite: bool = False, *, resume: bool = False) -> Path:
    """Create (if needed) and check an output directory before any work is done.

    Args:
        path: the output directory.
        overwrite: allow a directory that already holds files; they may be replaced. Nothing is
            deleted here.
        resume: allow a directory that already holds files because the caller will continue an
            interrupted run in it (existing complete outputs are kept and skipped by the caller).

    Returns:
        The directory as a :class:`Path`.

    Raises:
        InputError: the path is a file, cannot be created, is not writable, or already holds
            files while neither ``overwrite`` nor ``resume`` is set.
    """
    d = Path(path)
    if d.exists() and not d.is_dir():
        raise InputError(d, "output path exists and is not a directory")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        reason = "a parent is not a directory" if e.errno == errno.ENOTDIR else (e.strerror or str(e))
        raise InputError(d, f"cannot create output directory ({reason})") from None
    check_writable(d)
    if not (overwrite or resume):
        existing = [p for p in d.iterdir() if not is_partial(p)]
        if existing:
            raise InputError(
                d,
                f"output directory already holds {len(existing)} entr{'y' if len(existing) == 1 else 'ies'} "
                "(e.g. " + existing[0].name + "); use --overwrite to replace them",
            )
    return d
