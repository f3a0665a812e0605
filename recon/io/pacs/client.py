"""The operations every PACS client offers, whichever protocol it speaks, and the factory.

:func:`open_client` returns a :class:`~recon.io.pacs.dicomweb.DicomWebPacs` (QIDO-RS, WADO-RS,
STOW-RS over HTTP(S), on ``dicomweb-client`` and ``requests``) or a
:class:`~recon.io.pacs.dimse.DimsePacs` (C-FIND, C-GET or C-MOVE, C-STORE, on ``pynetdicom``) for a
:class:`~recon.io.pacs.config.PacsConfig`. Both translate every network failure into one
:class:`~recon.io.pacs.errors.PacsError` line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from pydicom.dataset import Dataset

from recon.io.pacs.config import PacsConfig
from recon.io.pacs.records import InstanceRef, SeriesInfo, StudyInfo

__all__ = ["PacsClient", "open_client", "Sink"]

#: Receives each retrieved instance (complete, decoded); it writes it to disk.
Sink = Callable[[Dataset], None]


class PacsClient(Protocol):
    """A connection to one PACS; use as a context manager so it is closed."""

    server: str

    def find_studies(self, filters: Mapping[str, str]) -> list[StudyInfo]:
        """Studies matching DICOM attribute filters (``{"StudyInstanceUID": ...}``, ``{"AccessionNumber": ...}``,
        ``{"StudyDate": "20240101-"}``, ``{"ModalitiesInStudy": "CT"}``)."""
        ...

    def list_series(self, study_uid: str) -> list[SeriesInfo]:
        """The series of a study."""
        ...

    def list_instances(self, study_uid: str, series_uid: str | None = None) -> list[InstanceRef]:
        """The instances of a study (of one series when ``series_uid`` is given)."""
        ...

    def retrieve(self, study_uid: str, wanted: Sequence[InstanceRef], sink: Sink) -> None:
        """Fetch the ``wanted`` instances of a study and pass each to ``sink`` as it arrives."""
        ...

    def store(self, datasets: Iterable[Dataset]) -> list[tuple[str, str]]:
        """Store instances; returns ``(SOPInstanceUID, reason)`` for each one the server refused."""
        ...

    def close(self) -> None:
        ...

    def __enter__(self) -> PacsClient:
        ...

    def __exit__(self, *exc: object) -> None:
        ...


def open_client(config: PacsConfig) -> PacsClient:
    """A client for ``config``'s protocol (nothing is sent until the first operation)."""
    if config.protocol == "dicomweb":
        from recon.io.pacs.dicomweb import DicomWebPacs

        return DicomWebPacs(config)
    from recon.io.pacs.dimse import DimsePacs

    return DimsePacs(config)
