"""A DICOMweb PACS: QIDO-RS to search, WADO-RS to retrieve, STOW-RS to store.

Built on ``dicomweb-client`` (the DICOMweb client of the Imaging Data Commons / highdicom
authors), which speaks the three services over a ``requests`` session; the session carries basic
authentication (from the environment, the config file or ``~/.netrc``) and TLS verification
(``https://`` URLs: the configured CA bundle, else ``REQUESTS_CA_BUNDLE`` or the certifi store).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

from recon.io.pacs.client import Sink
from recon.io.pacs.config import PacsConfig
from recon.io.pacs.errors import PacsError, PacsRefused, PacsUnreachable, PushRejected, StudyNotFound, TransferInterrupted
from recon.io.pacs.records import InstanceRef, SeriesInfo, StudyInfo, study_label

__all__ = ["DicomWebPacs"]

_STUDY_FIELDS = ("StudyDate", "StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
                 "NumberOfStudyRelatedInstances")
_SERIES_FIELDS = ("Modality", "SeriesNumber", "SeriesDescription", "NumberOfSeriesRelatedInstances")
#: Instances sent per STOW-RS request.
STORE_BATCH = 16
#: QIDO-RS results per page, and the most pages read (a study of 500,000 instances).
PAGE_SIZE = 1000
MAX_PAGES = 500
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


class DicomWebPacs:
    """A DICOMweb server at ``config.url``."""

    def __init__(self, config: PacsConfig):
        self.config = config
        self.server = config.server
        session = requests.Session()
        if config.username:
            session.auth = (config.username, config.password or "")
        if config.ca_bundle:
            session.mount("https://", _VerifyingAdapter(str(config.ca_bundle)))
        self._session = session
        self._client = DICOMwebClient(str(config.url), session=session, timeout=config.timeout)
        # one attempt per request: a failure is reported at once and the command resumes when rerun
        self._client.set_http_retry_params(retry=False)
        host = urlsplit(str(config.url)).hostname or ""
        if urlsplit(str(config.url)).scheme == "http" and host not in _LOOPBACK:
            print(f"recon: warning: PACS {self.server} is plain HTTP; use https:// where the server offers TLS",
                  file=sys.stderr)

    def __enter__(self) -> DicomWebPacs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    # ------------------------------------------------------------------ search
    def find_studies(self, filters: Mapping[str, str]) -> list[StudyInfo]:
        with self._errors("search"):
            found = _paged(lambda **page: self._client.search_for_studies(
                search_filters=dict(filters), fields=list(_STUDY_FIELDS), **page), "0020000D")
        out = []
        for item in found:
            ds = _dataset(item)
            out.append(StudyInfo(
                study_uid=str(ds.get("StudyInstanceUID", "")), date=str(ds.get("StudyDate", "") or ""),
                description=str(ds.get("StudyDescription", "") or ""), modalities=_multi(ds.get("ModalitiesInStudy")),
                n_series=_int(ds.get("NumberOfStudyRelatedSeries")), n_instances=_int(ds.get("NumberOfStudyRelatedInstances")),
            ))
        return out

    def list_series(self, study_uid: str) -> list[SeriesInfo]:
        with self._errors("search", study_uid):
            found = _paged(lambda **page: self._client.search_for_series(
                study_instance_uid=study_uid, fields=list(_SERIES_FIELDS), **page), "0020000E")
        out = []
        for item in found:
            ds = _dataset(item)
            out.append(SeriesInfo(
                series_uid=str(ds.get("SeriesInstanceUID", "")), modality=str(ds.get("Modality", "") or ""),
                number=_int(ds.get("SeriesNumber")), description=str(ds.get("SeriesDescription", "") or ""),
                n_instances=_int(ds.get("NumberOfSeriesRelatedInstances")),
            ))
        return out

    def list_instances(self, study_uid: str, series_uid: str | None = None) -> list[InstanceRef]:
        with self._errors("search", study_uid):
            found = _paged(lambda **page: self._client.search_for_instances(
                study_instance_uid=study_uid, series_instance_uid=series_uid, fields=["SOPClassUID"], **page), "00080018")
        refs = []
        for item in found:
            ds = _dataset(item)
            refs.append(InstanceRef(str(ds.get("SeriesInstanceUID", "")), str(ds.get("SOPInstanceUID", "")),
                                    str(ds.get("SOPClassUID", "") or "")))
        return sorted(refs)

    # ------------------------------------------------------------------ transfer
    def retrieve(self, study_uid: str, wanted: Sequence[InstanceRef], sink: Sink) -> None:
        for ref in wanted:
            with self._errors("transfer", study_uid):
                ds = self._client.retrieve_instance(study_uid, ref.series_uid, ref.sop_uid,
                                                    media_types=(("application/dicom", "*"),))
            sink(ds)

    def store(self, datasets: Iterable[Dataset]) -> list[tuple[str, str]]:
        failed: list[tuple[str, str]] = []
        batch: list[Dataset] = []
        for ds in datasets:
            batch.append(ds)
            if len(batch) >= STORE_BATCH:
                failed += self._store_batch(batch)
                batch = []
        if batch:
            failed += self._store_batch(batch)
        return failed

    def _store_batch(self, batch: list[Dataset]) -> list[tuple[str, str]]:
        try:
            with self._errors("store"):
                response = self._client.store_instances(batch)
        except PushRejected as err:
            return [(str(ds.SOPInstanceUID), err.problem) for ds in batch]
        failed = []
        for item in response.get("FailedSOPSequence", None) or []:
            reason = item.get("FailureReason")
            failed.append((str(item.get("ReferencedSOPInstanceUID", "")),
                           f"failure reason 0x{int(reason):04X}" if reason is not None else "refused"))
        return failed

    # ------------------------------------------------------------------ errors
    @contextlib.contextmanager
    def _errors(self, what: str, study_uid: str | None = None) -> Iterator[None]:
        """Translate ``requests`` failures into one-line :class:`PacsError` s."""
        try:
            yield
        except requests.exceptions.SSLError as e:
            raise PacsRefused(self.server, f"TLS failed ({_reason(e)}); set ca_bundle for a private CA") from None
        except requests.exceptions.Timeout:
            raise PacsUnreachable(self.server, f"no answer within {self.config.timeout:g} s") from None
        except requests.exceptions.ConnectionError as e:
            if _refused(e) or what == "search":
                raise PacsUnreachable(self.server, f"cannot connect ({_reason(e)}); is the server running?") from None
            raise TransferInterrupted(self.server, f"connection dropped during the {what} ({_reason(e)}); "
                                                   "run the same command again to resume") from None
        except requests.exceptions.ChunkedEncodingError as e:
            raise TransferInterrupted(self.server, f"connection dropped during the {what} ({_reason(e)}); "
                                                   "run the same command again to resume") from None
        except requests.exceptions.HTTPError as e:
            raise _http_error(self.server, e, what, study_uid) from None
        except (ValueError, OSError) as e:
            if isinstance(e, PacsError):
                raise
            # a truncated multipart body or an undecodable part: the transfer did not complete
            raise TransferInterrupted(self.server, f"incomplete response during the {what} ({_reason(e)}); "
                                                   "run the same command again to resume") from None


class _VerifyingAdapter(requests.adapters.HTTPAdapter):
    """Sends with the configured TLS trust. (``Session.verify`` alone loses to ``REQUESTS_CA_BUNDLE``
    in the environment, which would silently replace the configured CA bundle.)"""

    def __init__(self, verify: str):
        super().__init__()
        self._verify = verify

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["verify"] = self._verify
        return super().send(request, **kwargs)


def _paged(search: Callable[..., list[dict[str, Any]]], key_tag: str) -> list[dict[str, Any]]:
    """Every result of a QIDO-RS search, page by page with an explicit ``limit`` and ``offset``.

    Servers differ in how they page (some ignore an offset without a limit), so pages are requested
    with both, results are told apart by their UID and the loop ends on a short page or a page with
    nothing new, and after :data:`MAX_PAGES` pages at most.
    """
    found: dict[str, dict[str, Any]] = {}
    for n in range(MAX_PAGES):
        page = search(limit=PAGE_SIZE, offset=n * PAGE_SIZE)
        new = 0
        for item in page:
            key = str((item.get(key_tag) or {}).get("Value", [""])[0])
            if key not in found:
                found[key] = item
                new += 1
        if len(page) < PAGE_SIZE or new == 0:
            break
    return list(found.values())


def _http_error(server: str, e: requests.exceptions.HTTPError, what: str, study_uid: str | None) -> PacsError:
    code = e.response.status_code if e.response is not None else 0
    if code in (401, 403):
        return PacsRefused(server, f"credentials refused (HTTP {code}); set RECON_PACS_USERNAME/RECON_PACS_PASSWORD, "
                                   "the config file or ~/.netrc")
    if code == 404 and study_uid is not None:
        return StudyNotFound(server, f"{study_label(study_uid)} not found (HTTP 404)")
    if code == 404:
        return PacsRefused(server, "no DICOMweb service at this URL (HTTP 404); give the base URL, e.g. .../dicom-web")
    if what == "store":
        return PushRejected(server, f"store refused (HTTP {code})")
    return PacsError(server, f"{what} failed (HTTP {code})")


def _refused(e: BaseException) -> bool:
    """True when the connection was never made (refused, unknown host), not dropped midway."""
    seen: set[int] = set()
    stack: list[Any] = [e]
    while stack:
        x = stack.pop()
        if not isinstance(x, BaseException) or id(x) in seen:
            continue
        seen.add(id(x))
        name = type(x).__name__
        if name in ("NewConnectionError", "NameResolutionError", "ConnectionRefusedError"):
            return True
        stack.extend([getattr(x, "reason", None), x.__cause__, x.__context__, *getattr(x, "args", ())])
    return False


def _reason(e: BaseException) -> str:
    """A short reason without URLs (which could carry query parameters)."""
    text = str(e)
    for marker in ("Connection refused", "Connection reset by peer", "Connection aborted", "Remote end closed",
                   "IncompleteRead", "timed out", "Name or service not known", "certificate verify failed",
                   "Connection broken"):
        if marker.lower() in text.lower():
            return marker.lower()
    return type(e).__name__


def _dataset(item: dict[str, Any]) -> Dataset:
    return Dataset.from_json(item)


def _multi(value: Any) -> tuple[str, ...]:
    if value in (None, ""):
        return ()
    if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") and not isinstance(value, str):
        return tuple(str(v) for v in value)
    return tuple(str(value).split("\\"))


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
