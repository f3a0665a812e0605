"""Prior tests run tiny networks: one thread is faster than two for them, and much faster when
the CPU is shared (OpenMP threads stall waiting for each other)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
