import numpy as np
import pytest
import torch
from PIL import Image

from priors.sampling import heun_sample, sample, sample_grid_png
from priors.schedules import karras_sigmas
from tests.priors.helpers import tiny_prior


def test_sample_shape_and_reproducible():
    p = tiny_prior()
    a = sample(p, 3, 16, steps=4, generator=torch.Generator().manual_seed(0))
    b = sample(p, 3, 16, steps=4, generator=torch.Generator().manual_seed(0))
    assert a.shape == (3, 1, 16, 16) and torch.equal(a, b) and torch.isfinite(a).all()


def test_callback_and_nfe():
    p = tiny_prior()
    calls = []
    n_eval = 0
    orig = p.denoise

    def counting(x, s):
        nonlocal n_eval
        n_eval += 1
        return orig(x, s)

    p.denoise = counting
    sig = karras_sigmas(5, 0.01, 10.0, append_zero=True)
    heun_sample(p, torch.randn(1, 1, 8, 8) * 10, sig, callback=lambda *args: calls.append(args))
    assert [c[0] for c in calls] == list(range(5)) and n_eval == 2 * 5 - 1
    assert [c[1] for c in calls] == pytest.approx(sig[:-1].tolist())
    assert all(x.shape == x0_hat.shape == (1, 1, 8, 8) for _, _, x, x0_hat in calls)


def test_churn_uses_generator():
    p = tiny_prior()
    sig = karras_sigmas(4, 0.01, 10.0)
    x0 = torch.randn(1, 1, 8, 8) * 10
    a = heun_sample(p, x0, sig, churn=10, generator=torch.Generator().manual_seed(1))
    b = heun_sample(p, x0, sig, churn=10, generator=torch.Generator().manual_seed(1))
    c = heun_sample(p, x0, sig, churn=10, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_grid_png(tmp_path):
    p = tiny_prior()
    out = sample_grid_png(p, 4, tmp_path / "g.png", 16, torch.Generator().manual_seed(0), steps=3)
    img = np.asarray(Image.open(out))
    assert img.shape == (2 * 18 + 2, 2 * 18 + 2) and img.dtype == np.uint8
