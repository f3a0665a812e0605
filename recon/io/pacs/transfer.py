"""Pull a study into a folder and push a folder of DICOM files, atomically and resumably.

**Pull.** The study is assembled in a hidden sibling folder ``.<name>.partial``, one file per
instance (``<SeriesInstanceUID>/<SOPInstanceUID>.dcm``, each written under a temporary name and
renamed when complete), and the folder is renamed to its final name only when every instance the
server lists has arrived, with a manifest (:data:`MANIFEST`, no patient identifiers). After a
failure the partial folder holds only complete instances; the same pull again fetches only the
missing ones. With a :class:`~recon.io.pacs.deidentify.Deidentifier` each instance is
de-identified before it is written (file names then use the new UIDs).

**Push.** Every DICOM file under the given paths is read first (a damaged file stops the push
before anything is sent); instances the server already holds are skipped, so a rerun after a
failure sends only the rest and a push is never duplicated; afterwards the server is queried and
every instance must be listed there.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from recon.errors import InputError
from recon.io.atomic import atomic_path, atomic_write_json, is_partial, remove_stale_partials
from recon.io.pacs.client import PacsClient
from recon.io.pacs.deidentify import Deidentifier
from recon.io.pacs.errors import PacsError, PushRejected, StudyNotFound, TransferInterrupted
from recon.io.pacs.records import InstanceRef, SeriesInfo, StudyInfo, study_label

__all__ = ["MANIFEST", "find_study", "pull_study", "push_files", "PushResult", "read_manifest", "dicom_files"]

MANIFEST = "pacs-study.json"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)+$")
_ACCESSION_MAX = 16  # AccessionNumber is SH
_SKIP_SUFFIXES = {".json", ".png", ".txt", ".md", ".html", ".csv", ".npy", ".npz", ".log"}
#: Instances read and sent per store call (bounds memory).
PUSH_CHUNK = 32

#: ``progress(done, total)``: instances done so far of all there are.
Progress = Callable[[int, int], None]


def find_study(client: PacsClient, key: str) -> StudyInfo:
    """The one study whose StudyInstanceUID or AccessionNumber is ``key``.

    Raises:
        StudyNotFound: no such study (the message does not repeat ``key``: it may be an accession number).
        PacsError: several studies share the accession number.
    """
    key = key.strip()
    if not key or any(c in key for c in "*?\\"):
        raise InputError(None, "the study must be a StudyInstanceUID or an AccessionNumber, without wildcards")
    queries = [{"StudyInstanceUID": key}] if _UID.match(key) else []
    if len(key) <= _ACCESSION_MAX:
        queries.append({"AccessionNumber": key})
    for query in queries:
        found = {s.study_uid: s for s in client.find_studies(query) if s.study_uid}
        if len(found) == 1:
            return next(iter(found.values()))
        if len(found) > 1:
            labels = ", ".join(sorted(s.label for s in found.values()))
            raise PacsError(client.server, f"{len(found)} studies share that AccessionNumber ({labels}); "
                                           "give the StudyInstanceUID")
    raise StudyNotFound(client.server, "no study with that StudyInstanceUID or AccessionNumber")


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a completed pull, or None."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def pull_study(
    client: PacsClient,
    study: StudyInfo,
    dest: str | Path,
    *,
    deidentifier: Deidentifier | None = None,
    progress: Progress | None = None,
) -> Path:
    """Fetch every instance of ``study`` into the folder ``dest`` (see the module docstring).

    A ``dest`` already holding this study's completed pull is returned as it is.

    Raises:
        StudyNotFound: the study lists no instances.
        TransferInterrupted: the connection dropped or instances were missing at the end (rerun to resume).
        InputError: ``dest`` exists and holds something else.
    """
    dest = Path(dest)
    done = read_manifest(dest)
    label = study_label(deidentifier.uid(study.study_uid)) if deidentifier is not None else study.label
    complete = done is not None and done.get("study") == label and done.get("deidentified") == (deidentifier is not None)
    if complete and not (deidentifier is not None and deidentifier.records):
        return dest
    if not complete and dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InputError(dest, "exists and is not a pull of this study; choose another folder or remove it")
    wanted = client.list_instances(study.study_uid)
    if not wanted:
        raise StudyNotFound(client.server, f"{study.label} lists no instances")
    if complete:
        _record_mapping(client, study, wanted, deidentifier)  # type: ignore[arg-type]
        return dest
    work = dest.with_name(f".{dest.name}.partial")
    work.mkdir(parents=True, exist_ok=True)
    for sub in [work, *[p for p in work.iterdir() if p.is_dir()]]:
        remove_stale_partials(sub)

    def target(series_uid: str, sop_uid: str) -> Path:
        if deidentifier is not None:
            series_uid, sop_uid = deidentifier.uid(series_uid), deidentifier.uid(sop_uid)
        return work / series_uid / f"{sop_uid}.dcm"

    missing = [r for r in wanted if not target(r.series_uid, r.sop_uid).is_file()]
    count = [len(wanted) - len(missing)]
    if progress is not None:
        progress(count[0], len(wanted))

    def sink(ds: Dataset) -> None:
        path = target(str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
        if deidentifier is not None:
            deidentifier.apply(ds)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        count[0] += 1
        if progress is not None:
            progress(count[0], len(wanted))

    client.retrieve(study.study_uid, missing, sink)
    if deidentifier is not None and deidentifier.records:
        _record_mapping(client, study, wanted, deidentifier)
    still = [r for r in wanted if not target(r.series_uid, r.sop_uid).is_file()]
    if still:
        raise TransferInterrupted(client.server, f"{study.label}: {len(wanted) - len(still)} of {len(wanted)} instances "
                                                 "arrived; run the same command again to resume")
    series = client.list_series(study.study_uid)
    manifest = {
        "study": label,
        "study_uid": deidentifier.uid(study.study_uid) if deidentifier is not None else study.study_uid,
        "server": client.server,
        "deidentified": deidentifier is not None,
        "instances": len(wanted),
        "series": [
            {"series_uid": deidentifier.uid(s.series_uid) if deidentifier else s.series_uid, "modality": s.modality,
             "number": s.number, "description": "" if deidentifier else s.description,
             "instances": sum(1 for r in wanted if r.series_uid == s.series_uid)}
            for s in series
        ],
    }
    atomic_write_json(work / MANIFEST, manifest)
    if dest.exists():
        shutil.rmtree(dest)  # empty (checked above)
    work.rename(dest)
    return dest


def _record_mapping(client: PacsClient, study: StudyInfo, wanted: Sequence[InstanceRef], deidentifier: Deidentifier) -> None:
    """Complete a recording de-identifier's mapping for instances that were not fetched now: their
    UIDs (from the listing) and, when nothing was fetched, the patient (from one instance read again)."""
    for ref in wanted:
        for uid in (study.study_uid, ref.series_uid, ref.sop_uid):
            deidentifier.uid(uid)
    if not deidentifier.mapping()["patients"] and wanted:
        client.retrieve(study.study_uid, list(wanted[:1]), deidentifier.apply)


# --------------------------------------------------------------------------- push
@dataclass(frozen=True)
class PushResult:
    """What a push left on the server: the study, the series it now lists, instances sent / skipped."""

    study_uid: str
    series: tuple[SeriesInfo, ...]
    sent: int
    skipped: int

    @property
    def label(self) -> str:
        return study_label(self.study_uid)


def dicom_files(paths: Sequence[str | Path]) -> list[Path]:
    """The DICOM files under ``paths`` (folders searched recursively; hidden and temporary files skipped)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            out.append(p)
            continue
        if not p.is_dir():
            raise InputError(p, "no such file or directory")
        out += [f for f in sorted(p.rglob("*")) if f.is_file() and not is_partial(f)
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
                and f.suffix.lower() not in _SKIP_SUFFIXES and f.name != "DICOMDIR"]
    if not out:
        raise InputError(Path(paths[0]) if paths else None, "no DICOM files to push")
    return out


def push_files(
    client: PacsClient,
    paths: Sequence[str | Path],
    *,
    study_uid: str | None = None,
    deidentifier: Deidentifier | None = None,
    progress: Progress | None = None,
) -> PushResult:
    """Store every DICOM file under ``paths`` on the server and check that it lists them all.

    Args:
        study_uid: when given, every file must belong to this study (a derived series going back into
            its source study).
        deidentifier: de-identify each instance before it is sent (research export).

    Raises:
        InputError: a file that is not DICOM, files of several studies, or of another study than ``study_uid``.
        PushRejected: the server refused instances (nothing else of the push is retried; a rerun sends
            what is missing).
        PacsError: after the push the server does not list every instance.
    """
    files = dicom_files(paths)
    headers = [(f, _header(f)) for f in files]
    studies = {str(h.StudyInstanceUID) for _, h in headers}
    if len(studies) != 1:
        raise InputError(Path(paths[0]), f"files of {len(studies)} studies; push one study at a time")
    source_study = next(iter(studies))
    if study_uid is not None and source_study != study_uid:
        raise InputError(Path(paths[0]), f"belongs to {study_label(source_study)}, not to {study_label(study_uid)}")

    def mapped(uid: str) -> str:
        return deidentifier.uid(uid) if deidentifier is not None else uid

    target_study = mapped(source_study)
    expected = {mapped(str(h.SOPInstanceUID)) for _, h in headers}
    on_server = {r.sop_uid for r in client.list_instances(target_study)}
    pending = [f for f, h in headers if mapped(str(h.SOPInstanceUID)) not in on_server]
    done = len(files) - len(pending)
    if progress is not None:
        progress(done, len(files))
    failed: list[tuple[str, str]] = []
    for start in range(0, len(pending), PUSH_CHUNK):
        chunk = pending[start : start + PUSH_CHUNK]
        failed += client.store(_datasets(chunk, deidentifier))
        done += len(chunk)
        if progress is not None:
            progress(done, len(files))
    if failed:
        raise PushRejected(client.server, f"{len(failed)} of {len(pending)} instances refused ({failed[0][1]}); "
                                          "fix the cause and push again: stored instances are not sent twice")
    listed = {r.sop_uid for r in client.list_instances(target_study)}
    if not expected <= listed:
        raise PushRejected(client.server, f"{len(expected - listed)} of {len(expected)} instances not stored: the server "
                                          f"answered but {study_label(target_study)} does not list them (discarded by "
                                          "its policy?)")
    mine = {mapped(str(h.SeriesInstanceUID)) for _, h in headers}
    series = tuple(s for s in client.list_series(target_study) if s.series_uid in mine)
    return PushResult(study_uid=target_study, series=series, sent=len(pending), skipped=len(files) - len(pending))


def _header(path: Path) -> Dataset:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as e:  # pydicom raises assorted errors on damaged files
        raise InputError(path, f"not a readable DICOM file ({type(e).__name__})") from None
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        if not ds.get(kw):
            raise InputError(path, f"has no {kw}; not a storable DICOM instance")
    return ds


def _datasets(files: Sequence[Path], deidentifier: Deidentifier | None) -> Iterator[Dataset]:
    for f in files:
        ds = pydicom.dcmread(f)
        if deidentifier is not None:
            deidentifier.apply(ds)
        yield ds

