"""``recon batch``: ``recon simulate`` or ``recon reconstruct`` over many studies on a Dask cluster.

::

    recon batch reconstruct STUDIES --out OUT [reconstruct's options] (--workers N | --scheduler tcp://HOST:PORT)

Every study is one Dask task that runs the single command itself - its own parser and its own
``run`` - on ``STUDY --out OUT/<name> [the options]``, so each ``OUT/<name>/`` is exactly what
``recon simulate`` / ``recon reconstruct`` writes, every option of the single command works, and
there is no second implementation to drift. The single commands write each file atomically and
resume where they stopped (``recon reconstruct``: per slice), which is what makes a task safe to
run again: a worker killed mid-study leaves only complete slices, the scheduler runs the task
again on another worker, and that run reconstructs only the missing slices.

Studies already complete (``recon reconstruct``: ``report.json`` written; ``recon simulate``: the
output folder, which appears only when complete) are skipped unless ``--overwrite`` is given, so
rerunning a batch finishes what is missing. ``OUT/batch_report.json`` holds per study the status
(``ok`` / ``failed``), seconds and the error line; a failed study does not stop the others, and the
batch exits non-zero naming every failed study.

Threads: one task runs at a time per worker (``threads_per_worker=1`` for Dask) and the task sizes
torch, BLAS/OpenMP and the Radon backends (:func:`operators.cpu.apply_thread_budget`) to
``--threads``, else to the cores divided by the workers sharing them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import shutil
import sys
import time
import traceback
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from operators.cpu import apply_thread_budget, available_cores, default_threads
from pipelines import reconstruct_dir, simulate
from pipelines.batch_studies import MANIFEST_PATH_COLUMNS, BatchStudy, find_studies
from recon.errors import InputError, one_line
from recon.io.atomic import atomic_write_json, ensure_output_dir

__all__ = ["BATCH_COMMANDS", "REPORT_FILE", "command_parser", "is_complete", "open_client", "register", "run",
           "run_batch", "run_study", "task_threads"]

#: The single commands a batch runs, by name.
BATCH_COMMANDS: dict[str, ModuleType] = {"simulate": simulate, "reconstruct": reconstruct_dir}
REPORT_FILE = "batch_report.json"
DEFAULT_RETRIES = 2
EXIT_FAILED_STUDIES = 1

#: Errors of bad input, as the ``recon`` command reports them: the same study fails the same way
#: on any worker, so such a study is reported failed at once rather than retried.
_INPUT_ERRORS = (InputError, ValueError, FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError)


# --------------------------------------------------------------------------------- one study
def command_parser(command: str) -> argparse.ArgumentParser:
    """The parser of ``recon COMMAND`` as the single command has it (``--threads`` included).

    Built from the command module's own ``register``, so a batch accepts exactly the options the
    single command does.
    """
    from operators.cpu import add_threads_argument

    module = BATCH_COMMANDS.get(command)
    if module is None:
        raise InputError(command, f"unknown batch command; expected one of {', '.join(BATCH_COMMANDS)}")
    sub = argparse.ArgumentParser(prog="recon batch").add_subparsers()
    module.register(sub)
    parser = sub.choices[command]
    if not any(a.dest == "threads" for a in parser._actions):
        add_threads_argument(parser)
    return parser


def study_argv(parser: argparse.ArgumentParser, study: Path, out: Path, options: Sequence[str]) -> list[str]:
    """The single command's arguments for one study: ``STUDY [options] --out OUT/<name>``.

    Progress bars are the batch's (one over all studies), so ``--no-progress`` is added.
    """
    argv = [str(study), *options, "--out", str(out)]
    if "--no-progress" in parser._option_string_actions and "--no-progress" not in options:
        argv.append("--no-progress")
    return argv


def is_complete(command: str, out: Path) -> bool:
    """Whether the single command has finished ``out`` (then a batch without ``--overwrite`` skips it).

    ``recon reconstruct`` writes ``report.json`` last; ``recon simulate`` assembles the study
    beside ``out`` and renames it into place when complete.
    """
    if command == "reconstruct":
        return (out / reconstruct_dir.REPORT_FILE).is_file()
    return out.is_dir() and any(out.iterdir())


def task_threads(threads: int | None) -> tuple[int, str | None]:
    """(threads for this task, the worker's address).

    ``threads`` where given; else this machine's share for one worker thread: the cores this
    process may use divided by the worker threads of all workers on this machine, as the
    scheduler lists them when the task starts (so a restarted worker counts too). Dask's
    ``OMP_NUM_THREADS=1`` for worker processes says nothing about the cores a task may use, and
    workers that share a machine must not each take all of it.
    """
    try:
        from distributed import get_client, get_worker

        worker = get_worker()
    except ValueError:  # not on a worker: called directly
        return (threads or default_threads()), None
    if threads:
        return threads, worker.address
    try:
        listed = get_client().scheduler_info(n_workers=-1).get("workers", {}).values()
        here = sum(int(w.get("nthreads", 1)) for w in listed if w.get("host") == worker.ip)
    except Exception:  # the scheduler cannot be asked: count this worker alone
        here = 0
    return max(1, available_cores() // max(1, here, worker.state.nthreads)), worker.address


def run_study(command: str, argv: list[str], threads: int | None = None) -> dict[str, Any]:
    """Run ``recon COMMAND argv`` in this (worker) process; the Dask task of one study.

    ``threads``: the task's CPU threads (None: its machine's share, :func:`task_threads`).

    Bad input (the errors the ``recon`` command reports as one line) gives a ``failed`` result
    at once; anything else is raised, so that Dask retries the task (``retries=``) before the
    batch reports it. The command's own output is captured: the batch shows one progress bar.
    """
    t0 = time.perf_counter()
    n_threads, worker = task_threads(threads)
    apply_thread_budget(n_threads)
    parser = command_parser(command)
    args = parser.parse_args(argv)
    captured = io.StringIO()
    result: dict[str, Any] = {"status": "ok", "error": None, "worker": worker, "threads": n_threads}
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            rc = int(args.func(args) or 0)
        if rc != 0:
            result.update(status="failed", error=f"recon {command} exited with status {rc}")
    except _INPUT_ERRORS as err:
        result.update(status="failed", error=one_line(err))
    lines = [line for line in captured.getvalue().splitlines() if line.strip()]
    result["output"] = lines[-1].strip() if lines else None
    result["seconds"] = time.perf_counter() - t0
    return result


# --------------------------------------------------------------------------------- the cluster
@contextlib.contextmanager
def open_client(*, workers: int | None, scheduler: str | None, threads_per_worker: int | None,
                resources: dict[str, float] | None) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A Dask client: on a new ``LocalCluster`` of ``workers`` processes, or connected to ``scheduler``.

    Yields ``(client, description)``; a local cluster is shut down on exit. Local workers run one
    task at a time and offer ``resources`` (so tasks that ask for them can run there too).
    """
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except Exception as e:  # the address, the network or the scheduler: one line either way
            # the address as given (a Path would fold its "//")
            raise InputError(None, f"{scheduler}: cannot connect to the Dask scheduler ({one_line(e)})") from None
        with client:
            info = client.scheduler_info()
            yield client, {"scheduler": scheduler, "workers": len(info.get("workers", {})),
                           "threads_per_worker": threads_per_worker, "dashboard": _dashboard(client, info)}
        return
    # Dask starts worker processes with MALLOC_TRIM_THRESHOLD_=65536 to hand memory back to the
    # system sooner. Reconstructions allocate and free large arrays all the time, and with that
    # setting TV took 3.9-4.4 s instead of 2.4-3.0 s for a 4-slice study, so the workers keep
    # glibc's own adaptive threshold (None unsets the variable).
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, resources=resources) as cluster, \
            Client(cluster) as client:
        dashboard = _dashboard(client, client.scheduler_info())
        if dashboard and importlib.util.find_spec("bokeh") is None:
            dashboard += " (its plots need bokeh: pip install 'bokeh>=3.1')"
        yield client, {"scheduler": cluster.scheduler_address, "workers": workers,
                       "threads_per_worker": threads_per_worker, "dashboard": dashboard}


def _dashboard(client: Any, info: dict[str, Any]) -> str | None:
    """The dashboard's address, or None where the scheduler serves none."""
    if "dashboard" not in info.get("services", {}):
        return None
    return client.dashboard_link


# --------------------------------------------------------------------------------- the batch
def _parse_resources(text: str | None) -> dict[str, float] | None:
    """``"GPU=1,MEM=8e9"`` -> ``{"GPU": 1.0, "MEM": 8e9}``: what each task needs of a worker."""
    if not text:
        return None
    out: dict[str, float] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise ValueError(f"--resources {text!r}: expected NAME=AMOUNT[,NAME=AMOUNT], e.g. GPU=1")
    return out


def run_batch(
    command: str,
    studies: str | Path,
    out: str | Path,
    options: Sequence[str] = (),
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    threads: int | None = None,
    retries: int = DEFAULT_RETRIES,
    resources: dict[str, float] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``recon COMMAND`` on every study of ``studies``, writing ``OUT/<name>/`` and the batch report.

    Args:
        command: ``"simulate"`` or ``"reconstruct"``.
        studies: a folder of study folders, a glob, or a CSV manifest (:func:`find_studies`).
        out: the batch's output folder.
        options: the single command's options (``["--method", "tv"]``), without study and ``--out``.
        workers: start a ``LocalCluster`` of this many worker processes; or
        scheduler: the address of an existing cluster's scheduler.
        threads: CPU threads per task (default: local cluster, the cores divided by ``workers``;
            existing cluster, each worker's cores divided by the tasks it runs at once).
        retries: how often Dask reruns a task that raised an unexpected error.
        resources: what each task needs of a worker (``{"GPU": 1}``; ``dask worker --resources``).
        progress: one progress bar over the studies.

    Returns:
        The batch report (also ``OUT/batch_report.json``).
    """
    from distributed import as_completed
    from tqdm import tqdm

    if (workers is None) == (scheduler is None):
        raise ValueError("give --workers N (a local Dask cluster) or --scheduler tcp://HOST:PORT (an existing one)")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers is {workers}, expected at least 1")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads is {threads}, expected at least 1")
    if retries < 0:
        raise ValueError(f"--retries is {retries}, expected 0 or more")
    out = Path(out)
    parser = command_parser(command)
    # argparse checks every option once, before a study is read or a worker started
    probe = parser.parse_args(study_argv(parser, Path(studies), out / "study", options))
    if getattr(probe, "from_pacs", None) is not None:
        raise ValueError("--from-pacs: a batch reads its studies from STUDIES; pull each study first (recon pacs pull)")
    found = find_studies(studies, exclude=out)
    ensure_output_dir(out, resume=True)
    overwrite = bool(getattr(probe, "overwrite", False))
    previous = _previous_entries(out / REPORT_FILE)
    entries: dict[str, dict[str, Any]] = {}
    todo: list[BatchStudy] = []
    for s in found:
        entry = {"study": s.name, "input": str(s.path), "out": str(out / s.name)}
        if not overwrite and is_complete(command, out / s.name):
            before = previous.get(s.name, {})
            entry.update(status="ok", seconds=before.get("seconds"), error=None,
                         skipped="already complete (--overwrite redoes it)")
        else:
            entry.update(status="pending", seconds=None, error=None)
            todo.append(s)
        entries[s.name] = entry
    task_options = list(options)
    if overwrite:
        # --overwrite means: each study once from scratch. The batch clears the old outputs here and
        # the tasks run without it, so that a task retried after a lost worker resumes instead of
        # starting the study over.
        task_options = [o for o in options if not (len(o) > 2 and "--overwrite".startswith(o))]
        for s in todo:
            _remove(out / s.name)
    wall0 = time.perf_counter()
    per_worker = threads if (threads or scheduler) else max(1, default_threads() // int(workers))  # type: ignore[arg-type]
    report: dict[str, Any] = {"command": command, "source": str(studies), "options": list(options), "out": str(out),
                              "cluster": None, "retries": retries, "resources": resources}

    def write_report() -> None:
        rows = list(entries.values())
        report.update(wall_seconds=time.perf_counter() - wall0, n_studies=len(rows),
                      n_ok=sum(r["status"] == "ok" for r in rows), n_failed=sum(r["status"] == "failed" for r in rows),
                      failed=[r["study"] for r in rows if r["status"] == "failed"], studies=rows)
        atomic_write_json(out / REPORT_FILE, report)

    if todo:
        with open_client(workers=workers, scheduler=scheduler, threads_per_worker=per_worker,
                         resources=resources) as (client, cluster):
            report["cluster"] = cluster
            write_report()
            where = f"{cluster['workers']} local worker process(es)" if workers else f"{cluster['workers']} worker(s)"
            share = f"{per_worker} thread(s) per task" if per_worker else "threads per task: its machine's cores / worker threads"
            dashboard = cluster["dashboard"] or "not served"
            print(f"batch {command}: {len(todo)} of {len(found)} studies on {where} at {cluster['scheduler']}, "
                  f"{share}; dashboard: {dashboard}", file=sys.stderr)
            token = uuid.uuid4().hex[:8]
            futures = {
                client.submit(run_study, command, study_argv(parser, s.path, out / s.name, task_options), threads=per_worker,
                              key=f"recon-{command}-{s.name}-{token}", retries=retries, resources=resources,
                              pure=False): s
                for s in todo
            }
            bar = tqdm(total=len(found), initial=len(found) - len(todo), unit="study", desc=f"batch {command}",
                       disable=not progress)
            for future in as_completed(futures):
                s = futures.pop(future)
                entries[s.name].update(_outcome(future))
                # forget the result at once: a result the scheduler still tracks is recomputed when
                # the worker holding it dies, which would run a finished study again
                future.release()
                bar.update(1)
                failed = sum(e["status"] == "failed" for e in entries.values())
                if failed:
                    bar.set_postfix_str(f"{failed} failed")
                write_report()
            bar.close()
    write_report()
    return report


def _remove(path: Path) -> None:
    """Delete an earlier output (a study folder, or a file in its place)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _outcome(future: Any) -> dict[str, Any]:
    """A finished task's report entry: its own result, or the error Dask gave up on."""
    if future.status == "finished":
        return future.result()
    err = future.exception()
    tb = "".join(traceback.format_exception(type(err), err, future.traceback())).strip()
    return {"status": "failed", "error": f"{type(err).__name__}: {one_line(err)}", "traceback": tb, "seconds": None}


def _previous_entries(path: Path) -> dict[str, dict[str, Any]]:
    """The entries of an earlier run's report, by study (to keep the seconds of skipped studies)."""
    try:
        return {e["study"]: e for e in json.loads(path.read_text()).get("studies", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


# --------------------------------------------------------------------------------- CLI
def _add_batch_options(p: argparse.ArgumentParser) -> None:
    """The batch's own options (the rest goes to the single command)."""
    p.add_argument("--out", type=Path, default=None, help="output folder: OUT/<study>/ per study, OUT/batch_report.json")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="start a local Dask cluster of N worker processes")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="use an existing Dask cluster (tcp://HOST:PORT of its scheduler)")
    p.add_argument("--threads", type=int, default=None, metavar="T",
                   help="CPU threads per task (default: the cores divided by the tasks sharing them)")
    p.add_argument("--retries", type=int, default=None, metavar="R",
                   help=f"reruns of a task that failed unexpectedly (default {DEFAULT_RETRIES}); "
                        "a killed worker's task is rescheduled by Dask in any case")
    p.add_argument("--resources", default=None, metavar="NAME=AMOUNT",
                   help="what each task needs of a worker, e.g. GPU=1 (workers started with dask worker --resources)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``batch`` subcommand."""
    p = subparsers.add_parser(
        "batch",
        help="run simulate or reconstruct over many studies on a Dask cluster",
        description=(
            "Run recon simulate or recon reconstruct on every study of STUDIES, one Dask task per study, "
            "each written to OUT/<study>/ exactly as the single command writes it; OUT/batch_report.json "
            "gives per study ok/failed, seconds and the error. Resumable: rerun the same command."
        ),
        epilog=(
            "STUDIES: a folder of study folders, a glob ('data/*/sino') or a CSV manifest whose path column is "
            f"one of: {', '.join(MANIFEST_PATH_COLUMNS)} (relative to the manifest; an optional 'name' column "
            "names the output folder). Every option of the single command works: "
            "'recon batch reconstruct STUDIES --help' lists them."
        ),
    )
    p.add_argument("batch_command", metavar="COMMAND", help="simulate or reconstruct")
    p.add_argument("studies", metavar="STUDIES", help="folder of study folders, glob, or CSV manifest")
    p.add_argument("command_options", nargs=argparse.REMAINDER, metavar="OPTIONS",
                   help="the batch options below and the command's own options")
    _add_batch_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``recon batch`` from parsed arguments; non-zero when a study failed."""
    # the options after STUDIES: the batch's own, then the single command's (in their order)
    own = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _add_batch_options(own)
    own.add_argument("--no-progress", action="store_true", default=args.no_progress)
    opts, rest = own.parse_known_args(args.command_options)
    for key in ("out", "workers", "scheduler", "threads", "retries", "resources"):
        if getattr(opts, key) is None:
            setattr(opts, key, getattr(args, key))
    if "--help" in rest or "-h" in rest:  # the single command's options
        command_parser(args.batch_command).parse_args(["--help"])
    if opts.out is None:
        raise ValueError("--out OUT is required (the folder that receives OUT/<study>/ per study)")
    report = run_batch(
        args.batch_command, args.studies, opts.out, rest, workers=opts.workers, scheduler=opts.scheduler,
        threads=opts.threads, retries=DEFAULT_RETRIES if opts.retries is None else opts.retries,
        resources=_parse_resources(opts.resources), progress=not opts.no_progress,
    )
    skipped = sum(1 for e in report["studies"] if e.get("skipped"))
    line = f"batch {args.batch_command}: {report['n_ok']} of {report['n_studies']} studies ok"
    if skipped:
        line += f" ({skipped} already complete)"
    print(f"{line} in {report['wall_seconds']:.1f} s -> {opts.out}")
    if report["n_failed"]:
        print(f"recon: error: {report['n_failed']} of {report['n_studies']} studies failed "
              f"(details in {Path(opts.out) / REPORT_FILE}):", file=sys.stderr)
        for e in report["studies"]:
            if e["status"] == "failed":
                print(f"  {e['study']}: {e['error']}", file=sys.stderr)
        return EXIT_FAILED_STUDIES
    return 0
