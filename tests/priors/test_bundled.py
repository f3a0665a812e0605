"""The bundled priors: present, loadable by name, documented, and inside the wheel."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from priors import available_priors, load_prior
from priors.calibration import CALIBRATION_FILE, NOMINAL_COVERAGE, load_std_calibration

REPO = Path(__file__).resolve().parents[2]
BUNDLED = {"ct": "ct", "mr": "mr"}


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_prior_loads_by_name_and_denoises(name):
    if name not in available_priors():
        pytest.skip(f"bundled prior {name!r} is not part of this installation")
    prior = load_prior(name)
    assert prior.modality == BUNDLED[name]
    # a body-like disc (water in the CT window, bright tissue for MR) on an air/background field
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    x = torch.where(xx**2 + yy**2 < 0.6, 0.35, 0.0).reshape(1, 1, 64, 64)
    out = prior.denoise(x + 0.1 * torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0)), 0.1)
    assert out.shape == x.shape and torch.isfinite(out).all()
    # a trained denoiser removes most of the added noise
    assert (out - x).pow(2).mean() < 0.5 * 0.1**2


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_prior_has_a_model_card_naming_sources_and_licences(name):
    folder = REPO / "data" / "priors" / name
    if not folder.is_dir():
        pytest.skip(f"data/priors/{name} is absent")
    card = (folder / "README.md").read_text().lower()
    assert "licen" in card and "parameters" in card
    config = json.loads((folder / "config.json").read_text())
    assert config["data"]["sources"], "training data sources must be recorded"
    size_mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
    assert size_mb <= 50


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_prior_ships_a_std_calibration_within_ten_percent_of_nominal(name):
    folder = REPO / "data" / "priors" / name
    if not folder.is_dir():
        pytest.skip(f"data/priors/{name} is absent")
    calibration = load_std_calibration(folder)
    assert calibration is not None, f"data/priors/{name} ships no {CALIBRATION_FILE}"
    assert calibration.scale > 1 and calibration.samples > 1
    for k, nominal in NOMINAL_COVERAGE.items():
        assert calibration.coverage_raw[str(k)] < nominal  # raw sample std is too narrow
        assert abs(calibration.coverage_calibrated[str(k)] - nominal) <= 0.1 * nominal


@pytest.mark.slow
def test_wheel_ships_data(tmp_path):
    """A non-editable install must find the bundled priors and the sample study."""
    if not (REPO / "data" / "priors").is_dir():
        pytest.skip("no bundled priors in this checkout")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in available_priors():
        assert f"recon_data/priors/{name}/weights.safetensors" in names
        assert f"recon_data/priors/{name}/config.json" in names
    assert any(n.startswith("recon_data/sample/ct/") and n.endswith(".dcm") for n in names)
