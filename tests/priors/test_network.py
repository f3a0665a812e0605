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


def _conv_macs(net: UNet, hw: tuple[int, int]) -> int:
    """Multiply-accumulates of every Conv2d for one ``[1, 1, *hw]`` input (forward hooks)."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1]
        total += out.numel() * k * mod.in_channels // mod.groups

    hs = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        net(torch.zeros(1, 1, *hw), torch.zeros(1))
    for h in hs:
        h.remove()
    return total


@pytest.mark.parametrize("num_res_blocks,up_res_blocks", [(1, 1), (2, 1), (2, 2), (2, 3)])
def test_fewer_up_blocks_consume_every_skip(num_res_blocks, up_res_blocks):
    cfg = UNetConfig(model_channels=8, channel_mult=(1, 2, 2), num_res_blocks=num_res_blocks,
                     up_res_blocks=up_res_blocks, upsample_conv=False)
    net = UNet(cfg)
    x = torch.randn(2, 1, 16, 24)
    assert net(x, torch.zeros(2)).shape == x.shape
    # one entry per up block or upsampler; the skips taken add up to all the down path left
    n_skips = 1 + len(cfg.channel_mult) * num_res_blocks + len(cfg.channel_mult) - 1
    assert sum(net.up_skips) == n_skips


def test_fast_preset_is_cheaper_than_small():
    small, fast = UNet(preset("small")), UNet(preset("fast"))
    ratio = _conv_macs(fast, (256, 256)) / _conv_macs(small, (256, 256))
    assert 0.55 < ratio < 0.75
    assert fast.num_parameters() < small.num_parameters()


def test_default_architecture_keeps_its_weight_names():
    # checkpoints of DDPM++-style configs (no up_res_blocks / upsample_conv keys) still load
    old = {k: v for k, v in preset("small").to_dict().items() if k not in ("up_res_blocks", "upsample_conv")}
    net = UNet(UNetConfig.from_dict(old))
    assert any(k.endswith("conv.weight") and k.startswith("up.") for k in net.state_dict())
    net.load_state_dict(UNet(preset("small")).state_dict())


def test_up_res_blocks_range_checked():
    with pytest.raises(ValueError, match="up_res_blocks"):
        UNetConfig(num_res_blocks=1, up_res_blocks=3)
    with pytest.raises(ValueError, match="up_res_blocks"):
        UNetConfig(num_res_blocks=1, up_res_blocks=0)
