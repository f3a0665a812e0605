"""Shared fixtures: the location of ``../shared/data`` and a skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RECON_SHARED_DATA", REPO.parent / "shared" / "data"))

# Tests run on 2 cores in CI; oversubscribing threads only slows them down.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def shared_path(*parts: str) -> Path:
    """Path inside ``../shared/data``; skips the calling test with a reason when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p} is absent (set RECON_SHARED_DATA)")
    return p


@pytest.fixture
def shared_data():
    """Return the ``shared_path`` helper; tests call ``shared_data('ct_tcga_luad', 'dicom')``."""
    return shared_path


@pytest.fixture
def one_thread():
    """Run the test on one torch thread: tiny networks are faster so, especially on a shared CPU
    (OpenMP threads stall waiting for each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
