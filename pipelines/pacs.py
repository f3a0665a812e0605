"""``recon pacs find|pull|push``: search the PACS, pull a study into a folder, push DICOM files.

The server comes from ``--pacs`` (a DICOMweb base URL or ``host:port:AET``, never with
credentials), ``RECON_PACS_URL``, ``RECON_PACS_DIMSE`` or ``~/.config/recon/pacs.toml`` (see
:mod:`recon.io.pacs.config`). Studies are shown by their hash label, UID, date, modalities and
counts; patient names, IDs, birth dates and accession numbers are never printed. The PACS
libraries are imported when an action runs, not when the command line is built.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.pacs_options import progress_bar, pull_into
from recon.errors import InputError

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``pacs`` subcommand with its ``find``, ``pull`` and ``push`` actions."""
    p = subparsers.add_parser(
        "pacs",
        help="find, pull and push studies on a PACS (DICOMweb or DIMSE)",
        description="Search a PACS, pull a study into a folder (atomic, resumable), push DICOM files (verified). "
                    "Server: --pacs, RECON_PACS_URL, RECON_PACS_DIMSE or ~/.config/recon/pacs.toml; "
                    "credentials only from the environment, the config file or ~/.netrc.",
    )
    sub = p.add_subparsers(dest="pacs_command", metavar="ACTION", required=True)

    find = sub.add_parser("find", help="list studies matching a StudyInstanceUID / AccessionNumber or filters")
    find.add_argument("study", nargs="?", default=None, help="StudyInstanceUID or AccessionNumber")
    find.add_argument("--modality", default=None, help="modality in study, e.g. CT")
    find.add_argument("--date", default=None, help="study date or range, e.g. 20240101-20240131")
    _server_option(find)

    pull = sub.add_parser("pull", help="pull a study into a folder (atomic: a hidden partial folder, then renamed)")
    pull.add_argument("study", help="StudyInstanceUID or AccessionNumber")
    pull.add_argument("--out", type=Path, required=True, help="folder to create (one subfolder per series)")
    _deid_options(pull)
    _server_option(pull)

    push = sub.add_parser("push", help="store DICOM files (folders searched recursively) and check the server lists them")
    push.add_argument("paths", nargs="+", type=Path, help="DICOM files or folders of one study")
    _deid_options(push)
    _server_option(push)
    p.set_defaults(func=run)


def _server_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pacs", default=None, metavar="SERVER",
                   help="DICOMweb base URL or host:port:AET (default: RECON_PACS_URL / RECON_PACS_DIMSE / config file)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _deid_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--deidentify", action="store_true",
                   help="de-identify every instance (PS3.15 Basic Profile, UIDs remapped, dates shifted per patient)")
    p.add_argument("--deid-map", type=Path, default=None, metavar="FILE",
                   help="with --deidentify: also write the mapping to the original identifiers to FILE")


def run(args: argparse.Namespace) -> int:
    """Run ``recon pacs ACTION`` from parsed arguments."""
    return {"find": _find, "pull": _pull, "push": _push}[args.pacs_command](args)


def _find(args: argparse.Namespace) -> int:
    from recon.io.pacs import find_study, open_client, resolve_config

    with open_client(resolve_config(args.pacs)) as client:
        if args.study is not None:
            studies = [find_study(client, args.study)]
        else:
            filters = {"ModalitiesInStudy": args.modality or "", "StudyDate": args.date or ""}
            filters = {k: v for k, v in filters.items() if v}
            if not filters:
                raise InputError(None, "give a study, --modality or --date (listing every study is refused)")
            studies = client.find_studies(filters)
        for s in studies:
            counts = f"{s.n_series if s.n_series is not None else '?'} series, "
            counts += f"{s.n_instances if s.n_instances is not None else '?'} instances"
            print(f"{s.label}  {s.study_uid}  {s.date or '-'}  {'/'.join(s.modalities) or '-'}  {counts}"
                  + (f"  {s.description!r}" if s.description else ""))
        print(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} on PACS {client.server}")
    return 0


def _pull(args: argparse.Namespace) -> int:
    pull_into(args.study, Path(args.out), server=args.pacs, deidentify=args.deidentify, deid_map=args.deid_map,
              progress=not args.no_progress)
    return 0


def _push(args: argparse.Namespace) -> int:
    from recon.io.pacs import Deidentifier, load_key, open_client, push_files, resolve_config

    if args.deid_map is not None and not args.deidentify:
        raise InputError(args.deid_map, "--deid-map needs --deidentify")
    deid = Deidentifier(load_key(), record=args.deid_map is not None) if args.deidentify else None
    with open_client(resolve_config(args.pacs)) as client:
        result = push_files(client, args.paths, deidentifier=deid, progress=progress_bar("push", not args.no_progress))
        for s in result.series:
            print(f"series {s.series_uid} ({s.n_instances} instances) is in {result.label} on PACS {client.server}")
        print(f"pushed {result.sent} instances ({result.skipped} already stored) to {result.label}")
    if deid is not None and args.deid_map is not None:
        deid.write_mapping(args.deid_map)
        print(f"wrote the de-identification mapping to {args.deid_map} (it re-identifies the export: keep it safe)")
    return 0

