"""Training an EDM prior by denoising score matching.

Objective (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models",
Eq. 8 and Table 1; the score-matching view is Song et al. 2021): for clean slices ``y``, noise
``n ~ N(0, sigma^2 I)`` and ``sigma`` from a training distribution,

    L = E[ lambda(sigma) || D(y + n, sigma) - y ||^2 ],  lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2

which makes the effective network target unit-variance at every noise level. Sigma distributions:

* ``"lognormal"`` (default, EDM): ``ln sigma ~ N(P_mean, P_std^2)`` with (-1.2, 1.2). Focuses on the
  mid-noise range where a denoiser can still improve (Karras et al. 2022, Sec. 5).
* ``"loguniform"``: ``ln sigma ~ U(ln sigma_min, ln sigma_max)`` (VE SDE style), equal effort per
  noise decade; useful when a sampler spends many steps at very high or very low sigma.

Patch training (Hu et al. 2024, "Learning Image Priors through Patch-based Diffusion Models for
Solving Inverse Problems"): with ``patch_size < image_size`` every batch holds random ``P x P`` crops
of the full-size slices; the fully convolutional network is then applied to whole slices.
Validation always runs on whole slices, so it measures exactly that transfer. ``patch_mix`` adds
larger crops (up to whole slices) drawn with given probabilities, one size per step, in the spirit
of Patch Diffusion's stochastic patch sizes (Wang et al. 2023) and PaDIS (Hu et al. 2024): the
large crops teach the context a 64-pixel patch cannot hold. A step with a ``Q x Q`` crop uses
``B (P / Q)^2`` images (at least one), so every step costs about the same pixels and time.

Engineering: AdamW, linear learning-rate warm-up, gradient clipping (non-finite steps skipped), EMA
of the weights (constant decay with the usual ``(1 + t) / (10 + t)`` warm-up, or an EDM-style
half-life in images), bf16/fp16 autocast on CUDA only (CPU autocast is slower for convolutions here),
DistributedDataParallel when started by ``torchrun`` (``WORLD_SIZE > 1``), atomic periodic
checkpoints with everything needed to resume (weights, EMA, optimizer, step, RNG state) in
safetensors + JSON, a fixed-seed validation loss at fixed sigmas, a PNG grid of EMA samples at every
checkpoint, ``metrics.jsonl`` and ``val_loss.png``.

Every random draw of a training step comes from a CPU generator seeded by ``(seed, step, rank)``,
so resuming at step ``k`` replays exactly the batches an uninterrupted run would have drawn.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from priors import checkpoint as ckpt
from priors.datasets import SliceDataset
from priors.device import resolve_device
from priors.edm import EDMPrior
from priors.errors import PriorError
from priors.network import UNet, UNetConfig, preset
from priors.normalization import CT_WINDOW, MR_PERCENTILE, Normalization
from priors.sampling import sample_grid_png
from priors.schedules import sample_training_sigmas

__all__ = ["TrainConfig", "Trainer", "train", "edm_loss", "default_normalization"]

DEFAULT_VAL_SIGMAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
_PATCH_MIX_STREAM = 0x5041_5443  # keeps the crop-size draws apart from the per-rank batch streams


def default_normalization(modality: str) -> Normalization:
    """CT: HU window [-1024, 2048] -> [0, 1]; MR: magnitude / 99.9th percentile of the volume."""
    return CT_WINDOW if modality == "ct" else MR_PERCENTILE


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as ``train_config.json`` in the run directory).

    Sizes in pixels; ``batch_size`` is global (split across DDP ranks); ``steps`` is the total
    number of optimizer steps (a resumed run continues up to it).
    """

    out_dir: str = "runs/prior"
    modality: str = "ct"
    image_size: int = 256
    patch_size: int | None = 64
    patch_mix: tuple[tuple[int, float], ...] = ()
    preset: str = "small"
    architecture: dict[str, Any] | None = None
    normalization: dict[str, Any] | None = None
    batch_size: int = 16
    steps: int = 5000
    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ema_halflife_images: float | None = None
    ema_rampup: float = 0.05
    sigma_distribution: str = "lognormal"
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5
    val_sigmas: tuple[float, ...] = DEFAULT_VAL_SIGMAS
    val_max_images: int = 16
    val_batch: int = 4
    val_seed: int = 1234
    checkpoint_every: int = 500
    snapshot_every: int = 0
    log_every: int = 10
    sample_n: int = 8
    sample_steps: int = 18
    sample_every: int = 0
    sample_size: int | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    amp: str = "auto"
    progress: bool = True
    flip_lr: bool = True
    intensity_scale: float = 0.1
    init_from: str | None = None

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        self.val_sigmas = tuple(float(s) for s in self.val_sigmas)
        if self.modality not in ("ct", "mr"):
            raise ValueError(f"modality must be 'ct' or 'mr', got {self.modality!r}")
        if self.patch_size is not None and self.patch_size >= self.image_size:
            self.patch_size = None
        self.patch_mix = tuple((int(q), float(prob)) for q, prob in self.patch_mix)
        base = self.patch_size or self.image_size
        for q, prob in self.patch_mix:
            if not base < q <= self.image_size:
                raise ValueError(f"patch_mix size {q} must be above the patch size {base} and at most {self.image_size}")
            if prob <= 0:
                raise ValueError(f"patch_mix probability of size {q} must be positive, got {prob}")
        if sum(prob for _, prob in self.patch_mix) >= 1:
            raise ValueError("patch_mix probabilities must sum to less than 1 (the rest goes to the patch size)")
        if self.amp not in ("auto", "bf16", "fp16", "none"):
            raise ValueError(f"amp must be auto, bf16, fp16 or none, got {self.amp!r}")
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError("steps must be >= 0 and batch_size >= 1")

    def unet_config(self) -> UNetConfig:
        if self.architecture is not None:
            return UNetConfig.from_dict(self.architecture)
        return preset(self.preset)

    def norm(self) -> Normalization:
        return Normalization.from_dict(self.normalization) if self.normalization else default_normalization(self.modality)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        d["val_sigmas"] = list(self.val_sigmas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def edm_loss(
    prior: EDMPrior, net: nn.Module, y: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """Per-item EDM loss ``[B]``: ``lambda(sigma) * mean_pixels (D(y + sigma n) - y)^2``.

    ``y [B, C, H, W]`` clean, ``sigma [B]``, ``noise [B, C, H, W]`` standard normal.
    """
    s = sigma.view(-1, 1, 1, 1).to(y.dtype)
    d = prior.precondition(net, y + s * noise, s)
    weight = (s**2 + prior.sigma_data**2) / (s * prior.sigma_data) ** 2
    return (weight * (d.float() - y) ** 2).mean(dim=(1, 2, 3))


def _step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    # SeedSequence mixes (seed, step, rank) into independent streams; no state needs saving.
    s = int(np.random.SeedSequence([seed, step, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(s)


class Trainer:
    """Trains an :class:`EDMPrior` on a :class:`SliceDataset`.

    Args:
        config: the run settings.
        train_set: training slices (``sample_batch`` supplies crops).
        val_set: held-back whole slices (``None``: no validation loss).
        data_info: JSON-able description of the data (sources, licences, counts) for the checkpoint.
        resume: continue from ``out_dir/checkpoint`` if present.

    ``run()`` trains to ``config.steps`` and returns the EMA prior.
    """

    def __init__(
        self,
        config: TrainConfig,
        train_set: SliceDataset,
        val_set: SliceDataset | None = None,
        *,
        data_info: dict[str, Any] | None = None,
        resume: bool = False,
    ):
        self.cfg = cfg = config
        self.out = Path(cfg.out_dir)
        if cfg.threads:
            # On a shared, oversubscribed CPU one thread per process can be several times faster
            # than two (OpenMP threads stall waiting for each other).
            torch.set_num_threads(cfg.threads)
        self.train_set = train_set
        self.val_set = val_set if val_set is not None and len(val_set) > 0 else None
        self.data_info = dict(data_info or {})

        # Distributed set-up: torchrun sets WORLD_SIZE / RANK / LOCAL_RANK.
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.world > 1 and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo"
            dist.init_process_group(backend=backend)
        if self.world > 1 and torch.cuda.is_available() and cfg.device != "cpu":
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = resolve_device(cfg.device)
        if cfg.batch_size % self.world:
            raise ValueError(f"batch size {cfg.batch_size} is not divisible by {self.world} processes")
        self.local_batch = cfg.batch_size // self.world
        self.is_main = self.rank == 0

        self.amp_dtype: torch.dtype | None = None
        if self.device.type == "cuda":
            if cfg.amp in ("auto", "bf16") and torch.cuda.is_bf16_supported():
                self.amp_dtype = torch.bfloat16
            elif cfg.amp in ("auto", "fp16", "bf16"):
                self.amp_dtype = torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

        self.step = 0
        self.images_seen = 0
        self.skipped_steps = 0
        self.wall_time = 0.0
        self.last_val: float | None = None
        state_tensors: dict[str, torch.Tensor] | None = None
        state_json: dict[str, Any] = {}
        resume_dir = self.out / "checkpoint"
        if resume and not ckpt.is_checkpoint_dir(resume_dir) and ckpt.is_checkpoint_dir(self.out / "checkpoint.old"):
            resume_dir = self.out / "checkpoint.old"
        if resume and ckpt.is_checkpoint_dir(resume_dir):
            saved = ckpt.read_config(resume_dir)
            # The saved architecture wins: resuming must never silently change the network.
            cfg.architecture = saved["architecture"]
            state_tensors, state_json = ckpt.load_training_state(resume_dir)
            ema_state = ckpt.load_tensors(resume_dir / ckpt.WEIGHTS_FILE)
        init = None
        if state_tensors is None and cfg.init_from:
            init = self._initial_prior(cfg)
            cfg.architecture = init.net.config.to_dict()

        torch.manual_seed(cfg.seed + self.rank)
        net = UNet(cfg.unet_config())
        self.prior = EDMPrior(
            net,
            sigma_data=cfg.sigma_data,
            sigma_min=cfg.sigma_min,
            sigma_max=cfg.sigma_max,
            modality=cfg.modality,
            normalization=cfg.norm(),
            image_size=cfg.image_size,
            patch_size=cfg.patch_size or cfg.image_size,
        ).to(self.device)
        self.ema = copy.deepcopy(self.prior).requires_grad_(False).eval()
        self.model: nn.Module = self.prior.net
        self.opt = torch.optim.AdamW(
            self.prior.net.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay
        )

        if init is not None:
            # warm start: network and EMA from the given prior's (EMA) weights; fresh optimizer
            self.prior.net.load_state_dict(init.net.state_dict())
            self.ema.net.load_state_dict(init.net.state_dict())
        if state_tensors is not None:
            model_state = {k[len("model."):]: v for k, v in state_tensors.items() if k.startswith("model.")}
            ckpt.check_state_dict(self.prior.net, model_state, resume_dir / ckpt.STATE_FILE)
            self.prior.net.load_state_dict(model_state)
            ckpt.check_state_dict(self.ema.net, ema_state, resume_dir / ckpt.WEIGHTS_FILE)
            self.ema.net.load_state_dict(ema_state)
            ckpt.optimizer_from_tensors(self.opt, state_tensors, state_json["optimizer"])
            self.step = int(state_json["step"])
            self.images_seen = int(state_json["images_seen"])
            self.skipped_steps = int(state_json.get("skipped_steps", 0))
            self.wall_time = float(state_json.get("wall_time_s", 0.0))
            self.last_val = state_json.get("val_loss")
            if "scaler" in state_json and self.scaler.is_enabled():
                self.scaler.load_state_dict(state_json["scaler"])
            if "rng.torch" in state_tensors and self.rank == 0:
                torch.set_rng_state(state_tensors["rng.torch"])
            else:
                torch.manual_seed(cfg.seed + self.step * self.world + self.rank)
            if "rng.cuda" in state_tensors and self.device.type == "cuda" and self.rank == 0:
                torch.cuda.set_rng_state(state_tensors["rng.cuda"], self.device)

        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.model = DDP(self.prior.net, device_ids=[self.local_rank] if self.device.type == "cuda" else None)
        if self.device.type == "cuda":
            self.train_set.to(self.device)

    # ------------------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        """Linear warm-up to ``lr`` over ``warmup_steps``, then constant."""
        if self.cfg.warmup_steps <= 0:
            return self.cfg.lr
        return self.cfg.lr * min(1.0, (step + 1) / self.cfg.warmup_steps)

    def ema_beta(self) -> float:
        """EMA decay for the step just taken."""
        cfg = self.cfg
        if cfg.ema_halflife_images:
            hl = cfg.ema_halflife_images
            if cfg.ema_rampup:
                hl = min(hl, self.images_seen * cfg.ema_rampup)
            return 0.5 ** (cfg.batch_size / max(hl, 1e-8))
        # Early on a 0.999 average would be dominated by the random initialisation.
        return min(cfg.ema_decay, (1 + self.step) / (10 + self.step))

    @torch.no_grad()
    def update_ema(self) -> None:
        beta = self.ema_beta()
        ema_p = list(self.ema.net.parameters())
        p = list(self.prior.net.parameters())
        torch._foreach_lerp_(ema_p, p, 1.0 - beta)
        for eb, b in zip(self.ema.net.buffers(), self.prior.net.buffers(), strict=True):
            eb.copy_(b)

    def crop_and_batch(self, generator: torch.Generator) -> tuple[int, int]:
        """This step's crop size and rank-local batch: the patch size, or a ``patch_mix`` size
        drawn with its probability and a batch shrunk by the pixel ratio."""
        cfg = self.cfg
        base = cfg.patch_size or cfg.image_size
        if not cfg.patch_mix:
            return base, self.local_batch
        # Drawn from (seed, step) alone, never the rank: DDP ranks must agree on the crop size.
        u = float(np.random.default_rng([cfg.seed, self.step, _PATCH_MIX_STREAM]).random())
        edge = 0.0
        for q, prob in cfg.patch_mix:
            edge += prob
            if u < edge:
                return q, max(1, round(self.local_batch * (base / q) ** 2))
        return base, self.local_batch

    def train_step(self) -> float:
        """One optimizer step on a fresh batch; returns the (rank-local) mean loss."""
        cfg = self.cfg
        gen = _step_generator(cfg.seed, self.step, self.rank)
        crop, batch = self.crop_and_batch(gen)
        y = self.train_set.sample_batch(batch, gen, crop).to(self.device, non_blocking=True)
        sigma = sample_training_sigmas(
            batch,
            cfg.sigma_distribution,
            p_mean=cfg.p_mean,
            p_std=cfg.p_std,
            sigma_min=cfg.sigma_min,
            sigma_max=cfg.sigma_max,
            generator=gen,
        ).to(self.device)
        noise = torch.randn(y.shape, generator=gen).to(self.device, non_blocking=True)
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step)
        self.model.train()
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            loss = edm_loss(self.prior, self.model, y, sigma, noise).mean()
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.prior.net.parameters(), max_norm)
        if torch.isfinite(grad_norm) and torch.isfinite(loss):
            self.scaler.step(self.opt)
        else:
            # A rare non-finite batch must not poison the weights; the step still counts so that
            # the batch sequence stays identical across resumes.
            self.skipped_steps += 1
        self.scaler.update()
        self.step += 1
        self.images_seen += batch * self.world
        self.update_ema()
        return float(loss.detach())

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def validation_loss(self) -> tuple[float, dict[str, float]] | None:
        """EDM loss of the EMA model on whole held-back slices at ``val_sigmas``, fixed noise.

        The same images, sigmas and noise (``val_seed``) at every call, so values are comparable
        across checkpoints and runs. Returns ``(mean, {sigma: loss})`` or ``None`` without a split.
        """
        if self.val_set is None:
            return None
        cfg = self.cfg
        imgs = self.val_set.images[: cfg.val_max_images]
        gen = torch.Generator().manual_seed(cfg.val_seed)
        per_sigma: dict[str, float] = {}
        for s in cfg.val_sigmas:
            total = 0.0
            for start in range(0, imgs.shape[0], cfg.val_batch):
                y = imgs[start : start + cfg.val_batch].to(self.device)
                noise = torch.randn(y.shape, generator=gen).to(self.device)
                sig = torch.full((y.shape[0],), s, device=self.device)
                with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
                    total += float(edm_loss(self.ema, self.ema.net, y, sig, noise).sum())
            per_sigma[f"{s:g}"] = total / imgs.shape[0]
        return float(np.mean(list(per_sigma.values()))), per_sigma

    @staticmethod
    def _initial_prior(cfg: TrainConfig) -> EDMPrior:
        """The prior named by ``cfg.init_from``, checked to fit this run (modality, normalisation)."""
        from priors.registry import load_prior

        init = load_prior(cfg.init_from, "cpu")
        if init.modality not in (cfg.modality, "any"):
            raise PriorError(None, f"--init-from {cfg.init_from}: a {init.modality} prior cannot start a {cfg.modality} run")
        if init.normalization.to_dict() != cfg.norm().to_dict():
            raise PriorError(None, f"--init-from {cfg.init_from}: its intensity normalisation "
                                   f"{init.normalization.to_dict()} differs from this run's {cfg.norm().to_dict()}")
        if init.sigma_data != cfg.sigma_data:
            raise PriorError(None, f"--init-from {cfg.init_from}: sigma_data {init.sigma_data:g} differs from {cfg.sigma_data:g}")
        return init

    def metadata(self) -> dict[str, Any]:
        """Training summary and data description stored in the checkpoint's ``config.json``."""
        cfg = self.cfg
        if self.device.type == "cuda":
            dev = torch.cuda.get_device_name(self.device)
        else:
            dev = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        return {
            "training": {
                "steps": self.step,
                "images_seen": self.images_seen,
                "batch_size": cfg.batch_size,
                "image_size": cfg.image_size,
                "patch_size": cfg.patch_size or cfg.image_size,
                "patch_mix": [list(pair) for pair in cfg.patch_mix],
                "lr": cfg.lr,
                "weight_decay": cfg.weight_decay,
                "warmup_steps": cfg.warmup_steps,
                "grad_clip": cfg.grad_clip,
                "ema_decay": cfg.ema_decay,
                "ema_halflife_images": cfg.ema_halflife_images,
                "sigma_distribution": cfg.sigma_distribution,
                "p_mean": cfg.p_mean,
                "p_std": cfg.p_std,
                "loss": "EDM denoising score matching, lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2",
                "val_loss": self.last_val,
                "val_sigmas": list(cfg.val_sigmas),
                "initialised_from": cfg.init_from,
                "skipped_steps": self.skipped_steps,
                "wall_time_s": round(self.wall_time, 1),
                "hardware": dev,
                "world_size": self.world,
                "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "none",
                "seed": cfg.seed,
            },
            "data": self.data_info,
        }

    def save(self) -> Path:
        """Atomically replace ``out_dir/checkpoint`` with the current state (rank 0 only)."""
        self.ema.metadata = self.metadata()
        opt_tensors, opt_json = ckpt.optimizer_to_tensors(self.opt)
        tensors = {f"model.{k}": v for k, v in self.prior.net.state_dict().items()}
        tensors.update(opt_tensors)
        tensors["rng.torch"] = torch.get_rng_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        state_json = {
            "step": self.step,
            "images_seen": self.images_seen,
            "skipped_steps": self.skipped_steps,
            "wall_time_s": self.wall_time,
            "val_loss": self.last_val,
            "optimizer": opt_json,
            "train_config": self.cfg.to_dict(),
        }
        if self.scaler.is_enabled():
            state_json["scaler"] = self.scaler.state_dict()
        path = ckpt.save_checkpoint(
            self.ema,
            self.out / "checkpoint",
            weights=self.ema.net.state_dict(),
            training_state=tensors,
            training_state_json=state_json,
        )
        if self.cfg.snapshot_every and self.step % self.cfg.snapshot_every == 0:
            ckpt.save_checkpoint(self.ema, self.out / "snapshots" / f"step_{self.step:07d}", weights=self.ema.net.state_dict())
        return path

    def _log(self, record: dict[str, Any]) -> None:
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _trim_metrics(self) -> None:
        """Drop metric lines past the resumed step (written after the last checkpoint)."""
        path = self.out / "metrics.jsonl"
        if not path.exists():
            return
        keep = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= self.step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue
        path.write_text("".join(k + "\n" for k in keep))

    def plot_val_curve(self) -> None:
        """``val_loss.png``: validation (and smoothed training) loss against step."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = self.out / "metrics.jsonl"
        if not path.exists():
            return
        recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        val = [(r["step"], r["val_loss"]) for r in recs if r.get("val_loss") is not None]
        tr = [(r["step"], r["loss"]) for r in recs if r.get("loss") is not None]
        if not (val or tr):
            return
        fig, ax = plt.subplots(figsize=(6, 4))
        if tr:
            ax.plot(*zip(*tr, strict=True), color="0.7", lw=0.8, label="train loss (training sigmas)")
        if val:
            ax.plot(*zip(*val, strict=True), "o-", color="C0", label="validation loss (EMA, whole slices, fixed sigmas)")
        ax.set_xlabel("step")
        ax.set_ylabel("EDM-weighted loss")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
        patch = self.cfg.patch_size or self.cfg.image_size
        ax.set_title(f"{self.cfg.modality.upper()} prior, {self.cfg.image_size}px, patch {patch}")
        fig.tight_layout()
        tmp = self.out / ".val_loss.png.tmp"
        fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)
        os.replace(tmp, self.out / "val_loss.png")

    def checkpoint(self) -> None:
        """Validation, checkpoint, sample grid and curve (rank 0)."""
        v = self.validation_loss()
        rec: dict[str, Any] = {"step": self.step, "images_seen": self.images_seen}
        if v is not None:
            self.last_val, rec["val_loss_by_sigma"] = v
            rec["val_loss"] = self.last_val
        self.save()
        every = self.cfg.sample_every
        # Sampling whole slices costs 2 * steps - 1 network passes per image: on a CPU it may be
        # done at every k-th checkpoint only (and always at the last one).
        if self.cfg.sample_n > 0 and (not every or self.step % every == 0 or self.step >= self.cfg.steps):
            gen = torch.Generator().manual_seed(self.cfg.seed + 7)
            sample_grid_png(
                self.ema,
                self.cfg.sample_n,
                self.out / "samples" / f"step_{self.step:07d}.png",
                self.cfg.sample_size or self.cfg.image_size,
                gen,
                steps=self.cfg.sample_steps,
            )
        self._log(rec)
        self.plot_val_curve()

    def run(self) -> EDMPrior:
        """Train until ``config.steps``; returns the EMA prior (eval mode)."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
            self._trim_metrics()
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            disable=not (self.is_main and cfg.progress),
            desc=f"train {cfg.modality}",
            unit="step",
            dynamic_ncols=True,
            file=sys.stderr,
        )
        losses: list[float] = []
        t_int = time.perf_counter()
        steps_int = 0
        try:
            while self.step < cfg.steps:
                t0 = time.perf_counter()
                losses.append(self.train_step())
                self.wall_time += time.perf_counter() - t0
                steps_int += 1
                bar.update(1)
                last = self.step >= cfg.steps
                if self.is_main and (self.step % cfg.log_every == 0 or last):
                    dt = time.perf_counter() - t_int
                    # In base-patch images: a patch_mix step of fewer, larger crops counts as a full batch.
                    ips = steps_int * cfg.batch_size / max(dt, 1e-9)
                    rec = {
                        "step": self.step,
                        "loss": float(np.mean(losses)),
                        "images_per_s": round(ips, 2),
                        "lr": self.lr_at(self.step - 1),
                        "wall_time_s": round(self.wall_time, 1),
                    }
                    self._log(rec)
                    val_text = f"{self.last_val:.4f}" if self.last_val else "-"
                    bar.set_postfix(loss=f"{rec['loss']:.4f}", img_s=f"{ips:.1f}", val=val_text)
                    losses.clear()
                    t_int, steps_int = time.perf_counter(), 0
                if self.is_main and (self.step % cfg.checkpoint_every == 0 or last):
                    self.checkpoint()
                    t_int, steps_int = time.perf_counter(), 0
                    losses.clear()
        finally:
            bar.close()
            if self.world > 1 and dist.is_initialized():
                dist.barrier()
        return self.ema


def train(
    config: TrainConfig,
    train_set: SliceDataset,
    val_set: SliceDataset | None = None,
    *,
    data_info: dict[str, Any] | None = None,
    resume: bool = False,
) -> EDMPrior:
    """Train (or resume) a prior; see :class:`Trainer`. Returns the EMA prior."""
    return Trainer(config, train_set, val_set, data_info=data_info, resume=resume).run()
