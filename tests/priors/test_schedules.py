import math

import pytest
import torch

from priors.schedules import (
    karras_sigmas,
    loglinear_sigmas,
    sample_lognormal_sigmas,
    sample_loguniform_sigmas,
    sample_training_sigmas,
)


@pytest.mark.parametrize("n", [2, 5, 18, 50])
def test_karras_endpoints_and_monotone(n):
    s = karras_sigmas(n, 0.002, 80.0)
    assert s.shape == (n,)
    assert s[0].item() == 80.0 and s[-1].item() == 0.002
    assert torch.all(s[1:] < s[:-1])


def test_karras_rho_one_is_linear_and_append_zero():
    s = karras_sigmas(5, 1.0, 5.0, rho=1.0, append_zero=True)
    assert torch.allclose(s, torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.0], dtype=s.dtype))


def test_karras_rho7_concentrates_small_sigmas():
    s = karras_sigmas(50, 0.005, 20.0)
    assert (s < 1.0).sum() >= 25  # half of the steps below sigma 1 (of a 20 -> 0.005 range)


def test_karras_invalid():
    with pytest.raises(ValueError):
        karras_sigmas(0)
    with pytest.raises(ValueError):
        karras_sigmas(5, 1.0, 0.5)


def test_loglinear():
    s = loglinear_sigmas(4, 0.01, 10.0)
    assert torch.allclose(s, torch.tensor([10.0, 1.0, 0.1, 0.01], dtype=s.dtype))


def test_training_distributions_statistics():
    g = torch.Generator().manual_seed(0)
    ln = sample_lognormal_sigmas(20000, -1.2, 1.2, generator=g).log()
    assert abs(ln.mean().item() + 1.2) < 0.05 and abs(ln.std().item() - 1.2) < 0.05
    lu = sample_loguniform_sigmas(20000, 0.01, 100.0, generator=g)
    assert lu.min() >= 0.01 and lu.max() <= 100.0
    assert abs(lu.log().mean().item() - 0.5 * (math.log(0.01) + math.log(100.0))) < 0.1
    with pytest.raises(ValueError):
        sample_training_sigmas(4, "uniform")


def test_training_sigmas_reproducible():
    a = sample_training_sigmas(8, "lognormal", generator=torch.Generator().manual_seed(3))
    b = sample_training_sigmas(8, "lognormal", generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
