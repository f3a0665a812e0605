"""Patient, study and frame-of-reference identity: read from a source series, cleaned and carried
into derived series, or synthesised when there is no source.

An identity is a dict of DICOM keyword -> string. It holds identifiers: never log it.
"""

from __future__ import annotations

import datetime as _dt
import re
import secrets
from collections.abc import Mapping

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pydicom.valuerep import validate_value

#: Patient, study and frame-of-reference attributes that a derived series must carry unchanged.
IDENTITY_KEYWORDS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "StudyInstanceUID",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "ReferringPhysicianName",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
    "SpecificCharacterSet",
)

#: Type 2 identity attributes of the Patient, General Study and Frame of Reference modules:
#: always present, empty when unknown.
TYPE2_IDENTITY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                  "ReferringPhysicianName", "StudyID", "AccessionNumber", "PositionReferenceIndicator")


def identity_of(ds: Dataset) -> dict[str, str]:
    """The :data:`IDENTITY_KEYWORDS` present in ``ds`` as strings (multi-valued ones joined by ``\\``)."""
    out: dict[str, str] = {}
    for kw in IDENTITY_KEYWORDS:
        if kw in ds:
            v = ds.data_element(kw).value
            if isinstance(v, (list, tuple, pydicom.multival.MultiValue)):
                out[kw] = "\\".join(str(x) for x in v)
            else:
                out[kw] = "" if v is None else str(v)
    return out


def synthetic_identity() -> dict[str, str]:
    """A fresh anonymous patient/study identity for outputs that have no reference DICOM.

    Call once and pass the result to every series of one study (e.g. the mean and the posterior
    std), so they share the Study Instance UID and Frame of Reference.
    """
    now = _dt.datetime.now()
    return {
        "PatientName": "ANONYMOUS^",
        "PatientID": "RECON-" + secrets.token_hex(6).upper(),
        "PatientBirthDate": "",
        "PatientSex": "",
        "StudyInstanceUID": generate_uid(),
        "StudyID": "",
        "StudyDate": now.strftime("%Y%m%d"),
        "StudyTime": now.strftime("%H%M%S"),
        "StudyDescription": "Synthetic identity: no reference DICOM",
        "AccessionNumber": "",
        "ReferringPhysicianName": "",
        "FrameOfReferenceUID": generate_uid(),
        "PositionReferenceIndicator": "",
        "PatientComments": "Synthetic anonymous identity written because no reference DICOM series was given",
    }


def clean_identity(ident: Mapping[str, str]) -> dict[str, str]:
    """Identity values made valid for their VR, so carried identity cannot fail validation.

    A malformed age such as ``"0Y"`` is zero-padded (``"000Y"``); any other value invalid for
    its VR is blanked (Type 2 attributes) or dropped (optional ones). Nothing is invented.
    """
    out: dict[str, str] = {}
    for kw, value in ident.items():
        value = "" if value is None else str(value)
        if kw == "PatientAge":
            m = re.fullmatch(r"\s*(\d{1,3})\s*([DWMY])\s*", value.upper())
            value = f"{int(m.group(1)):03d}{m.group(2)}" if m else value
        try:
            vr = dictionary_VR(kw)
        except KeyError:
            out[kw] = value
            continue
        try:
            for part in value.split("\\") if value else [""]:
                validate_value(vr, part, 2)  # 2 = raise on invalid
        except ValueError:
            if kw in TYPE2_IDENTITY:
                out[kw] = ""
            continue
        out[kw] = value
    return out
