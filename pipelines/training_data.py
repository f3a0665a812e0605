"""Collect 2-D training slices, patient ids and data provenance from folders.

Accepted inputs (files or folders, searched recursively):

* DICOM series (CT or MR; files with a ``.dcm`` suffix or no suffix and a DICM preamble): pixel
  values rescaled to physical units (CT: ``HU = stored * RescaleSlope + RescaleIntercept``), one
  slice per frame; only series of the requested modality are used. Patient id: the DICOM
  PatientID, or the series folder when PatientID is empty.
* NIfTI volumes (``.nii``, ``.nii.gz``): axial slices (last axis). Files named like masks or labels
  are not images; a ``*mask*.nii*`` file in the same folder restricts the volume to the mask, and
  slices whose mask (or image) is empty are skipped. Intensities that are z-scored (negative
  values) are shifted so the background is 0, giving the non-negative magnitude-like images the
  MR percentile normalisation expects. Patient id: the parent folder name.
* ``.npy`` (2-D slice or 3-D stack of slices) and ``.png`` (grayscale) images, taken as physical
  units (HU for CT). Patient id: the sub-folder below the given root, or the file stem for files
  directly in the root; a file given on its own belongs to its parent folder.

Every input root is described for the checkpoint (name, slice and patient counts, licence and
source) from a ``SOURCE.txt`` / ``LICENSE`` / ``README`` found in it or up to two folders above;
otherwise the licence is ``"unknown"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import InputError
from recon.io.dicom_read import read_series

__all__ = ["TrainingSlices", "load_training_slices", "describe_source"]

MASK_WORDS = ("mask", "seg", "label", "otmulticlass", "_ot")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass
class TrainingSlices:
    """Slices in physical units with per-slice patient and volume ids.

    Attributes:
        slices: list of ``[H, W]`` float32 arrays (sizes may differ between sources).
        patient_ids: per-slice patient id (used for the train/validation split only).
        volume_ids: per-slice volume id (MR per-volume normalisation).
        source_index: per-slice index into ``sources``.
        sources: one description per input root (JSON-able).
    """

    slices: list[np.ndarray] = field(default_factory=list)
    patient_ids: list[str] = field(default_factory=list)
    volume_ids: list[str] = field(default_factory=list)
    source_index: list[int] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.slices)

    def add(self, img: np.ndarray, patient: str, volume: str, source: int) -> None:
        self.slices.append(np.asarray(img, dtype=np.float32))
        self.patient_ids.append(patient)
        self.volume_ids.append(volume)
        self.source_index.append(source)

    def subset(self, indices: Iterable[int]) -> TrainingSlices:
        idx = list(indices)
        return TrainingSlices(
            [self.slices[i] for i in idx],
            [self.patient_ids[i] for i in idx],
            [self.volume_ids[i] for i in idx],
            [self.source_index[i] for i in idx],
            self.sources,
        )

    def extend(self, other: TrainingSlices) -> None:
        offset = len(self.sources)
        self.sources.extend(other.sources)
        self.slices.extend(other.slices)
        self.patient_ids.extend(other.patient_ids)
        self.volume_ids.extend(other.volume_ids)
        self.source_index.extend(i + offset for i in other.source_index)


# ---------------------------------------------------------------------------------------------
# provenance

_LICENCE_PATTERNS = (
    # a "licence:" field with its indented continuation lines
    re.compile(r"^\s*licen[cs]e\s*[:=]\s*(.+(?:\n[ \t]+\S.*)*)", re.IGNORECASE | re.MULTILINE),
    re.compile(r"(CC[ -]BY(?:[- ](?:NC|SA|ND))*[ -]\d\.\d(?: [A-Z]{2})?)"),
    re.compile(r"((?:Apache|MIT|BSD|GPL)[- ]?[\d.]*\s*(?:licen[cs]e)?)", re.IGNORECASE),
)


def describe_source(root: Path) -> dict[str, Any]:
    """``{"name", "licence", "source"}`` for an input root, from nearby SOURCE/LICENSE/README files."""
    root = Path(root).resolve()
    name = "/".join(root.parts[-2:]) if len(root.parts) >= 2 else root.name
    licence, source = "unknown", None
    folders = [root if root.is_dir() else root.parent]
    folders += list(folders[0].parents)[:2]
    for folder in folders:
        texts = []
        for pattern in ("SOURCE*", "LICEN[CS]E*", "README*"):
            for f in sorted(folder.glob(pattern)):
                if f.is_file() and f.stat().st_size < 200_000:
                    try:
                        texts.append((f, f.read_text(errors="replace")))
                    except OSError:
                        continue
        for f, text in texts:
            if source is None and f.name.upper().startswith("SOURCE"):
                first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
                source = first[:300]
            if licence == "unknown":
                for pat in _LICENCE_PATTERNS:
                    m = pat.search(text)
                    if m:
                        licence = " ".join(m.group(1).split())[:300]
                        break
        if licence != "unknown":
            break
    return {"name": name, "licence": licence, "source": source or "unknown"}


# ---------------------------------------------------------------------------------------------
# readers


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom", ".ima"):
        return True
    if path.suffix:
        return False
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _read_dicom_files(files: Sequence[Path], modality: str) -> list[tuple[np.ndarray, str, str]]:
    """``[(slice [H, W] physical units, patient_id, series_key)]`` for files of ``modality``."""
    import pydicom

    series: dict[str, list[tuple[float, int, np.ndarray, str]]] = {}
    for f in files:
        try:
            ds = pydicom.dcmread(str(f))
        except Exception as e:  # pydicom raises many types for non-DICOM / damaged files
            raise InputError(f, f"cannot read DICOM: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        if "PixelData" not in ds:
            continue
        mod = str(ds.get("Modality", "")).upper()
        if mod and mod.lower() != modality:
            continue
        if int(ds.get("SamplesPerPixel", 1)) != 1:
            continue  # colour images (secondary captures) are no training material
        try:
            arr = ds.pixel_array.astype(np.float32)
        except Exception as e:
            raise InputError(f, f"cannot decode pixel data ({ds.file_meta.get('TransferSyntaxUID', '?')}): {e}") from None
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        arr = arr * slope + intercept
        patient = str(ds.get("PatientID", "") or "").strip() or f"folder:{f.parent.parent.name}/{f.parent.name}"
        key = str(ds.get("SeriesInstanceUID", "") or f.parent)
        pos = ds.get("ImagePositionPatient")
        z = float(pos[2]) if pos is not None and len(pos) == 3 else float(ds.get("InstanceNumber", 0) or 0)
        frames = arr if arr.ndim == 3 else arr[None]
        for k, fr in enumerate(frames):
            series.setdefault(key, []).append((z, k, fr, patient))
    out = []
    for key, items in series.items():
        items.sort(key=lambda t: (t[0], t[1]))
        out.extend((fr, patient, key) for _, _, fr, patient in items)
    return out


def _read_series(files: Sequence[Path], modality: str) -> list[tuple[np.ndarray, str, str]]:
    """``[(slice [H, W] physical units, patient_id, series_key)]`` for every ``modality`` series among
    ``files``, read with the project's DICOM reader (:func:`recon.io.dicom_read.read_series`: sorted
    along the normal, rescaled to HU for CT); a group that reader refuses is read file by file."""
    import pydicom

    groups: dict[str, list[Path]] = {}
    for f in files:
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        except Exception as e:  # pydicom raises many types for non-DICOM / damaged files
            raise InputError(f, f"cannot read DICOM: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        if "Rows" not in ds or int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            continue  # non-image objects and colour secondary captures are no training material
        mod = str(ds.get("Modality", "") or "").lower()
        if mod and mod != modality:
            continue
        groups.setdefault(str(ds.get("SeriesInstanceUID", "") or f.parent), []).append(f)
    out = []
    for uid, group in groups.items():
        try:
            series = read_series(group)
        except InputError:
            # Training needs slices, not a consistent volume: a "series" the strict reader rejects
            # (e.g. two acquisitions sharing positions) is still read file by file.
            out.extend(_read_dicom_files(group, modality))
            continue
        folder = group[0].parent
        pid = str(series.identity.get("PatientID", "") or "").strip() or f"folder:{folder.parent.name}/{folder.name}"
        pixels = np.asarray(series.pixels, dtype=np.float32)
        out.extend((pixels[i], pid, uid) for i in range(pixels.shape[0]))
    return out


def is_mask_name(name: str) -> bool:
    """Whether a file name looks like a mask or label volume (not an image)."""
    low = name.lower()
    return any(w in low for w in MASK_WORDS)


def nifti_slices(path: Path) -> list[np.ndarray]:
    """The non-empty axial slices of a NIfTI volume, ``[H, W]`` float32, oriented as in DICOM.

    Masked by a ``*mask*.nii*`` volume of the same shape beside it (else by ``vol > vol.min()``);
    z-scored intensities are shifted to a non-negative magnitude with the background at 0.
    """
    import nibabel as nib

    try:
        vol = np.asarray(nib.load(str(path)).get_fdata(dtype=np.float32))
    except Exception as e:
        raise InputError(path, f"cannot read NIfTI: {e}") from None
    if vol.ndim == 4:
        vol = vol[..., 0]
    if vol.ndim == 2:
        vol = vol[..., None]
    if vol.ndim != 3:
        raise InputError(path, f"expected a 3-D volume, got shape {vol.shape}")
    mask = None
    for m in sorted(path.parent.glob("*mask*.nii*")):
        if m != path:
            mvol = np.asarray(nib.load(str(m)).get_fdata(dtype=np.float32))
            if mvol.shape[:3] == vol.shape:
                mask = mvol > 0
                break
    if mask is None:
        # Without a mask, the volume's most common minimum is the background.
        mask = vol > vol.min()
    inside = vol[mask]
    if inside.size == 0:
        return []
    if inside.min() < 0:
        # z-scored volumes (BraTS): shift so the darkest tissue is 0 and the background is 0.
        vol = vol - inside.min()
    vol = np.where(mask, vol, 0.0).astype(np.float32)
    out = []
    for k in range(vol.shape[2]):
        if mask[:, :, k].sum() < 0.01 * mask[:, :, k].size or not np.any(vol[:, :, k] > 0):
            continue  # empty or nearly empty slices teach the prior nothing but background
        # NIfTI stores (i, j) = (x, y); transpose and flip so the anterior is up as in DICOM.
        out.append(np.flipud(vol[:, :, k].T).copy())
    return out


def _png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("F" if im.mode in ("I", "I;16", "F") else "L"), dtype=np.float32)


def _patient_for(file: Path, root: Path) -> str:
    if root.is_file():
        # A file named on its own belongs to its folder's patient, as when its folder is given:
        # validation files picked out of a patient folder must exclude that folder from training.
        return file.parent.name
    rel = file.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else file.name.split(".")[0]


def load_training_slices(paths: Sequence[str | Path], modality: str) -> TrainingSlices:
    """Read every usable slice under ``paths`` (files or folders) for ``modality`` (``"ct"``/``"mr"``).

    Raises ``InputError`` for a missing path, an unreadable file, or when nothing usable is found.
    """
    if modality not in ("ct", "mr"):
        raise ValueError(f"modality must be 'ct' or 'mr', got {modality!r}")
    data = TrainingSlices()
    for raw in paths:
        root = Path(raw)
        if not root.exists():
            raise InputError(root, "no such file or directory")
        src = len(data.sources)
        info = describe_source(root)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
        dicom_by_folder: dict[Path, list[Path]] = {}
        n_before = len(data)
        for f in files:
            name = f.name.lower()
            if name.endswith(NIFTI_SUFFIXES):
                if is_mask_name(name):
                    continue
                vid = str(f)
                pid = f.parent.name if f.parent != root or root.is_file() else f.name.split(".")[0]
                for s in nifti_slices(f):
                    data.add(s, pid, vid, src)
            elif name.endswith(".npy"):
                try:
                    arr = np.load(f, allow_pickle=False)
                except (ValueError, OSError) as e:
                    raise InputError(f, f"cannot read .npy: {e}") from None
                if np.iscomplexobj(arr):
                    arr = np.abs(arr)
                arr = np.asarray(arr, dtype=np.float32)
                if arr.ndim == 2:
                    arr = arr[None]
                if arr.ndim != 3:
                    raise InputError(f, f"expected a 2-D slice or a 3-D stack, got shape {arr.shape}")
                pid = _patient_for(f, root)
                for s in arr:
                    data.add(s, pid, str(f), src)
            elif name.endswith(".png"):
                data.add(_png(f), _patient_for(f, root), str(f), src)
            elif _is_dicom(f):
                dicom_by_folder.setdefault(f.parent, []).append(f)
        for dfiles in dicom_by_folder.values():
            for img, pid, key in _read_series(dfiles, modality):
                data.add(img, pid, key, src)
        n_new = len(data) - n_before
        info["n_slices"] = n_new
        info["n_patients"] = len(set(data.patient_ids[n_before:]))
        data.sources.append(info)
        if n_new == 0:
            raise InputError(root, f"no usable {modality.upper()} slices found (DICOM, NIfTI, .npy or .png)")
    if len(data) == 0:
        raise InputError(None, "no input paths given")
    return data
