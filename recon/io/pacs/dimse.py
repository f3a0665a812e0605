"""A DIMSE PACS: C-FIND to search, C-GET or C-MOVE to retrieve, C-STORE to store.

Built on ``pynetdicom`` (the pydicom project's DICOM networking library). Retrieval uses C-GET by
default: the images come back over our own association, so the PACS need not know us. C-MOVE
(``retrieve = "move"``) is what most hospital PACS allow: the PACS opens an association to our
storage SCP, which listens on ``move_port`` under ``calling_aet``; both must be registered on the
PACS as a modality. TLS (``tls = true``) wraps every association we open, verified against the
system trust store or ``ca_bundle`` (the C-MOVE storage SCP listens without TLS).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from recon.errors import InputError
from recon.io.pacs.client import Sink
from recon.io.pacs.config import PacsConfig
from recon.io.pacs.errors import PacsError, PacsRefused, PacsUnreachable, TransferInterrupted
from recon.io.pacs.records import InstanceRef, SeriesInfo, StudyInfo

__all__ = ["DimsePacs"]

_PENDING = (0xFF00, 0xFF01)
_WARNING = (0x0001, 0xB000, 0xB006, 0xB007)  # C-STORE: coerced / elements discarded, still stored
_MOVE_UNKNOWN_DESTINATION = 0xA801
_STORE_FAILED = 0xC000
#: Presentation contexts per association are limited to 128; storage classes of one retrieval fit.
_MAX_CONTEXTS = 120


class DimsePacs:
    """A DIMSE service at ``config.host:config.port`` with AE title ``config.called_aet``."""

    def __init__(self, config: PacsConfig):
        self.config = config
        self.server = config.server

    def __enter__(self) -> DimsePacs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Associations are opened per operation; nothing stays open."""

    # ------------------------------------------------------------------ search
    def find_studies(self, filters: Mapping[str, str]) -> list[StudyInfo]:
        query = _query("STUDY", {"StudyInstanceUID": "", "StudyDate": "", "StudyDescription": "", "ModalitiesInStudy": "",
                                 "NumberOfStudyRelatedSeries": "", "NumberOfStudyRelatedInstances": "", **filters})
        return [
            StudyInfo(study_uid=str(ds.get("StudyInstanceUID", "")), date=str(ds.get("StudyDate", "") or ""),
                      description=str(ds.get("StudyDescription", "") or ""),
                      modalities=tuple(str(m) for m in _values(ds.get("ModalitiesInStudy"))),
                      n_series=_int(ds.get("NumberOfStudyRelatedSeries")),
                      n_instances=_int(ds.get("NumberOfStudyRelatedInstances")))
            for ds in self._find(query)
        ]

    def list_series(self, study_uid: str) -> list[SeriesInfo]:
        query = _query("SERIES", {"StudyInstanceUID": study_uid, "SeriesInstanceUID": "", "Modality": "",
                                  "SeriesNumber": "", "SeriesDescription": "", "NumberOfSeriesRelatedInstances": ""})
        return [
            SeriesInfo(series_uid=str(ds.get("SeriesInstanceUID", "")), modality=str(ds.get("Modality", "") or ""),
                       number=_int(ds.get("SeriesNumber")), description=str(ds.get("SeriesDescription", "") or ""),
                       n_instances=_int(ds.get("NumberOfSeriesRelatedInstances")))
            for ds in self._find(query)
        ]

    def list_instances(self, study_uid: str, series_uid: str | None = None) -> list[InstanceRef]:
        series = [series_uid] if series_uid else [s.series_uid for s in self.list_series(study_uid)]
        refs = []
        for uid in series:
            query = _query("IMAGE", {"StudyInstanceUID": study_uid, "SeriesInstanceUID": uid, "SOPInstanceUID": "",
                                     "SOPClassUID": ""})
            refs += [InstanceRef(uid, str(ds.get("SOPInstanceUID", "")), str(ds.get("SOPClassUID", "") or ""))
                     for ds in self._find(query)]
        return sorted(refs)

    def _find(self, query: Dataset) -> list[Dataset]:
        with self._association([StudyRootQueryRetrieveInformationModelFind]) as assoc:
            out = []
            status = Dataset()
            for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
                if status and status.Status in _PENDING and identifier is not None:
                    out.append(identifier)
            self._check_final(status, "search")
        return out

    # ------------------------------------------------------------------ retrieve
    def retrieve(self, study_uid: str, wanted: Sequence[InstanceRef], sink: Sink) -> None:
        if not wanted:
            return
        requests = _retrieve_requests(study_uid, wanted, self.list_instances(study_uid))
        classes = sorted({r.sop_class_uid for r in wanted if r.sop_class_uid})
        errors: list[BaseException] = []

        def on_store(event: Any) -> int:
            try:
                ds = event.dataset
                ds.file_meta = event.file_meta
                sink(ds)
            except Exception as e:  # reported after the transfer, as the one error line
                errors.append(e)
                return _STORE_FAILED
            return 0x0000

        if self.config.retrieve == "move":
            self._move(requests, on_store)
        else:
            self._get(requests, classes, on_store)
        if errors:
            first = errors[0]
            raise first if isinstance(first, InputError) else TransferInterrupted(
                self.server, f"could not keep a received instance ({first}); run the same command again to resume")

    def _get(self, requests: list[Dataset], classes: list[str], on_store: Any) -> None:
        storage = [UID(c) for c in classes] or [cx.abstract_syntax for cx in StoragePresentationContexts]
        storage = storage[: _MAX_CONTEXTS]
        roles = [build_role(uid, scp_role=True) for uid in storage]
        with self._association([StudyRootQueryRetrieveInformationModelGet], storage=storage, ext_neg=roles,
                               handlers=[(evt.EVT_C_STORE, on_store)]) as assoc:
            for query in requests:
                status = _final_status(assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet))
                self._check_final(status, "transfer")

    def _move(self, requests: list[Dataset], on_store: Any) -> None:
        scp = AE(ae_title=self.config.calling_aet)
        _set_timeouts(scp, self.config.timeout)
        for cx in StoragePresentationContexts:
            scp.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        try:
            server = scp.start_server(("", int(self.config.move_port or 0)), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, on_store)])
        except OSError as e:
            raise PacsError(self.server, f"cannot listen for C-MOVE on port {self.config.move_port} "
                                         f"({e.strerror or e})") from None
        try:
            with self._association([StudyRootQueryRetrieveInformationModelMove]) as assoc:
                for query in requests:
                    status = _final_status(assoc.send_c_move(query, self.config.calling_aet,
                                                             StudyRootQueryRetrieveInformationModelMove))
                    if status and status.Status == _MOVE_UNKNOWN_DESTINATION:
                        raise PacsRefused(self.server, f"C-MOVE destination {self.config.calling_aet!r} is unknown to the "
                                                       "PACS; register our AE title, host and move_port there")
                    self._check_final(status, "transfer")
        finally:
            server.shutdown()

    # ------------------------------------------------------------------ store
    def store(self, datasets: Iterable[Dataset]) -> list[tuple[str, str]]:
        items = list(datasets)
        if not items:
            return []
        syntaxes: dict[str, set[str]] = {}
        for ds in items:
            syntaxes.setdefault(str(ds.SOPClassUID), set()).add(str(ds.file_meta.TransferSyntaxUID))
        failed: list[tuple[str, str]] = []
        with self._association([], contexts=syntaxes) as assoc:
            accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
            refused = [(str(ds.SOPInstanceUID), f"{UID(str(ds.SOPClassUID)).name} in "
                        f"{UID(str(ds.file_meta.TransferSyntaxUID)).name} not accepted")
                       for ds in items if (str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) not in accepted]
            if refused:
                return refused  # nothing sent: a partial push is avoided where it can be seen in advance
            for ds in items:
                status = assoc.send_c_store(ds)
                if not status:
                    if assoc.is_aborted or not assoc.is_established:
                        raise TransferInterrupted(self.server, "connection dropped during the store; run the same "
                                                               "command again to resume")
                    failed.append((str(ds.SOPInstanceUID), "no response"))
                elif status.Status not in (0x0000, *_WARNING):
                    failed.append((str(ds.SOPInstanceUID), f"status 0x{int(status.Status):04X}"))
        return failed

    # ------------------------------------------------------------------ associations
    @contextlib.contextmanager
    def _association(self, models: Sequence[Any], *, storage: Sequence[Any] = (), ext_neg: Sequence[Any] = (),
                     handlers: Sequence[Any] = (), contexts: Mapping[str, set[str]] | None = None) -> Iterator[Association]:
        ae = AE(ae_title=self.config.calling_aet)
        _set_timeouts(ae, self.config.timeout)
        for model in models:
            ae.add_requested_context(model)
        for uid in storage:
            ae.add_requested_context(uid, ALL_TRANSFER_SYNTAXES)
        for uid, ts in (contexts or {}).items():
            for syntax in sorted(ts):
                ae.add_requested_context(uid, [syntax])
        assoc = ae.associate(str(self.config.host), int(self.config.port or 0), ae_title=str(self.config.called_aet),
                             ext_neg=list(ext_neg) or None, evt_handlers=list(handlers) or None, **self._tls_client())
        if not assoc.is_established:
            if assoc.is_rejected:
                p = assoc.acceptor.primitive
                reason = p.reason_str if p is not None else "association rejected"
                hint = "; check the AE titles" if p is not None and p.diagnostic in (3, 7) else ""
                raise PacsRefused(self.server, f"association rejected ({reason}){hint}")
            if self.config.tls:
                self._tls_failure()
            raise PacsUnreachable(self.server, "cannot connect (no association); is the server running?")
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()

    def _check_final(self, status: Dataset, what: str) -> None:
        if not status or "Status" not in status:
            if what == "transfer":
                raise TransferInterrupted(self.server, "connection dropped during the transfer; run the same command "
                                                       "again to resume")
            raise PacsRefused(self.server, f"the {what} got no answer (association aborted); check that the PACS "
                                           f"knows our AE title {self.config.calling_aet!r}")
        code = int(status.Status)
        if code == 0x0000 or code in _PENDING:
            return
        failed = status.get("NumberOfFailedSuboperations")
        more = f", {int(failed)} instance(s) failed" if failed not in (None, "") else ""
        raise PacsError(self.server, f"{what} failed (status 0x{code:04X}{more})")

    def _tls_client(self) -> dict[str, Any]:
        if not self.config.tls:
            return {}
        return {"tls_args": (self._tls_context(), str(self.config.host))}

    def _tls_context(self) -> ssl.SSLContext:
        """Verifies the server's certificate and host name against ``ca_bundle``, else the system store."""
        try:
            return ssl.create_default_context(cafile=str(self.config.ca_bundle) if self.config.ca_bundle else None)
        except (ssl.SSLError, OSError):
            raise InputError(self.config.ca_bundle, "PACS CA bundle holds no PEM certificate") from None

    def _tls_failure(self) -> None:
        """After an association that did not start over TLS: raise the handshake's failure as one line
        (pynetdicom only logs it). Returns when the handshake itself succeeds."""
        try:
            raw = socket.create_connection((str(self.config.host), int(self.config.port or 0)), timeout=self.config.timeout)
        except OSError:
            return  # no connection at all: reported as unreachable
        try:
            with self._tls_context().wrap_socket(raw, server_hostname=str(self.config.host)):
                return
        except ssl.SSLCertVerificationError as e:
            raise PacsRefused(self.server, f"TLS failed (certificate verify failed: {e.verify_message or 'untrusted'}); "
                                           "set ca_bundle (RECON_PACS_CA_BUNDLE) to the CA that signed the server's "
                                           "certificate") from None
        except OSError as e:  # ssl.SSLError included: a handshake the server broke off or did not speak
            reason = getattr(e, "reason", None) or e.strerror or type(e).__name__
            raise PacsRefused(self.server, f"TLS failed ({reason}); does the server speak DICOM TLS on this port?") from None
        finally:
            raw.close()


def _retrieve_requests(study_uid: str, wanted: Sequence[InstanceRef], available: Sequence[InstanceRef]) -> list[Dataset]:
    """The fewest retrieve identifiers that fetch ``wanted``: the study, whole series, else single images."""
    wanted_set = set(wanted)
    by_series: dict[str, list[InstanceRef]] = {}
    for ref in available:
        by_series.setdefault(ref.series_uid, []).append(ref)
    if wanted_set >= set(available):
        return [_query("STUDY", {"StudyInstanceUID": study_uid})]
    out = []
    for series_uid, refs in sorted(by_series.items()):
        mine = [r for r in refs if r in wanted_set]
        if not mine:
            continue
        if len(mine) == len(refs):
            out.append(_query("SERIES", {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid}))
        else:
            out += [_query("IMAGE", {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid,
                                     "SOPInstanceUID": r.sop_uid}) for r in mine]
    return out


def _final_status(responses: Iterable[tuple[Dataset, Any]]) -> Dataset:
    """The last status of a C-GET / C-MOVE (an empty Dataset when the association broke)."""
    status = Dataset()
    for status, _ in responses:  # noqa: B007 - only the final status matters
        pass
    return status


def _query(level: str, keys: Mapping[str, str]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for kw, value in keys.items():
        setattr(ds, kw, value)
    return ds


def _set_timeouts(ae: AE, seconds: float) -> None:
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = seconds


def _values(value: Any) -> list[Any]:
    if value in (None, ""):
        return []
    return list(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None

