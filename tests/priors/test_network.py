import json

import pytest
import torch

from priors.network import PRESETS, UNet, UNetConfig, preset


def test_presets_sizes():
    assert UNet(preset("tiny")).num_parameters() < 200_000
    n_small = UNet(preset("small")).num_parameters()
    assert 2_000_000 <= n_small <= 8_000_000
    assert UNet(preset("base")).num_parameters() > 20_000_000
    assert set(PRESETS) >= {"tiny", "small", "base"}


def test_config_json_round_trip():
    cfg = preset("small", dropout=0.1, attn_levels=[3], mid_attention=True, embedding="fourier")
    back = UNetConfig.from_dict(json.loads(cfg.to_json()))
    assert back == cfg


def test_unknown_config_key_rejected():
    with pytest.raises(ValueError, match="unknown UNetConfig keys"):
        UNetConfig.from_dict({"model_channels": 8, "bogus": 1})


@pytest.mark.parametrize("hw", [(16, 16), (32, 48), (64, 16)])
def test_fully_convolutional_any_divisible_size(hw):
    cfg = UNetConfig(model_channels=8, channel_mult=(1, 2, 2), num_res_blocks=1, attn_levels=(2,), mid_attention=True)
    net = UNet(cfg)
    x = torch.randn(2, 1, *hw)
    assert net(x, torch.zeros(2)).shape == x.shape


def test_size_not_divisible_rejected():
    net = UNet(UNetConfig(model_channels=8, channel_mult=(1, 2, 2)))
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 1, 18, 16), torch.zeros(1))


def test_two_channel_and_fourier_embedding():
    net = UNet(UNetConfig(in_channels=2, model_channels=8, channel_mult=(1, 2), embedding="fourier"))
    assert net(torch.randn(3, 2, 8, 8), 0.3).shape == (3, 2, 8, 8)
    assert "embed.freqs" in net.state_dict()


def test_noise_conditioning_changes_output():
    net = UNet(preset("tiny"))
    with torch.no_grad():
        # Residual branches start at zero (identity blocks); give them weights so conditioning shows.
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = torch.randn(1, 1, 16, 16)
    assert not torch.allclose(net(x, torch.tensor([-1.0])), net(x, torch.tensor([1.0])))
