"""PACS access: find a study, pull it into a folder, push derived series back, de-identify exports.

Two protocols, one interface (:class:`~recon.io.pacs.client.PacsClient`): DICOMweb (QIDO-RS,
WADO-RS, STOW-RS; :mod:`~recon.io.pacs.dicomweb`) and DIMSE (C-FIND, C-GET or C-MOVE, C-STORE;
:mod:`~recon.io.pacs.dimse`). The modules, one job each:

* :mod:`~recon.io.pacs.config`: which server, credentials and TLS, from the environment and a config file;
* :mod:`~recon.io.pacs.records`: query results without patient identifiers; the study hash label;
* :mod:`~recon.io.pacs.errors`: the one-line errors (all :class:`recon.errors.InputError`);
* :mod:`~recon.io.pacs.client`: the interface and :func:`open_client`;
* :mod:`~recon.io.pacs.transfer`: atomic, resumable pull and verified push;
* :mod:`~recon.io.pacs.deidentify`: the PS3.15 Basic Application Level Confidentiality Profile.

Nothing here logs or prints a patient's name, ID or birth date or an accession number.
"""

from recon.io.pacs.client import PacsClient, open_client
from recon.io.pacs.config import PacsConfig, resolve_config
from recon.io.pacs.deidentify import Deidentifier, load_key
from recon.io.pacs.errors import PacsError, PacsRefused, PacsUnreachable, PushRejected, StudyNotFound, TransferInterrupted
from recon.io.pacs.records import InstanceRef, SeriesInfo, StudyInfo, study_label
from recon.io.pacs.transfer import MANIFEST, PushResult, dicom_files, find_study, pull_study, push_files, read_manifest

__all__ = [
    "MANIFEST",
    "Deidentifier",
    "InstanceRef",
    "PacsClient",
    "PacsConfig",
    "PacsError",
    "PacsRefused",
    "PacsUnreachable",
    "PushRejected",
    "PushResult",
    "SeriesInfo",
    "StudyInfo",
    "StudyNotFound",
    "TransferInterrupted",
    "dicom_files",
    "find_study",
    "load_key",
    "open_client",
    "pull_study",
    "push_files",
    "read_manifest",
    "resolve_config",
    "study_label",
]
