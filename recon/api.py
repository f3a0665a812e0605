"""One entry point for every reconstruction method: posterior samplers and classical baselines.

``reconstruct(y, op, prior, sampler="dds")`` draws posterior samples with a diffusion prior;
``reconstruct(y, op, method="tv")`` runs a classical solver. Both return a :class:`Result` in the
same physical units, so pipelines treat all methods alike.

Units. ``y`` is physical: CT line integrals of attenuation (the operator acts on ``mu`` in 1/mm),
MRI complex k-space. Results are in the prior's physical unit: HU for CT
(``HU = 1000 (mu - mu_water) / mu_water``, ``mu_water`` from :mod:`operators.noise`), magnitude for
MR (the scale of the zero-filled image), the operator's own unit for other operators. CT data
that are not HU-calibrated (a laboratory or synchrotron source, attenuation per pixel) are
reconstructed with ``hu=False``: results stay attenuation in the operator's units (``"1/mm"``, 1/mm
of the geometry's lengths), for classical methods and samplers alike.

Batching. ``y`` holds ``B`` slices; ``samples = S`` posterior samples per slice are drawn as one batch
of ``B * S`` items (slice-major: item ``b * S + s``). ``mean`` and ``std`` are ``[B, C, H, W]``,
``samples`` ``[B, S, C, H, W]``.

Warm start. By default (``init="auto"``) a sampler starts from the TV (CT) or CS-TV (MR)
reconstruction diffused to a moderate noise level rather than from pure noise; ``init=None`` gives
the papers' cold start.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from operators import MU_WATER_PER_MM
from operators.base import LinearOperator
from priors.device import resolve_device
from priors.precision import network_precision, resolve_precision
from recon.samplers import SAMPLERS
from recon.samplers.common import counting_denoiser_calls, noise_residual, relative_residual
from recon.samplers.normalization import NormalizedProblem, normalize_problem

__all__ = ["Result", "reconstruct", "SAMPLERS", "METHODS", "DEFAULT_ESTIMATOR", "VOLUME_METHODS",
           "Z_PRECISION_1MM", "available_methods", "default_estimator", "check_options", "method_options", "resolve_init"]

#: Default ``sigma_max`` (normalised units: the CT window's 3072 HU, the MR slice's 99.9th percentile)
#: of a warm-started sampler (``init=``), per operator kind: high enough to remove the classical
#: method's artefacts, low enough to keep its anatomy. Sparse-view TV leaves streaks and flattened
#: texture that a higher level washes out; CS-TV of undersampled MR is closer to the truth. The best
#: on the validation patients (``benchmarks/sampler-settings.md``).
INIT_SIGMA_MAX: dict[str | None, float] = {"ct": 0.4, "mr": 0.2, None: 0.2}

#: The default estimator of every sampler entry point, per operator kind: the mean of ``samples``
#: posterior samples of ``nfe`` network evaluations each. Where the posterior is broad (sparse-view CT)
#: several short chains beat one long one - a single posterior sample has twice the MMSE error of the
#: posterior mean - and their spread gives the std series; CT takes 8 chains (96 evaluations, about
#: 18 s per 256 x 256 slice on 2 CPU cores). Where it is narrow (MR from a CS-TV start) one long
#: chain of 50 is better (measurements: ``benchmarks/sampler-settings.md``).
DEFAULT_ESTIMATOR: dict[str | None, tuple[int, int]] = {"ct": (12, 8), "mr": (50, 1), None: (50, 1)}


def default_estimator(modality: str | None) -> tuple[int, int]:
    """``(nfe, samples)`` used when a caller gives neither, for operator kind ``modality``."""
    return DEFAULT_ESTIMATOR.get(modality, DEFAULT_ESTIMATOR[None])

#: Methods with a volume form (``reconstruct(..., volume=True)``): slices coupled along z (DDS by
#: its data-consistency step, TV by total variation over (z, y, x)).
VOLUME_METHODS = ("dds", "tv")

#: Precision (normalised units^-2) of the Gaussian prior on the difference of two slices 1 mm
#: apart that couples a volume's slices in DDS: the difference's std grows with the spacing, so
#: ``z_precision = Z_PRECISION_1MM / spacing_mm^2`` (benchmarks/sampler-settings.md).
Z_PRECISION_1MM = 1.0e3

#: The warm start ``init="auto"`` (the default) uses for each operator kind.
AUTO_INIT = {"ct": "tv", "mr": "cs_tv"}

#: Classical methods: public name -> function name in :mod:`recon.classical` (imported lazily).
METHODS: dict[str, str] = {
    "fbp": "fbp",
    "sirt": "sirt",
    "cgls": "cgls",
    "tv": "tv_pdhg",
    "zero_filled": "zero_filled",
    "cg_sense": "cg_sense",
    "cs_tv": "cs_tv",
}

#: Which operator kind each classical method needs (checked before running).
_METHOD_MODALITY = {"fbp": "ct", "sirt": "ct", "cgls": "ct", "tv": "ct",
                    "zero_filled": "mr", "cg_sense": "mr", "cs_tv": "mr"}


def available_methods() -> list[str]:
    """Every name ``reconstruct`` accepts: the samplers, then the classical methods."""
    return list(SAMPLERS) + list(METHODS)


@dataclass
class Result:
    """A reconstruction in physical units.

    Attributes:
        mean: ``[B, C, H, W]`` estimate (posterior mean over samples; the image for classical methods).
        std: ``[B, C, H, W]`` pixel-wise standard deviation over samples (zeros for one sample or a
            classical method).
        samples: ``[B, S, C, H, W]`` the individual samples.
        nfe: network evaluations per batch (0 for classical methods).
        seconds: wall-clock time of the whole call.
        residual: ``[B]`` relative data residual ``||A u - y|| / ||y||`` of the estimate ``u`` in the
            operator's units (for complex MR the complex mean of the samples, before magnitude).
        noise_residual: ``[B]`` the same misfit in units of the measurement noise, ``sqrt(mean
            |A u - y|^2 / std^2)``: about 1 when ``u`` explains the data to the noise level (see
            :func:`recon.samplers.common.noise_residual`); ``None`` without a noise model.
        method: the sampler or classical method name.
        settings: everything needed to repeat the run (options, seed, schedule, normalisation).
        unit: physical unit of ``mean``/``std``/``samples`` (``"HU"``, ``"a.u."``, ...).
        start: ``[B, C, H, W]`` the classical reconstruction a warm-started sampler began from, in
            the same unit (magnitude for complex images); None for a cold start or a classical method.
    """

    mean: torch.Tensor
    std: torch.Tensor
    samples: torch.Tensor
    nfe: int
    seconds: float
    residual: torch.Tensor
    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    unit: str = ""
    start: torch.Tensor | None = None
    noise_residual: torch.Tensor | None = None


@dataclass
class _Request:
    """One checked call of :func:`reconstruct`: what every method, sampler or classical, needs.

    ``y`` is batched and on ``device``; ``modality`` is the operator's (``"ct"``, ``"mr"`` or
    ``None``); ``noise_std`` is in the units of ``y`` (from ``i0`` for CT dose); ``t0`` the call's start.
    """

    name: str
    y: torch.Tensor
    op: LinearOperator
    prior: Any
    modality: str | None
    noise_std: float | torch.Tensor | None
    i0: float | None
    device: torch.device
    t0: float
    options: dict[str, Any]
    volume: bool = False
    slice_spacing_mm: float | None = None
    hu: bool = True


def _scalar_or_desc(v) -> Any:
    if v is None or isinstance(v, (int, float, str, bool)):
        return v
    if isinstance(v, torch.Tensor):
        return float(v) if v.numel() == 1 else f"tensor{tuple(v.shape)}"
    return repr(v)


def _dose_noise_std(y: torch.Tensor, i0: float) -> torch.Tensor:
    """Per-ray std of log-transformed Poisson data at ``i0`` photons (delta method)."""
    from operators.noise import line_integral_noise_variance

    return line_integral_noise_variance(y.clamp_min(0), float(i0)).sqrt()


def _check_modality(prior, op_mod: str | None) -> None:
    pm = getattr(prior, "modality", "any")
    if pm in ("ct", "mr") and op_mod is not None and pm != op_mod:
        kind = {"ct": "a Radon (CT) operator", "mr": "a Fourier (MR) operator"}[op_mod]
        raise ValueError(f"prior modality {pm!r} does not match {kind}; use a {op_mod!r} prior")


def _batched(y: torch.Tensor, op: LinearOperator) -> torch.Tensor:
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"y must be a torch.Tensor, got {type(y).__name__}")
    if y.ndim == len(op.range_shape):
        y = y.unsqueeze(0)
    op.check_range(y)
    return y


def reconstruct(
    y: torch.Tensor,
    op: LinearOperator,
    prior=None,
    *,
    sampler: str = "dds",
    method: str | None = None,
    nfe: int | None = None,
    samples: int | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    noise_std: float | torch.Tensor | None = None,
    i0: float | None = None,
    callback: Callable | None = None,
    precision: str = "auto",
    volume: bool = False,
    slice_spacing_mm: float | None = None,
    hu: bool = True,
    **options: Any,
) -> Result:
    """Reconstruct images from measurements with a posterior sampler or a classical method.

    Args:
        y: ``[B, *op.range_shape]`` (or one unbatched item) physical measurements: CT line integrals
            ``[B, 1, n_angles, n_detectors]``; MR k-space ``[B, n_coils, H, W]`` complex.
        op: the forward operator (acting on attenuation in 1/mm for CT, complex images for MR).
        prior: a :class:`priors.base.Prior`; required for samplers, unused by classical methods.
        sampler: ``"dds"`` (default), ``"dps"`` or ``"song22"`` (see :data:`SAMPLERS`).
        method: a classical method (:data:`METHODS`: ``fbp``, ``sirt``, ``cgls``, ``tv``,
            ``zero_filled``, ``cg_sense``, ``cs_tv``) or a sampler name; overrides ``sampler``.
        nfe: network evaluations per sample; None: :func:`default_estimator` of the operator's kind.
        samples: posterior samples per slice ``S`` (drawn as one batch of ``B * S``); None: the
            default as for ``nfe``.
        seed: seeds the one ``torch.Generator`` (CPU, so results do not depend on the device).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
        noise_std: measurement noise std in the units of ``y`` (scalar or broadcastable to ``y``;
            for complex k-space ``sqrt(E|n|^2)``). ``None``: noise-free, unless ``i0`` is given.
        i0: CT photons per ray: sets ``noise_std = sqrt(exp(y) / i0)`` per ray (Poisson dose model,
            :func:`operators.noise.line_integral_noise_variance`) and is passed to ``tv``.
        callback: per-step ``callback(step, sigma, x, x0_hat)`` for samplers (normalised units).
        precision: the network's arithmetic for samplers: ``"auto"`` (bfloat16 autocast where the
            device computes it natively - CPUs with AVX512-BF16/AMX, CUDA GPUs with bf16 - else
            float32), ``"fp32"`` or ``"bf16"`` (:mod:`priors.precision`). Data consistency and the
            returned images are float32 either way.
        volume: the batch is one contiguous stack of slices (z along dimension 0): DDS couples
            neighbouring slices in its data-consistency step (``z_precision``, see
            :func:`recon.samplers.dds.sample`) and starts from the volume form of its warm start
            where there is one; TV solves 3D TV (:func:`recon.classical.tv_pdhg`). Methods:
            :data:`VOLUME_METHODS`. One slice is reconstructed as usual.
        slice_spacing_mm: the step between the volume's slices; sets the default coupling
            ``z_precision = Z_PRECISION_1MM / slice_spacing_mm^2``. Required with ``volume``.
        hu: CT only. True (default): results in Hounsfield units,
            ``HU = 1000 (mu - mu_water) / mu_water``. False, for data that are not HU-calibrated:
            results (``mean``, ``std``, ``samples``, ``start``) stay attenuation in the operator's
            units, unit ``"1/mm"``; a sampler still maps them through its prior's normalisation,
            which for a clinical (HU) prior assumes 1/mm of a water-calibrated scanner.
        **options: passed to the sampler (e.g. ``eta``, ``cg_iters``, ``zeta``, ``lam``) or to the
            classical function (e.g. ``n_iter``, ``weight``). Samplers also take ``init``: the
            classical method whose reconstruction, diffused to ``sigma_max`` (default
            :data:`INIT_SIGMA_MAX` of the operator kind with a warm start), starts the chain (Come-Closer-Diffuse-Faster,
            Chung, Sim, Ye, CVPR 2022). ``"auto"`` (default): :data:`AUTO_INIT` (TV for CT, CS-TV
            for MR; a cold start for other operators); ``None`` or ``"none"``: pure noise, as in the
            papers; or a method name (``"fbp"``, ``"zero_filled"``, ...). With the bundled priors
            at 50 NFE the warm start was better than the cold one in every setting measured.
            ``scale`` (MR): the normalisation scale instead of the zero-filled image's percentile.

    Returns:
        :class:`Result` in physical units (HU for CT, 1/mm with ``hu=False``, magnitude for MR).

    Raises:
        ValueError: unknown sampler/method (the message lists the options), a prior whose modality
            does not match the operator, a missing prior, or malformed ``y``.
    """
    t0 = time.perf_counter()
    name = method if method is not None else sampler
    if name not in SAMPLERS and name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(available_methods())}")
    default_nfe, default_samples = default_estimator(op.modality)
    nfe = default_nfe if nfe is None else int(nfe)
    samples = default_samples if samples is None else int(samples)
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if volume:
        if name not in VOLUME_METHODS:
            raise ValueError(f"{name!r} has no volume form; use one of: {', '.join(VOLUME_METHODS)}")
        if slice_spacing_mm is None or not slice_spacing_mm > 0:
            raise ValueError(f"volume=True needs the slice spacing (slice_spacing_mm > 0), got {slice_spacing_mm!r}")
    dev = resolve_device(device)
    op = op.to(dev)
    y = _batched(y, op).to(dev)
    op_mod = op.modality
    if not hu and op_mod != "ct":
        raise ValueError("hu=False (attenuation instead of HU) applies to CT operators only")
    if i0 is not None:
        if op_mod == "mr" or y.is_complex():
            raise ValueError("i0 (photon count) applies to CT line integrals only")
        if noise_std is not None:
            raise ValueError("give either noise_std or i0, not both")
        noise_std = _dose_noise_std(y, i0)
    check_options(name, options)
    req = _Request(name=name, y=y, op=op, prior=prior, modality=op_mod, noise_std=noise_std, i0=i0, device=dev,
                   t0=t0, options=dict(options), volume=bool(volume) and y.shape[0] > 1,
                   slice_spacing_mm=slice_spacing_mm, hu=bool(hu))
    if name in METHODS:
        return _classical(req)
    if prior is None:
        raise ValueError(f"sampler {name!r} needs a prior (or pass method= for a classical method)")
    _check_modality(prior, op_mod)
    compute_dtype = resolve_precision(precision, dev)
    with network_precision(prior, compute_dtype):
        result = _sample(req, nfe=nfe, samples=samples, seed=seed, callback=callback)
    result.settings["precision"] = "bf16" if compute_dtype == torch.bfloat16 else "fp32"
    return result


# arguments ``reconstruct`` supplies itself; the rest of a function's keyword arguments are options
_SUPPLIED = {"prior", "op", "y", "nfe", "generator", "noise_std", "callback", "i0", "x_init", "z_slices"}


def method_options(name: str) -> list[str]:
    """The options (keyword arguments beyond those ``reconstruct`` supplies) a sampler or method takes."""
    import inspect

    if name not in SAMPLERS and name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(available_methods())}")
    if name in SAMPLERS:
        fn = SAMPLERS[name]
    else:
        import recon.classical as classical

        fn = getattr(classical, METHODS[name])
    params = inspect.signature(fn).parameters
    accepted = [k for k, p in params.items() if p.kind is p.KEYWORD_ONLY or p.default is not p.empty]
    return [k for k in accepted if k not in _SUPPLIED] + (["scale", "init"] if name in SAMPLERS else [])


def check_options(name: str, options: dict[str, Any]) -> None:
    """Refuse options the sampler / method does not take, listing the ones it does."""
    accepted = method_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"{name} has no option {', '.join(map(repr, unknown))}; its options: {', '.join(accepted)}")


def resolve_init(init: str | None, op_mod: str | None) -> str | None:
    """The classical method a sampler starts from: ``"auto"`` -> :data:`AUTO_INIT` for the operator's
    kind (``None`` for other operators); ``None`` / ``"none"`` -> a cold start from pure noise."""
    if init is None or init == "none":
        return None
    if init == "auto":
        return AUTO_INIT.get(op_mod) if op_mod is not None else None
    if init not in METHODS:
        raise ValueError(f"init must be 'auto', 'none' or a classical method ({', '.join(METHODS)}), got {init!r}")
    _check_method_operator(init, op_mod)
    return init


def _warm_start(init: str, req: _Request, prob: NormalizedProblem) -> torch.Tensor:
    """Classical reconstruction ``init`` of ``req.y`` in the sampler's normalised domain ``[B, *domain]``."""
    u, _ = _classical_solution(init, req.y, req.op, req.i0, _volume_options(init, req))
    return prob.from_operator_units(u)


def _volume_options(name: str, req: _Request) -> dict[str, Any]:
    """The options that make classical method ``name`` solve ``req``'s batch as one volume (none
    when ``req`` is slice-wise or ``name`` has no volume form: MR warm starts stay 2D, since a
    Fourier operator carries no pixel size to weigh z against)."""
    if not req.volume or name not in VOLUME_METHODS:
        return {}
    return {"volume": True, "slice_spacing_mm": req.slice_spacing_mm}


def _sample(req: _Request, *, nfe: int, samples: int, seed: int, callback: Callable | None) -> Result:
    y, op, prior, options = req.y, req.op, req.prior, dict(req.options)
    B, S = y.shape[0], samples
    init = resolve_init(options.pop("init", "auto"), req.modality)
    if init is not None:
        options.setdefault("sigma_max", INIT_SIGMA_MAX.get(req.modality, INIT_SIGMA_MAX[None]))
    was_training = prior.training
    prior.to(req.device).eval()
    try:
        prob = normalize_problem(prior, op, y, req.noise_std, modality=req.modality, scale=options.pop("scale", None))
        if req.volume:
            # Each sample is a whole volume: items ordered sample-major so volumes are contiguous.
            options.setdefault("z_precision", Z_PRECISION_1MM / float(req.slice_spacing_mm) ** 2)
            options["z_slices"] = B

        def replicate(t: torch.Tensor) -> torch.Tensor:
            return t.repeat(S, *([1] * (t.ndim - 1))) if req.volume else t.repeat_interleave(S, dim=0)

        y_rep = replicate(prob.y)
        ns = prob.noise_std
        if isinstance(ns, torch.Tensor) and ns.ndim == y.ndim and ns.shape[0] == B and B > 1:
            ns = replicate(ns)
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        start = None if init is None else _warm_start(init, req, prob)
        x_init = None if start is None else replicate(start)
        with counting_denoiser_calls(prior) as calls:
            x = SAMPLERS[req.name](prior, op, y_rep, nfe=nfe, generator=gen, noise_std=ns, callback=callback,
                                   x_init=x_init, **options)
    finally:
        prior.train(was_training)
    with torch.no_grad():
        dom = tuple(op.domain_shape)
        xs = x.reshape(S, B, *dom).transpose(0, 1) if req.volume else x.reshape(B, S, *dom)
        # [B, S, C, H, W]: the prior's unit (magnitude for complex images), or CT attenuation without HU
        to_output = prob.to_physical if req.hu else prob.to_operator_units
        phys = to_output(xs)
        mean = phys.mean(dim=1)
        std = phys.std(dim=1) if S > 1 else torch.zeros_like(mean)
        u = prob.to_operator_units(xs.mean(dim=1))
        residual = relative_residual(op, u, y)
        misfit = noise_residual(op, u, y, req.noise_std)
    settings = {
        "sampler": req.name,
        "nfe": nfe,
        "samples": S,
        "seed": int(seed),
        "device": str(req.device),
        "noise_std": _scalar_or_desc(req.noise_std),
        "options": {k: _scalar_or_desc(v) for k, v in options.items()},
        "init": init,
        "volume": req.volume,
        "slice_spacing_mm": req.slice_spacing_mm if req.volume else None,
        "prior": {"modality": getattr(prior, "modality", "any"),
                  "normalization": prior.normalization.to_dict()},
        "operator_modality": req.modality,
        "normalised_scale": prob.scale.tolist(),
        "normalised_offset": prob.offset,
        "mu_water_per_mm": MU_WATER_PER_MM if req.modality == "ct" else None,
        "hu": req.hu if req.modality == "ct" else None,
    }
    return Result(mean=mean, std=std, samples=phys, nfe=calls[0], seconds=time.perf_counter() - req.t0,
                  residual=residual, method=req.name, settings=settings, unit=prob.unit if req.hu else "1/mm",
                  start=None if start is None else to_output(start).detach(), noise_residual=misfit)


def _check_method_operator(name: str, op_mod: str | None) -> None:
    need = _METHOD_MODALITY[name]
    if op_mod is not None and op_mod != need:
        raise ValueError(f"method {name!r} needs a {'Radon (CT)' if need == 'ct' else 'Fourier (MR)'} operator")


def _classical_solution(name, y, op, i0, options) -> tuple[torch.Tensor, dict[str, Any]]:
    """Run classical method ``name`` (its operator kind already checked); returns its image in operator
    units and the options it ran with."""
    import recon.classical as classical

    fn = getattr(classical, METHODS[name])
    kwargs = dict(options)
    if name == "tv" and i0 is not None:
        kwargs.setdefault("i0", i0)
    with torch.no_grad():
        return fn(op, y, **kwargs), kwargs


def _classical(req: _Request) -> Result:
    name, op, prior = req.name, req.op, req.prior
    _check_method_operator(name, req.modality)
    if prior is not None:
        _check_modality(prior, req.modality)
    u, kwargs = _classical_solution(name, req.y, op, req.i0, {**req.options, **_volume_options(name, req)})
    with torch.no_grad():
        residual = relative_residual(op, u, req.y)
        misfit = noise_residual(op, u, req.y, req.noise_std)
        if req.modality == "ct" and req.hu:
            image, unit = 1000.0 * (u - MU_WATER_PER_MM) / MU_WATER_PER_MM, "HU"
        elif req.modality == "ct":
            image, unit = u, "1/mm"
        elif u.is_complex():
            image, unit = u.abs(), "a.u."
        else:
            image = u
            unit = prior.normalization.unit if prior is not None else ""
    settings = {"method": name, "function": f"recon.classical.{METHODS[name]}", "device": str(req.device),
                "noise_std": _scalar_or_desc(req.noise_std), "i0": req.i0, "hu": req.hu if req.modality == "ct" else None,
                "options": {k: _scalar_or_desc(v) for k, v in kwargs.items()}}
    return Result(mean=image, std=torch.zeros_like(image), samples=image.unsqueeze(1), nfe=0,
                  seconds=time.perf_counter() - req.t0, residual=residual, method=name, settings=settings, unit=unit,
                  noise_residual=misfit)
