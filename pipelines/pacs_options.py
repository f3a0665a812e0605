"""The PACS options of the pipeline commands: pull the input from the PACS, push the outputs back.

``--from-pacs STUDY`` (a StudyInstanceUID or AccessionNumber) stands in for the DICOM folder: the
study is pulled into the cache (``RECON_PACS_CACHE``, default ``$XDG_CACHE_HOME/recon/pacs``, i.e.
``~/.cache/recon/pacs``) under its hash label, once; later runs reuse it, and an interrupted pull
resumes. ``--deidentify`` pulls a de-identified copy instead (PS3.15 Basic Profile; see
:mod:`recon.io.pacs.deidentify`), ``--deid-map FILE`` also writes the mapping back to the original
identifiers. ``--push`` stores the derived series on the PACS, checks that the server lists them in
the source study next to the images they reference, and prints what it found.

What is printed names the study by its hash label only: never a patient name, ID, birth date or an
accession number (which ``--from-pacs`` may have been given).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from recon.errors import InputError

if TYPE_CHECKING:
    from recon.io.pacs import PacsClient, PushResult, StudyInfo

# The PACS libraries (pynetdicom, dicomweb-client, dicom-anonymizer) are imported by the functions
# that talk to a PACS, so the commands that take these options start without loading them.

__all__ = ["add_pacs_options", "check_push", "resolve_input", "pull_into", "push_outputs", "cache_dir", "progress_bar",
           "ENV_CACHE"]

ENV_CACHE = "RECON_PACS_CACHE"


def add_pacs_options(parser: argparse.ArgumentParser, *, pull: bool = True, push: bool = True) -> None:
    """Add ``--from-pacs``, ``--deidentify``, ``--deid-map`` (with ``pull``) and ``--push`` (with ``push``)."""
    g = parser.add_argument_group("PACS (server from RECON_PACS_URL, RECON_PACS_DIMSE or ~/.config/recon/pacs.toml)")
    if pull:
        g.add_argument("--from-pacs", metavar="STUDY", default=None,
                       help="pull this study (StudyInstanceUID or AccessionNumber) from the PACS instead of a DICOM folder")
        g.add_argument("--deidentify", action="store_true",
                       help="use a de-identified copy of the pulled study (PS3.15 Basic Profile, shifted dates)")
        g.add_argument("--deid-map", type=Path, default=None, metavar="FILE",
                       help="with --deidentify: also write the mapping to the original identifiers to FILE")
    if push:
        g.add_argument("--push", action="store_true",
                       help="store the derived series on the PACS, in the source study, and check the server lists them")


def cache_dir() -> Path:
    """Where ``--from-pacs`` keeps pulled studies."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    base = Path(os.environ["XDG_CACHE_HOME"]) if os.environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "recon" / "pacs"


def progress_bar(desc: str, enabled: bool = True) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback drawing a tqdm bar on stderr (created on the first call)."""
    from tqdm import tqdm

    state: dict[str, tqdm] = {}

    def update(done: int, total: int) -> None:
        if not enabled:
            return
        if "bar" not in state:
            state["bar"] = tqdm(total=total, initial=done, unit="instance", desc=desc, file=sys.stderr)
        bar = state["bar"]
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def pull_into(key: str, out: Path | None = None, *, server: str | None = None, deidentify: bool = False,
              deid_map: Path | None = None, progress: bool = True) -> Path:
    """Pull the study ``key`` into ``out`` (default: the cache folder named by the study's label),
    resuming or reusing what is there; returns the folder."""
    from recon.io.pacs import Deidentifier, find_study, load_key, open_client, pull_study, resolve_config, study_label

    if deid_map is not None and not deidentify:
        raise InputError(deid_map, "--deid-map needs --deidentify")
    deid = Deidentifier(load_key(), record=deid_map is not None) if deidentify else None
    with open_client(resolve_config(server)) as client:
        study = find_study(client, key)
        label = study_label(deid.uid(study.study_uid)) if deid is not None else study.label
        folder = pull_study(client, study, out if out is not None else cache_dir() / label, deidentifier=deid,
                            progress=progress_bar(f"pull {label}", progress))
        _say_pulled(client, study, folder)
    if deid is not None and deid_map is not None:
        deid.write_mapping(deid_map)
        print(f"wrote the de-identification mapping to {deid_map} (it re-identifies the study: keep it safe)")
    return folder


def _say_pulled(client: PacsClient, study: StudyInfo, folder: Path) -> None:
    from recon.io.pacs import read_manifest

    manifest = read_manifest(folder) or {}
    series = manifest.get("series", [])
    print(f"pulled {manifest.get('study', study.label)} ({manifest.get('instances', '?')} instances, "
          f"{len(series)} series) from PACS {client.server} -> {folder}")


def resolve_input(args: argparse.Namespace, given: Path | None, *, series_uid: str | None = None) -> Path:
    """The DICOM folder a command reads: ``given``, or the study of ``--from-pacs`` pulled into the cache.

    A pulled study with several image series resolves to the folder of ``series_uid`` when given,
    else to the one series of the command's modality (``args.modality``) when there is exactly one.
    """
    key = getattr(args, "from_pacs", None)
    if key is None:
        if getattr(args, "deidentify", False) or getattr(args, "deid_map", None) is not None:
            raise InputError(given, "--deidentify applies to --from-pacs; export a folder with 'recon pacs push --deidentify'")
        if given is None:
            raise InputError(None, "give a DICOM folder or --from-pacs STUDY")
        return given
    if given is not None:
        raise InputError(given, "give a DICOM folder or --from-pacs, not both")
    folder = pull_into(key, deidentify=bool(getattr(args, "deidentify", False)),
                       deid_map=getattr(args, "deid_map", None), progress=not getattr(args, "no_progress", False))
    return _series_folder(folder, series_uid, getattr(args, "modality", None))


def _series_folder(folder: Path, series_uid: str | None, modality: str | None) -> Path:
    from recon.io.pacs import read_manifest

    manifest = read_manifest(folder) or {}
    series = manifest.get("series", [])
    if series_uid is not None:
        if not (folder / series_uid).is_dir():
            remapped = " (de-identified: series UIDs are new, see pacs-study.json)" if manifest.get("deidentified") else ""
            raise InputError(folder, f"series {series_uid} is not in {manifest.get('study', 'the study')}{remapped}")
        return folder / series_uid
    if len(series) == 1:
        return folder / series[0]["series_uid"]
    fits = [s for s in series if modality is None or str(s.get("modality", "")).lower() == modality.lower()]
    if len(fits) == 1:
        return folder / fits[0]["series_uid"]
    listing = "; ".join(f"{s['series_uid']} ({s.get('modality', '?')}, {s.get('instances', '?')} instances)" for s in series)
    raise InputError(folder, f"{len(fits)} series fit; choose one with --series-uid: {listing}")


def check_push(args: argparse.Namespace) -> None:
    """With ``--push``: fail before any work when no PACS is configured (nothing is sent yet)."""
    if args.push:
        from recon.io.pacs import resolve_config

        resolve_config()


def push_outputs(args: argparse.Namespace, folders: Sequence[Path], *, progress: bool = True) -> list[PushResult]:
    """With ``--push``: store each existing folder of derived DICOM on the PACS and check where it landed.

    Each series must belong to a study the server already holds (the source study) and every image
    it references (Source Image Sequence) must be listed in that study; otherwise the push is refused
    before anything is sent, or reported after it.
    """
    if not args.push:
        return []
    from recon.io.pacs import open_client, push_files, resolve_config, study_label
    from recon.io.pacs.errors import PacsError

    present = [Path(f) for f in folders if Path(f).is_dir() and any(Path(f).iterdir())]
    if not present:
        raise InputError(folders[0] if folders else None, "nothing to push: no derived DICOM series was written")
    results = []
    with open_client(resolve_config()) as client:
        for folder in present:
            study_uid, referenced = _study_and_references(folder)
            on_server = {r.sop_uid for r in client.list_instances(study_uid)}
            if not on_server:
                raise PacsError(client.server, f"{folder}: its study {study_label(study_uid)} is not on the PACS; a derived "
                                               "series is pushed into its source study only")
            missing = referenced - on_server
            if missing:
                raise PacsError(client.server, f"{folder}: {len(missing)} of the {len(referenced)} source images it "
                                               f"references are not in {study_label(study_uid)} on the PACS")
            result = push_files(client, [folder], study_uid=study_uid,
                                progress=progress_bar(f"push {folder.name}", progress))
            results.append(result)
            _say_pushed(client, folder, result, len(referenced))
    return results


def _study_and_references(folder: Path) -> tuple[str, set[str]]:
    """The one StudyInstanceUID of the files in ``folder`` and the SOP Instance UIDs they reference."""
    import pydicom

    from recon.io.pacs import dicom_files

    studies: set[str] = set()
    referenced: set[str] = set()
    for f in dicom_files([folder]):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        studies.add(str(ds.get("StudyInstanceUID", "")))
        for item in ds.get("SourceImageSequence", None) or []:
            referenced.add(str(item.get("ReferencedSOPInstanceUID", "")))
    if len(studies) != 1:
        raise InputError(folder, f"holds files of {len(studies)} studies; expected one derived series")
    return next(iter(studies)), referenced - {""}


def _say_pushed(client: PacsClient, folder: Path, result: PushResult, n_refs: int) -> None:
    all_series = client.list_series(result.study_uid)
    for s in result.series:
        print(f"pushed {folder.name}: series {s.series_uid} ({s.n_instances} instances, {s.description!r}) "
              f"is in {result.label} on PACS {client.server}, next to {len(all_series) - 1} other series; "
              f"it references {n_refs} source images there"
              + (f" ({result.skipped} already stored)" if result.skipped else ""))
