"""PACS errors: one line naming the server and the problem, never a patient identifier.

Every class is a :class:`recon.errors.InputError`, so the ``recon`` command prints it as one line
and exits with status 2. Messages name the server by its address (credentials removed) and the
study by its hash label (:func:`recon.io.pacs.naming.study_label`), never by patient name, patient
ID, birth date or accession number.
"""

from __future__ import annotations

from recon.errors import InputError

__all__ = [
    "PacsError",
    "PacsUnreachable",
    "PacsRefused",
    "StudyNotFound",
    "PushRejected",
    "TransferInterrupted",
]


class PacsError(InputError):
    """A PACS operation that failed; ``str(err)`` is ``"PACS <server>: <problem>"``."""

    def __init__(self, server: str, problem: str):
        self.server = server
        super().__init__(None, f"PACS {server}: {problem}")


class PacsUnreachable(PacsError):
    """No connection: the server is down, the address is wrong or it does not answer in time."""


class PacsRefused(PacsError):
    """The server answered but refused: wrong AE title, unknown C-MOVE destination, bad credentials."""


class StudyNotFound(PacsError):
    """No study with the given StudyInstanceUID or AccessionNumber."""


class PushRejected(PacsError):
    """The server refused to store one or more instances."""


class TransferInterrupted(PacsError):
    """The connection dropped during a transfer; what was complete is kept, a rerun resumes."""
