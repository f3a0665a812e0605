"""A noise-conditional U-Net of the DDPM++ / NCSN++ family for ``C``-channel image slices.

References:
    Song et al. 2021, "Score-Based Generative Modeling through Stochastic Differential Equations"
    (DDPM++ / NCSN++ architectures); Karras et al. 2022, "Elucidating the Design Space of
    Diffusion-Based Generative Models" (EDM: the noise input ``c_noise = ln(sigma) / 4`` and the
    positional / Fourier embeddings); Hu et al. 2024, "Learning Image Priors through Patch-based
    Diffusion Models for Solving Inverse Problems" (fully convolutional priors trained on patches
    and applied to whole images).

The network is fully convolutional: any ``H, W`` divisible by ``2 ** (levels - 1)`` works, so a model
trained on random ``P x P`` patches runs on whole slices. It maps ``(x [B, C, H, W], c_noise [B])``
to ``F [B, C, H, W]``; the EDM preconditioning around it lives in :mod:`priors.edm`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet", "UNetConfig", "PRESETS", "preset"]


@dataclass
class UNetConfig:
    """Architecture of :class:`UNet`; serialises to and from JSON.

    Attributes:
        in_channels: image channels ``C`` (1 magnitude; 2 for real/imag).
        out_channels: output channels; ``None`` means ``in_channels``.
        model_channels: channels at the first level.
        channel_mult: per-level multipliers of ``model_channels``; ``len`` = number of levels.
        num_res_blocks: residual blocks per level on the way down (``+1`` on the way up).
        attn_levels: level indices (0 = full resolution) that get self-attention after each block.
            Attention is global: a model trained on patches sees a smaller context than at
            inference, so presets meant for patch training leave it off outside the bottleneck.
        mid_attention: self-attention in the bottleneck (lowest resolution).
        dropout: dropout probability inside residual blocks.
        embedding: ``"positional"`` (sinusoidal, DDPM++) or ``"fourier"`` (random Fourier features, NCSN++).
        embedding_channels: width of the sinusoidal / Fourier features of ``c_noise``.
        emb_mult: the noise-embedding MLP width is ``emb_mult * model_channels``.
        num_heads: attention heads (channels must divide evenly).
        fourier_scale: frequency scale of the Fourier features.
        resample: ``"conv"`` (strided conv down, nearest+conv up) or ``"avgpool"`` (pool down, nearest+conv up).
        up_res_blocks: residual blocks per level on the way up; ``None`` means ``num_res_blocks + 1``
            (DDPM++). One block up and one down halves the cost at full resolution.
        upsample_conv: a 3x3 conv after the nearest-neighbour upsampling (DDPM++). Without it the
            next block's first conv does the mixing, which saves the most expensive convolution
            of a level (full resolution, the wider channel count).
    """

    in_channels: int = 1
    out_channels: int | None = None
    model_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 1
    attn_levels: tuple[int, ...] = ()
    mid_attention: bool = False
    dropout: float = 0.0
    embedding: str = "positional"
    embedding_channels: int | None = None
    emb_mult: int = 4
    num_heads: int = 1
    fourier_scale: float = 16.0
    resample: str = "conv"
    up_res_blocks: int | None = None
    upsample_conv: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.channel_mult = tuple(int(m) for m in self.channel_mult)
        self.attn_levels = tuple(int(a) for a in self.attn_levels)
        if self.embedding not in ("positional", "fourier"):
            raise ValueError(f"embedding must be 'positional' or 'fourier', got {self.embedding!r}")
        if self.resample not in ("conv", "avgpool"):
            raise ValueError(f"resample must be 'conv' or 'avgpool', got {self.resample!r}")
        if self.up_res_blocks is not None and not 1 <= self.up_res_blocks <= self.num_res_blocks + 1:
            raise ValueError(f"up_res_blocks must be in 1..num_res_blocks + 1 = {self.num_res_blocks + 1}, "
                             f"got {self.up_res_blocks}")
        if not self.channel_mult:
            raise ValueError("channel_mult must have at least one level")
        if any(a < 0 or a >= len(self.channel_mult) for a in self.attn_levels):
            raise ValueError(f"attn_levels {self.attn_levels} outside 0..{len(self.channel_mult) - 1}")

    @property
    def levels(self) -> int:
        return len(self.channel_mult)

    @property
    def divisor(self) -> int:
        """``H`` and ``W`` must be multiples of this."""
        return 2 ** (self.levels - 1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        d["attn_levels"] = list(self.attn_levels)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UNetConfig:
        """Build from a dict; unknown keys raise ``ValueError`` (a config from a newer format)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown UNetConfig keys: {', '.join(unknown)}")
        return cls(**d)


# Named presets: "tiny" (~0.04 M) for tests; "small" (~4.2 M) the 32/64/128/128 one-block-per-level
# layout that trains on 64x64 patches on a 2-core CPU (no attention: a patch-trained model must not
# depend on global context it never saw); "base" (~41 M) a DDPM++-sized model for GPUs.
PRESETS: dict[str, UNetConfig] = {
    "tiny": UNetConfig(model_channels=8, channel_mult=(1, 2), num_res_blocks=1),
    "small": UNetConfig(model_channels=32, channel_mult=(1, 2, 4, 4), num_res_blocks=1),
    # "small" with one block up per level and no conv after upsampling: 0.65x its FLOPs, for CPUs
    "fast": UNetConfig(model_channels=32, channel_mult=(1, 2, 4, 4), num_res_blocks=1, up_res_blocks=1,
                       upsample_conv=False),
    "base": UNetConfig(
        model_channels=128,
        channel_mult=(1, 1, 2, 2, 2),
        num_res_blocks=2,
        attn_levels=(4,),
        mid_attention=True,
        dropout=0.1,
        num_heads=4,
    ),
}


def preset(name: str, **overrides: Any) -> UNetConfig:
    """A copy of the named preset (``"tiny"``, ``"small"``, ``"base"``) with optional overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
    d = PRESETS[name].to_dict()
    d.update(overrides)
    return UNetConfig.from_dict(d)


def _groups(channels: int) -> int:
    # As in DDPM++/EDM: up to 32 groups, at least 4 channels per group, so tiny models still normalise.
    g = min(32, max(1, channels // 4))
    while channels % g:
        g -= 1
    return g


def _zero(module: nn.Module) -> nn.Module:
    # Zero-initialised last layers make every residual branch start as identity (stable early training).
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class PositionalEmbedding(nn.Module):
    """Sinusoidal features of a scalar per item: ``[B] -> [B, num_channels]`` (Vaswani et al. 2017)."""

    def __init__(self, num_channels: int, max_positions: int = 10000):
        super().__init__()
        self.num_channels = num_channels
        self.max_positions = max_positions

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        freqs = torch.arange(half, dtype=torch.float32, device=t.device) / half
        freqs = (1.0 / self.max_positions) ** freqs
        # EDM feeds c_noise = ln(sigma)/4 (order 1); scale so the fastest frequencies still resolve it.
        args = t.float()[:, None] * freqs[None, :] * 1000.0 / 4.0
        return torch.cat([args.cos(), args.sin()], dim=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features ``[cos(2 pi f t), sin(2 pi f t)]`` (NCSN++; Tancik et al. 2020)."""

    def __init__(self, num_channels: int, scale: float = 16.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        # Persistent buffer: the frequencies are part of the weights, so a checkpoint reproduces them.
        self.register_buffer("freqs", torch.randn(num_channels // 2, generator=g) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = t.float()[:, None] * (2 * math.pi * self.freqs[None, :])
        return torch.cat([args.cos(), args.sin()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, noise-conditioned scale/shift, GroupNorm-SiLU-dropout-conv, residual.

    Shapes: ``x [B, in_ch, H, W]``, ``emb [B, emb_ch]`` -> ``[B, out_ch, H, W]``.
    """

    def __init__(self, in_ch: int, out_ch: int, emb_ch: int, dropout: float):
        super().__init__()
        self.norm0 = nn.GroupNorm(_groups(in_ch), in_ch, eps=1e-6)
        self.conv0 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.affine = nn.Linear(emb_ch, 2 * out_ch)
        self.norm1 = nn.GroupNorm(_groups(out_ch), out_ch, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = _zero(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        scale, shift = self.affine(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))
        h = self.conv1(self.dropout(h))
        # 1/sqrt(2) keeps activations at unit scale through many residual additions (DDPM++ skip_rescale).
        return (h + self.skip(x)) * (1.0 / math.sqrt(2.0))


class SelfAttention(nn.Module):
    """Multi-head self-attention over all pixels with a residual connection: ``[B, C, H, W]``."""

    def __init__(self, channels: int, num_heads: int = 1):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"{channels} channels do not split into {num_heads} heads")
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(_groups(channels), channels, eps=1e-6)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return (x + self.proj(out)) * (1.0 / math.sqrt(2.0))


class Downsample(nn.Module):
    def __init__(self, channels: int, mode: str):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if mode == "conv" else nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int, conv: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1) if conv else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Nearest + conv rather than transposed conv: no checkerboard artefacts.
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """Noise-conditional U-Net ``F(x, c_noise)``.

    Args:
        config: the architecture.

    ``forward(x [B, C, H, W], c_noise [B] or scalar) -> [B, C_out, H, W]``; ``H`` and ``W`` must be
    multiples of ``config.divisor``.
    """

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        self.config = cfg = config or UNetConfig()
        mc = cfg.model_channels
        emb_ch = cfg.emb_mult * mc
        feat = cfg.embedding_channels or mc
        if cfg.embedding == "positional":
            self.embed = PositionalEmbedding(feat)
        else:
            self.embed = FourierEmbedding(feat, cfg.fourier_scale)
        self.emb_mlp = nn.Sequential(nn.Linear(feat, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch), nn.SiLU())

        self.conv_in = nn.Conv2d(cfg.in_channels, mc, 3, padding=1)
        self.down = nn.ModuleList()
        skips = [mc]
        ch = mc
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                blocks = nn.ModuleList([ResBlock(ch, mc * mult, emb_ch, cfg.dropout)])
                ch = mc * mult
                if level in cfg.attn_levels:
                    blocks.append(SelfAttention(ch, cfg.num_heads))
                self.down.append(blocks)
                skips.append(ch)
            if level != cfg.levels - 1:
                self.down.append(nn.ModuleList([Downsample(ch, cfg.resample)]))
                skips.append(ch)

        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_ch, cfg.dropout)])
        if cfg.mid_attention:
            self.mid.append(SelfAttention(ch, cfg.num_heads))
        self.mid.append(ResBlock(ch, ch, emb_ch, cfg.dropout))

        self.up = nn.ModuleList()
        self.up_skips: list[int] = []  # skips each entry of self.up concatenates
        for level in reversed(range(cfg.levels)):
            mult = cfg.channel_mult[level]
            n_up = cfg.num_res_blocks + 1 if cfg.up_res_blocks is None else cfg.up_res_blocks
            for i in range(n_up):
                # each level leaves num_res_blocks + 1 skips at its resolution; with fewer blocks up,
                # the level's last block concatenates all the remaining ones
                take = 1 if i < n_up - 1 else cfg.num_res_blocks + 1 - (n_up - 1)
                extra = sum(skips.pop() for _ in range(take))
                self.up_skips.append(take)
                blocks = nn.ModuleList([ResBlock(ch + extra, mc * mult, emb_ch, cfg.dropout)])
                ch = mc * mult
                if level in cfg.attn_levels:
                    blocks.append(SelfAttention(ch, cfg.num_heads))
                self.up.append(blocks)
            if level != 0:
                self.up.append(nn.ModuleList([Upsample(ch, cfg.upsample_conv)]))
                self.up_skips.append(0)
        self.norm_out = nn.GroupNorm(_groups(ch), ch, eps=1e-6)
        self.conv_out = _zero(nn.Conv2d(ch, cfg.out_channels or cfg.in_channels, 3, padding=1))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor | float) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"UNet expects [B, C, H, W], got shape {tuple(x.shape)}")
        d = self.config.divisor
        if x.shape[-1] % d or x.shape[-2] % d:
            raise ValueError(f"UNet with {self.config.levels} levels needs H, W divisible by {d}, got {tuple(x.shape[-2:])}")
        c = torch.as_tensor(c_noise, device=x.device, dtype=torch.float32).reshape(-1)
        if c.numel() == 1:
            c = c.expand(x.shape[0])
        emb = self.emb_mlp(self.embed(c).to(x.dtype))

        h = self.conv_in(x)
        hs = [h]
        for blocks in self.down:
            for m in blocks:
                h = m(h, emb) if isinstance(m, ResBlock) else m(h)
            hs.append(h)
        for m in self.mid:
            h = m(h, emb) if isinstance(m, ResBlock) else m(h)
        for blocks, n_skips in zip(self.up, self.up_skips, strict=True):
            for m in blocks:
                if isinstance(m, ResBlock):
                    h = m(torch.cat([h, *(hs.pop() for _ in range(n_skips))], dim=1), emb)
                else:
                    h = m(h)
        return self.conv_out(F.silu(self.norm_out(h)))
