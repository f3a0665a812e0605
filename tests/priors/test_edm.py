import pytest
import torch

from priors.base import Prior
from priors.edm import EDMPrior, default_max_batch, edm_coefficients
from priors.network import preset
from tests.priors.helpers import tiny_prior


def test_is_prior_with_config():
    p = tiny_prior()
    assert isinstance(p, Prior)
    cfg = p.config
    assert cfg["modality"] == "ct" and cfg["architecture"]["model_channels"] == 8
    assert cfg["normalization"]["kind"] == "window"


@pytest.mark.parametrize("sigma", [0.5, torch.tensor(0.5), torch.tensor([0.5, 0.5, 0.5])])
def test_denoise_shapes_and_sigma_forms(sigma):
    p = tiny_prior()
    x = torch.rand(3, 1, 16, 16)
    out = p.denoise(x, sigma)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.allclose(out, p.denoise(x, 0.5), atol=1e-6)


def test_per_item_sigma_matches_separate_calls():
    p = tiny_prior()
    x = torch.rand(2, 1, 16, 16)
    s = torch.tensor([0.1, 2.0])
    both = p.denoise(x, s)
    assert torch.allclose(both[0:1], p.denoise(x[0:1], 0.1), atol=1e-5)
    assert torch.allclose(both[1:2], p.denoise(x[1:2], 2.0), atol=1e-5)


def test_wrong_sigma_length_rejected():
    with pytest.raises(ValueError):
        tiny_prior().denoise(torch.rand(3, 1, 16, 16), torch.ones(2))


def test_score_is_tweedie():
    p = tiny_prior()
    x = torch.rand(2, 1, 16, 16)
    assert torch.allclose(p.score(x, 0.3), (p.denoise(x, 0.3) - x) / 0.09, atol=1e-4)


def test_float64_and_odd_sizes():
    p = tiny_prior()
    x = torch.rand(1, 1, 15, 17, dtype=torch.float64)
    out = p.denoise(x, 0.2)
    assert out.shape == x.shape and out.dtype == torch.float64


def test_coefficients_identities():
    s = torch.tensor([0.01, 0.5, 3.0, 80.0], dtype=torch.float64)
    sd = 0.5
    c_skip, c_out, c_in, c_noise = edm_coefficients(s, sd)
    # Unit-variance target: c_skip^2 sigma_d^2 + ... ; EDM Table 1 relations.
    assert torch.allclose(c_in**2 * (s**2 + sd**2), torch.ones_like(s))
    assert torch.allclose(c_skip, sd**2 * c_in**2)
    assert torch.allclose(c_out, s * sd * c_in)
    assert torch.allclose(c_noise, s.log() / 4)


def test_small_sigma_denoiser_is_identity():
    p = tiny_prior()
    x = torch.rand(2, 1, 16, 16)
    assert (p.denoise(x, 1e-5) - x).abs().max() < 1e-4


def test_untrained_zero_output_layer_gives_c_skip_x():
    p = EDMPrior(net_config=preset("tiny"))
    x = torch.rand(1, 1, 8, 8)
    assert torch.allclose(p.denoise(x, 1.0), x * 0.25 / 1.25)


def test_invalid_modality():
    with pytest.raises(ValueError):
        EDMPrior(net_config=preset("tiny"), modality="pet")


def test_denoiser_error_ratio_is_the_recorded_validation_loss():
    assert EDMPrior(net_config=preset("tiny")).denoiser_error_ratio == 1.0
    p = EDMPrior(net_config=preset("tiny"), metadata={"training": {"val_loss": 0.07}})
    assert p.denoiser_error_ratio == pytest.approx(0.07)
    for bad in (None, "x", 0.0, -1.0, float("nan"), float("inf")):
        q = EDMPrior(net_config=preset("tiny"), metadata={"training": {"val_loss": bad}})
        assert q.denoiser_error_ratio == 1.0, bad


def test_denoise_splits_large_batches_without_changing_the_result():
    prior = tiny_prior()
    x = torch.rand(11, 1, 32, 32)
    sigma = torch.linspace(0.1, 2.0, 11)
    prior.max_batch = 11
    whole = prior.denoise(x, sigma)
    prior.max_batch = 4
    calls = []
    handle = prior.net.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    split = prior.denoise(x, sigma)
    handle.remove()
    assert calls == [4, 4, 3]
    assert torch.allclose(split, whole, atol=1e-6)


def test_denoise_splits_by_the_devices_batch_size_when_unset():
    prior = tiny_prior()
    n = default_max_batch(torch.device("cpu"), 32 * 32)
    assert n > 1 and default_max_batch(torch.device("cpu"), 1024 * 1024) == 1
    calls = []
    handle = prior.net.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    prior.denoise(torch.rand(2 * n + 1, 1, 32, 32), 0.5)
    handle.remove()
    assert calls == [n, n, 1]
