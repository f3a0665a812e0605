"""Posterior samplers: one plain function per published algorithm.

Every sampler has the signature ``sample(prior, op, y, *, nfe, generator, noise_std=None,
callback=None, **options) -> x`` and works in the prior's normalised image domain
(:mod:`recon.samplers.common` explains the conventions, :mod:`recon.samplers.normalization` builds
normalised problems).

* ``"song22"``: Song, Shen, Xing, Ermon, ICLR 2022 -- predictor-corrector with measurement-space
  data consistency (:mod:`recon.samplers.song22`).
* ``"dps"``: Chung et al., ICLR 2023 -- diffusion posterior sampling, gradient through the denoiser
  (:mod:`recon.samplers.dps`).
* ``"dds"``: Chung, Lee, Ye, ICLR 2024 -- decomposed diffusion sampling, CG on the denoised estimate
  (:mod:`recon.samplers.dds`).
"""

from __future__ import annotations

from collections.abc import Callable

from recon.samplers import dds, dps, song22

SAMPLERS: dict[str, Callable] = {
    "dds": dds.sample,
    "dps": dps.sample,
    "song22": song22.sample,
}

__all__ = ["SAMPLERS", "dds", "dps", "song22"]
