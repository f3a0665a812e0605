"""The DICOM datasets of a derived CT or MR series: series-level modules, then one dataset per slice.

CT Image Storage or MR Image Storage, Explicit VR Little Endian, ImageType ``DERIVED\\SECONDARY``.
Patient, study and frame-of-reference identity is carried unchanged; acquisition attributes
(kVp, kernel, MR sequence parameters) are copied from the reference header when it has them, and
Type 1/2 attributes without a source get the values the IODs allow for "unknown".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from recon.io.dicom_identity import IDENTITY_KEYWORDS, TYPE2_IDENTITY
from recon.io.dicom_provenance import derivation_text, provenance_json
from recon.io.dicom_rescale import ds_string

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")

MANUFACTURER = "recon-diffusion"
#: MR Image module acquisition attributes copied from an MR reference (empty/defaults otherwise).
_MR_COPY = ("ScanOptions", "MRAcquisitionType", "RepetitionTime", "EchoTime", "EchoTrainLength", "InversionTime",
            "SequenceName", "MagneticFieldStrength", "ImagingFrequency", "ImagedNucleus", "FlipAngle", "EchoNumbers")
_CT_COPY = ("KVP", "ConvolutionKernel", "ReconstructionDiameter")
_SERIES_COPY = ("PatientPosition", "BodyPartExamined", "Laterality")
#: BodyPartExamined values of paired body parts (PS3.16 CID 4031), for which Laterality is required;
#: beside any other stated body part an empty Laterality violates its Type 2C condition.
PAIRED_BODY_PARTS = ("BREAST", "EYE", "EAR", "KIDNEY", "LUNG", "SHOULDER", "ARM", "ELBOW", "FOREARM", "WRIST",
                     "HAND", "HIP", "THIGH", "LEG", "KNEE", "ANKLE", "FOOT", "EXTREMITY", "UPR EXTREMITY",
                     "LWR EXTREMITY", "CLAVICLE", "SCAPULA", "FEMUR", "TIBIA", "FIBULA", "HUMERUS")


def _set_modality_attributes(ds: Dataset, modality: str, ref_ds: Dataset | None) -> None:
    """Type 1/2 attributes of the CT Image or MR Image module, from the reference where it has them."""
    if modality == "CT":
        ds.KVP = ""  # Type 2 in the CT Image module
        for kw in _CT_COPY:
            v = ref_ds.get(kw) if ref_ds is not None else None
            if v not in (None, ""):
                setattr(ds, kw, v)
        return
    seq = ref_ds.get("ScanningSequence") if ref_ds is not None else None
    var = ref_ds.get("SequenceVariant") if ref_ds is not None else None
    # Type 1 in the MR Image module; "RM" (research mode) / "NONE" when nothing is known.
    ds.ScanningSequence = seq if seq not in (None, "") else "RM"
    ds.SequenceVariant = var if var not in (None, "") else "NONE"
    for kw in _MR_COPY:
        v = ref_ds.get(kw) if ref_ds is not None else None
        if v not in (None, ""):
            setattr(ds, kw, v)
    for kw in ("ScanOptions", "MRAcquisitionType", "RepetitionTime", "EchoTime", "EchoTrainLength"):
        if kw not in ds:
            setattr(ds, kw, "")  # Type 2
    if "IR" in str(ds.ScanningSequence) and "InversionTime" not in ds:
        ds.InversionTime = ""  # Type 2C: required for inversion recovery


def series_dataset(
    *,
    modality: str,
    ident: Mapping[str, str],
    ref_ds: Dataset | None,
    series_uid: str,
    series_number: int,
    description: str,
    date: str,
    time: str,
    version: str,
    extra: Mapping[str, Any] | None,
    lossy: bool,
) -> Dataset:
    """Attributes shared by every slice of the series."""
    ds = Dataset()
    charset = ident.get("SpecificCharacterSet")
    if charset:
        ds.SpecificCharacterSet = charset.split("\\") if "\\" in charset else charset
    # SOP Common
    ds.SOPClassUID = CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    # Patient, General Study, Frame of Reference: carried unchanged.
    for kw in TYPE2_IDENTITY:
        setattr(ds, kw, ident.get(kw, ""))
    for kw in (*IDENTITY_KEYWORDS, "PatientComments"):
        if kw in ident and kw not in ("SpecificCharacterSet",) and kw not in ds:
            if ident[kw] != "":
                setattr(ds, kw, ident[kw])
    ds.StudyInstanceUID = ident["StudyInstanceUID"]
    ds.FrameOfReferenceUID = ident["FrameOfReferenceUID"]
    # General Series
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = int(series_number)
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.SeriesDescription = description
    ds.PatientPosition = ""  # Type 2C: required for CT/MR Image Storage, empty when unknown
    if ref_ds is not None:
        for kw in _SERIES_COPY:
            if kw in ref_ds and ref_ds.get(kw) not in (None, ""):
                setattr(ds, kw, ref_ds.get(kw))
    if "Laterality" not in ds and ds.get("BodyPartExamined", "") in ("", *PAIRED_BODY_PARTS):
        ds.Laterality = ""  # Type 2C: a paired (or unstated) body part; empty when unknown
    # General Equipment: the software that made these images.
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "recon"
    ds.SoftwareVersions = version[:64]
    # General Image
    ds.ContentDate, ds.ContentTime = date, time
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL" if modality == "CT" else "OTHER"]
    ds.DerivationDescription = derivation_text(extra)
    if extra:
        ds.ImageComments = provenance_json(extra)
    ds.BurnedInAnnotation = "NO"
    if lossy:
        # Once lossy compressed, derived images must say so (PS3.3 C.7.6.1.1.5).
        ds.LossyImageCompression = "01"
        for kw in ("LossyImageCompressionRatio", "LossyImageCompressionMethod"):
            if ref_ds is not None and kw in ref_ds:
                setattr(ds, kw, ref_ds.get(kw))
    ds.AcquisitionNumber = ""
    _set_modality_attributes(ds, modality, ref_ds)
    return ds


def set_image_format(
    ds: Dataset, *, orientation: np.ndarray, spacing: tuple[float, float], thickness: float | None, step: float | None,
    rows: int, cols: int,
) -> None:
    """The Image Plane and Image Pixel attributes every slice shares (orientation ``(6,)``, mm; 16-bit greyscale)."""
    ds.ImageOrientationPatient = [ds_string(v) for v in orientation]
    ds.PixelSpacing = [ds_string(spacing[0]), ds_string(spacing[1])]
    ds.SliceThickness = ds_string(thickness) if thickness is not None else ""
    if step is not None:
        ds.SpacingBetweenSlices = ds_string(abs(step))
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15


def set_stored_values(
    ds: Dataset, *, dtype: np.dtype, slope: float, intercept: float, rescale_type: str, window: tuple[float, float],
    window_from_data: bool,
) -> None:
    """Pixel representation, Rescale Slope/Intercept/Type and the VOI window ``(center, width)`` in output units."""
    wc, ww = window
    ds.PixelRepresentation = 1 if dtype == np.int16 else 0
    ds.RescaleIntercept = ds_string(intercept)
    ds.RescaleSlope = ds_string(slope)
    ds.RescaleType = rescale_type[:64]
    ds.WindowCenter = ds_string(wc)
    ds.WindowWidth = ds_string(ww)
    ds.WindowCenterWidthExplanation = "1st-99th percentile" if window_from_data else "DEFAULT"
    if ww < 1.0:
        # Widths below 1 are only defined for the exact linear function (PS3.3 C.11.2.1.3).
        ds.VOILUTFunction = "LINEAR_EXACT"


def slice_dataset(
    series: Dataset,
    *,
    instance_number: int,
    position: np.ndarray,
    normal: np.ndarray,
    source: tuple[str, str, int | None] | None,
    stored: np.ndarray,
    version: str,
) -> Dataset:
    """One slice: the series attributes plus a new SOP Instance UID, its position ``(3,)`` (mm), the
    source image it derives from (SOP class, SOP instance, frame number or None) and the stored
    integers ``[H, W]`` as little-endian pixel data, with the file meta information."""
    ds = Dataset()
    for elem in series:
        ds.add(elem)  # shallow: shared values are immutable strings/numbers or read-only here
    sop_uid = generate_uid()
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = instance_number
    ds.ImagePositionPatient = [ds_string(v) for v in position]
    ds.SliceLocation = ds_string(float(position @ normal))
    if source is not None:
        cls, inst, frame = source
        item = Dataset()
        item.ReferencedSOPClassUID = cls
        item.ReferencedSOPInstanceUID = inst
        if frame is not None:
            item.ReferencedFrameNumber = frame
        ds.SourceImageSequence = DicomSequence([item])
    ds.PixelData = stored.astype(stored.dtype.newbyteorder("<")).tobytes()

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationVersionName = ("RECON_" + version)[:16]
    return ds
