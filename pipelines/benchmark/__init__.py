"""``recon benchmark``: how far can dose (CT) or scan time (MR) be cut before images degrade?

For every *setting* of a grid (CT: views x photon fraction; MR: acceleration x mask kind) the
selected slices are simulated once (:mod:`pipelines.simulate`) and reconstructed by every method
(classical baselines and posterior samplers, through :func:`recon.api.reconstruct`); quality is
measured against the full-dose reference with :mod:`recon.metrics` (CT: PSNR/SSIM/RMSE in HU on
[-1000, 1000] HU; MR: magnitude normalised to the reference's 99.9th percentile).

Dose. CT dose is relative to the full-dose reference acquisition: ``views / FULL_VIEWS[geometry] x
photon fraction`` (:attr:`pipelines.simulate.CTSimulation.relative_dose`; the reference has 720
parallel or 1440 fan views at ``--i0`` photons). For MR the dose axis is the scan-time fraction
``1 / acceleration`` (the nominal one; the achieved sampling fraction of each mask is recorded
beside it). The summary table gives, per method and quality level, the lowest dose at which the
method's mean over the slices reaches the level.

The modules, one job each:

* :mod:`~pipelines.benchmark.volumes`: the input volumes (DICOM, NIfTI for MR) and slice selection;
* :mod:`~pipelines.benchmark.grid`: the settings grid, the methods, the run's configuration;
* :mod:`~pipelines.benchmark.layout`: the report directory (``benchmark.json``, ``cells/``,
  ``results.csv``, ``results.json``, ``plots/``, ``panels/``, ``report.html``), resume and overwrite;
* :mod:`~pipelines.benchmark.cells`: one setting x method simulated, reconstructed and measured;
* :mod:`~pipelines.benchmark.summary`: result rows, lowest dose per quality level, headlines;
* :mod:`~pipelines.benchmark.report`: CSV, JSON, plots, panels and the HTML page;
* :mod:`~pipelines.benchmark.runner`: :func:`run_benchmark`, the whole run;
* :mod:`~pipelines.benchmark.cli`: the ``benchmark`` subcommand.
"""

from pipelines.benchmark.cli import register, run
from pipelines.benchmark.grid import (
    CT_METHODS,
    DEFAULT_CT_METHODS,
    DEFAULT_MR_METHODS,
    DEFAULT_PSNR_LEVELS,
    DEFAULT_SSIM_LEVELS,
    MR_METHODS,
    SAMPLER_METHODS,
    BenchmarkConfig,
    Setting,
    settings_grid,
)
from pipelines.benchmark.layout import CELLS_DIR, CSV_FILE, HTML_FILE, JSON_FILE, STATE_FILE
from pipelines.benchmark.runner import run_benchmark
from pipelines.benchmark.summary import headlines, summarize
from pipelines.benchmark.volumes import Volume, load_volumes, parse_slice_spec, select_slices

__all__ = [
    "CT_METHODS",
    "MR_METHODS",
    "SAMPLER_METHODS",
    "DEFAULT_CT_METHODS",
    "DEFAULT_MR_METHODS",
    "DEFAULT_PSNR_LEVELS",
    "DEFAULT_SSIM_LEVELS",
    "STATE_FILE",
    "CELLS_DIR",
    "CSV_FILE",
    "JSON_FILE",
    "HTML_FILE",
    "Setting",
    "Volume",
    "BenchmarkConfig",
    "load_volumes",
    "parse_slice_spec",
    "select_slices",
    "settings_grid",
    "run_benchmark",
    "summarize",
    "headlines",
    "register",
    "run",
]
