"""DICOM pixel data: decoding in any transfer syntax pydicom supports, rescaling, lossy-compression status.

Decoding uses pydicom with the installed pylibjpeg plugins (uncompressed, deflated, JPEG
baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE); anything else fails with the name of the
transfer syntax. Output values are ``stored * RescaleSlope + RescaleIntercept`` (HU for CT).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from recon.errors import InputError
from recon.io.dicom_files import short_error
from recon.io.dicom_header import ImageFrame, float_value

# Transfer syntaxes that are lossy by definition (JPEG baseline/extended, JPEG-LS near-lossless).
_LOSSY_SYNTAXES = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81"}


def _ts_name(ds: Dataset) -> str:
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if uid is None:
        return "unknown transfer syntax"
    uid = UID(uid)
    return f"{uid.name} ({uid})" if uid.name != str(uid) else str(uid)


def decode_pixels(path: Path, n_expected: int, rows: int, cols: int) -> np.ndarray:
    """Read and decode the pixel data of one file as ``[frames, rows, cols]`` stored values."""
    try:
        ds = pydicom.dcmread(path)
    except Exception as e:
        raise InputError(path, f"cannot read DICOM file ({short_error(e)})") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise InputError(path, "no pixel data (file truncated?)")
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        arr = ds.pixel_array
    except NotImplementedError:
        raise InputError(path, f"cannot decode pixel data in transfer syntax {_ts_name(ds)}: no installed decoder supports "
                               "it") from None
    except Exception as e:
        if ts is not None and UID(ts).is_compressed:
            raise InputError(path, f"cannot decode pixel data in transfer syntax {_ts_name(ds)} ({short_error(e)})") from None
        raise InputError(path, f"pixel data unreadable, file truncated or corrupt ({short_error(e)})") from None
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.shape != (n_expected, rows, cols):
        raise InputError(path, f"decoded pixel data has shape {arr.shape}, header says {(n_expected, rows, cols)}")
    return arr


def rescaled_pixels(frames: list[ImageFrame], rows: int, cols: int) -> np.ndarray:
    """float32 ``[n, rows, cols]``: each image's stored values times its slope plus its intercept.

    Decoded file by file; the frames of a multi-frame object are decoded once.
    """
    multi: dict[Path, np.ndarray] = {}
    pixels = np.empty((len(frames), rows, cols), dtype=np.float32)
    for i, s in enumerate(frames):
        if s.frame is None:
            stored = decode_pixels(s.file, 1, rows, cols)[0]
        else:
            if s.file not in multi:
                multi[s.file] = decode_pixels(s.file, int(float_value(s.header.get("NumberOfFrames")) or 1), rows, cols)
            stored = multi[s.file][s.frame]
        # float64 for the affine step: float32 would round large intercepts times slopes.
        pixels[i] = (stored.astype(np.float64) * s.slope + s.intercept).astype(np.float32)
    return pixels


def any_lossy(frames: list[ImageFrame]) -> bool:
    """Whether any image was lossy compressed (LossyImageCompression "01" or a lossy transfer syntax)."""
    return any(
        str(s.header.get("LossyImageCompression", "00")) == "01"
        or str(getattr(getattr(s.header, "file_meta", None), "TransferSyntaxUID", "")) in _LOSSY_SYNTAXES
        for s in frames
    )
