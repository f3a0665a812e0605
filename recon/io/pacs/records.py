"""What a PACS query returns, without patient identifiers, and the hash that names a study.

A study is named in messages, folder names and reports by :func:`study_label`, a hash of its
StudyInstanceUID, so that neither the patient's name, ID or birth date nor the accession number has
to appear anywhere a run writes or prints.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["StudyInfo", "SeriesInfo", "InstanceRef", "study_label"]


def study_label(study_uid: str) -> str:
    """``"study-<12 hex digits>"``: a SHA-256 prefix of the StudyInstanceUID."""
    return "study-" + hashlib.sha256(study_uid.encode("ascii", "replace")).hexdigest()[:12]


@dataclass(frozen=True)
class StudyInfo:
    """A study on the server: UID, date, modalities, description and counts (no patient attributes)."""

    study_uid: str
    date: str = ""
    description: str = ""
    modalities: tuple[str, ...] = ()
    n_series: int | None = None
    n_instances: int | None = None

    @property
    def label(self) -> str:
        return study_label(self.study_uid)


@dataclass(frozen=True)
class SeriesInfo:
    """A series of a study: UID, modality, number, description and instance count."""

    series_uid: str
    modality: str = ""
    number: int | None = None
    description: str = ""
    n_instances: int | None = None


@dataclass(frozen=True, order=True)
class InstanceRef:
    """One stored instance: its series and SOP Instance UID (and SOP Class, where known)."""

    series_uid: str
    sop_uid: str
    sop_class_uid: str = ""
