"""Score-based priors: networks, EDM preconditioning, noise schedules, training, checkpoints and the
bundled-prior registry. The one contract samplers see is ``prior.denoise(x, sigma)``."""

from priors.base import Prior, sigma_as_batch
from priors.checkpoint import load_checkpoint, read_config, save_checkpoint
from priors.datasets import SliceDataset, split_by_patient
from priors.device import resolve_device
from priors.edm import EDMPrior, edm_coefficients
from priors.errors import PriorError
from priors.network import PRESETS, UNet, UNetConfig, preset
from priors.normalization import CT_WINDOW, MR_PERCENTILE, Normalization
from priors.registry import available_priors, load_prior
from priors.sampling import heun_sample, sample, sample_grid_png
from priors.schedules import (
    karras_sigmas,
    loglinear_sigmas,
    sample_lognormal_sigmas,
    sample_loguniform_sigmas,
    sample_training_sigmas,
)
from priors.training import TrainConfig, Trainer, train

__all__ = [
    "Prior",
    "EDMPrior",
    "PriorError",
    "UNet",
    "UNetConfig",
    "PRESETS",
    "preset",
    "Normalization",
    "CT_WINDOW",
    "MR_PERCENTILE",
    "SliceDataset",
    "split_by_patient",
    "TrainConfig",
    "Trainer",
    "train",
    "load_prior",
    "available_priors",
    "load_checkpoint",
    "save_checkpoint",
    "read_config",
    "karras_sigmas",
    "loglinear_sigmas",
    "sample_lognormal_sigmas",
    "sample_loguniform_sigmas",
    "sample_training_sigmas",
    "heun_sample",
    "sample",
    "sample_grid_png",
    "edm_coefficients",
    "sigma_as_batch",
    "resolve_device",
]
