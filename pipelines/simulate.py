"""``recon simulate``: turn a DICOM series into reduced-dose sinograms or undersampled k-space.

CT: each slice (HU) becomes attenuation (1/mm), is projected at its native resolution with ASTRA's
area-integrating ``strip`` kernel onto a detector matched to the reconstruction grid, and photon
noise for ``dose x I0`` photons per detector element is added (Poisson transmission model). Projecting
from the native grid and reconstructing on a coarser grid with a different kernel avoids the
"inverse crime" of simulating and reconstructing with the same discretisation.

MR: each magnitude slice is resized to the reconstruction grid, multiplied by coil sensitivities
(for ``--coils > 1``), Fourier transformed (centred, orthonormal) and undersampled with a seeded mask.

The output directory holds the measurement (``geometry.json`` + ``sinogram.npy`` or ``kspace.json`` +
``kspace.npy``), the patient/study identity and a reference to the DICOM series so that
``recon reconstruct`` can write a derived series into the same study, and ``ground_truth.npy``:
the reference images on the reconstruction grid (HU or magnitude) for quality metrics.

With ``--dicom`` (implied by ``--push``) it also holds ``dicom/``: what the simulated acquisition
looks like to a reader, as a derived DICOM series of the source study (CT: FBP of the simulated
sinogram, in HU; MR: zero-filled magnitude), referencing the source images. ``--push`` stores that
series on the PACS, in the source study, and checks that the server lists it there.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.pacs_options import add_pacs_options, check_push, push_outputs, resolve_input
from recon.errors import InputError
from recon.io.atomic import atomic_save_npy, ensure_output_dir
from recon.io.dicom_read import Series, read_series
from recon.io.kspace_write import write_kspace_dir
from recon.io.sinogram_write import write_sinogram_dir

GROUND_TRUTH_FILE = "ground_truth.npy"
#: ``--dicom``: the simulated acquisition as a derived series (``OUT/dicom/IM0001.dcm``, ...).
DICOM_DIR = "dicom"
#: SeriesNumber of that series: the source's plus this (``recon reconstruct`` uses + 1000).
SIMULATED_SERIES_OFFSET = 2000

# Full-dose photon count per detector element (unattenuated), the reference that --dose scales.
FULL_DOSE_I0 = 1.0e5
# Views of the full-dose reference acquisition: dose fraction = views / FULL_VIEWS x photon fraction.
FULL_VIEWS = {"parallel": 720, "fan": 1440}
# A clinical fan-beam geometry (source-isocentre and isocentre-detector distances of a typical
# third-generation scanner).
FAN_SOURCE_ORIGIN_MM = 595.0
FAN_ORIGIN_DETECTOR_MM = 490.6


@dataclass(frozen=True)
class CTSimulation:
    """Settings of a simulated CT acquisition."""

    views: int = 32
    dose: float = 1.0
    geometry: str = "parallel"
    size: int = 256
    i0_full: float = FULL_DOSE_I0
    electronic_noise: float = 0.0
    noise: bool = True
    seed: int = 0

    def validate(self) -> None:
        if self.views < 1:
            raise ValueError(f"--views is {self.views}, expected an integer >= 1")
        if not (0 < self.dose <= 1e3 and math.isfinite(self.dose)):
            raise ValueError(f"--dose is {self.dose}, expected a photon fraction > 0 (1 = full dose)")
        if self.geometry not in FULL_VIEWS:
            raise ValueError(f"--geometry is {self.geometry!r}, expected one of {tuple(FULL_VIEWS)}")
        if self.size < 8:
            raise ValueError(f"--size is {self.size}, expected at least 8 pixels")
        if not self.i0_full > 0:
            raise ValueError(f"--i0 is {self.i0_full}, expected photons > 0")

    @property
    def i0(self) -> float:
        """Unattenuated photons per detector element at this dose."""
        return self.i0_full * self.dose

    @property
    def relative_dose(self) -> float:
        """Dose relative to the full-dose reference: view fraction x photon fraction."""
        return self.views / FULL_VIEWS[self.geometry] * self.dose


@dataclass(frozen=True)
class MRSimulation:
    """Settings of a simulated undersampled MR acquisition."""

    acceleration: float = 4.0
    mask: str = "equispaced"
    center_fraction: float = 0.08
    coils: int = 1
    size: int = 256
    noise_std: float = 0.0
    seed: int = 0


# --------------------------------------------------------------------------------------- CT
def _square_spacing(series: Series, where: Path) -> float:
    dr, dc = series.pixel_spacing_mm
    if abs(dr - dc) > 0.01 * max(dr, dc):
        raise InputError(where, f"pixel spacing {dr:g} x {dc:g} mm is not square; resample the series first")
    return float(dc)


def ct_geometry(series: Series, sim: CTSimulation, where: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(reconstruction geometry dict, native simulation geometry dict) for a CT series.

    Both share angles and detector; the reconstruction grid spans the series' field of view with
    ``sim.size`` pixels.
    """
    from operators.geometry import FanGeometry, ParallelGeometry, uniform_angles

    h, w = series.pixels.shape[1:]
    if h != w:
        raise InputError(where, f"slices are {h}x{w}; only square slices are supported")
    native_px = _square_spacing(series, where)
    fov_mm = w * native_px
    recon_px = fov_mm / sim.size
    arc = math.pi if sim.geometry == "parallel" else 2 * math.pi
    angles = uniform_angles(sim.views, arc=arc)
    if sim.geometry == "parallel":
        recon = ParallelGeometry(image_size=(sim.size, sim.size), angles=angles, pixel_size_mm=recon_px)
        native = ParallelGeometry(
            image_size=(h, w), angles=angles, pixel_size_mm=native_px,
            n_detectors=recon.n_detectors, detector_spacing_mm=recon.detector_spacing_mm,
        )
    else:
        recon = FanGeometry(
            image_size=(sim.size, sim.size), angles=angles, pixel_size_mm=recon_px,
            source_origin_mm=FAN_SOURCE_ORIGIN_MM, origin_detector_mm=FAN_ORIGIN_DETECTOR_MM,
        )
        native = FanGeometry(
            image_size=(h, w), angles=angles, pixel_size_mm=native_px,
            source_origin_mm=FAN_SOURCE_ORIGIN_MM, origin_detector_mm=FAN_ORIGIN_DETECTOR_MM,
            n_detectors=recon.n_detectors, detector_spacing_mm=recon.detector_spacing_mm,
        )
    return recon.to_dict(), native.to_dict()


def resize_slices(images: np.ndarray, size: int) -> np.ndarray:
    """Anti-aliased resize of ``[n, H, W]`` float images to ``[n, size, size]`` (float32)."""
    from skimage.transform import resize

    if images.shape[1:] == (size, size):
        return images.astype(np.float32)
    out = [resize(im, (size, size), order=1, anti_aliasing=True, preserve_range=True) for im in images]
    return np.stack(out).astype(np.float32)


def simulate_ct(series: Series, sim: CTSimulation, where: Path, batch: int = 16) -> tuple[np.ndarray, dict, np.ndarray]:
    """Simulate a CT acquisition of every slice.

    Returns:
        sinograms: float32 ``[n, n_angles, n_detectors]`` noisy line integrals (dimensionless).
        geometry: the reconstruction geometry dict (``geometry.json`` keys).
        ground_truth: float32 ``[n, size, size]`` HU on the reconstruction grid.
    """
    from operators.geometry import geometry_from_dict
    from operators.noise import hu_to_mu, transmission_noise
    from operators.radon import radon_from_geometry

    sim.validate()
    recon_geometry, native_geometry = ct_geometry(series, sim, where)
    projector = "strip"
    native_op = radon_from_geometry(geometry_from_dict(native_geometry), projector=projector)
    gen = torch.Generator().manual_seed(sim.seed)
    sinos = []
    for start in range(0, series.n_slices, batch):
        hu = torch.from_numpy(series.pixels[start : start + batch]).unsqueeze(1).double()
        mu = hu_to_mu(hu).clamp_min(0.0)
        p = native_op(mu)
        if sim.noise:
            p = transmission_noise(p, sim.i0, electronic_noise_std=sim.electronic_noise, generator=gen)
        sinos.append(p[:, 0].float().numpy())
    ground_truth = resize_slices(series.pixels, sim.size)
    return np.concatenate(sinos), recon_geometry, ground_truth


# --------------------------------------------------------------------------------------- MR
def simulate_mr(series: Series, sim: MRSimulation) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Simulate undersampled (multi-coil) k-space of every slice.

    Returns:
        kspace: complex64 ``[n, coils, size, size]`` (zeros where not sampled).
        mask: bool ``[size, size]``.
        coil_maps: complex64 ``[coils, size, size]`` used to simulate, or None for one coil.
        ground_truth: float32 ``[n, size, size]`` magnitude on the reconstruction grid.
    """
    from operators.coils import simulated_coil_maps
    from operators.fourier import CartesianFourier
    from operators.masks import make_mask
    from operators.noise import complex_gaussian_noise

    truth = resize_slices(np.abs(series.pixels), sim.size)
    mask = make_mask(sim.mask, (sim.size, sim.size), sim.acceleration, sim.center_fraction, seed=sim.seed)
    mask = torch.as_tensor(mask).bool()
    if mask.ndim == 1:
        mask = mask.expand(sim.size, sim.size)
    maps = simulated_coil_maps(sim.coils, (sim.size, sim.size)) if sim.coils > 1 else None
    op = CartesianFourier(mask, coil_maps=maps)
    x = torch.from_numpy(truth).unsqueeze(1).to(torch.complex64)
    k = op(x)
    if sim.noise_std > 0:
        gen = torch.Generator().manual_seed(sim.seed)
        k = complex_gaussian_noise(k, sim.noise_std * float(k.abs().max()), generator=gen) * mask
    return (
        k.numpy().astype(np.complex64),
        mask.numpy(),
        None if maps is None else maps.numpy().astype(np.complex64),
        truth,
    )


# --------------------------------------------------------------------------------------- CLI
def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="simulate reduced-dose sinograms or undersampled k-space from a DICOM series",
        description="Simulate a reduced-dose CT or undersampled MR acquisition from a DICOM series.",
    )
    p.add_argument("dicom_dir", type=Path, nargs="?", default=None,
                   help="directory holding one CT or MR DICOM series (or --from-pacs STUDY)")
    p.add_argument("--modality", choices=("ct", "mr"), required=True)
    p.add_argument("--out", type=Path, required=True, help="output measurement directory")
    p.add_argument("--size", type=int, default=256, help="reconstruction grid (pixels per side)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--series-uid", default=None, help="which series, when the directory holds several")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    ct = p.add_argument_group("CT")
    ct.add_argument("--views", type=int, default=32, help="projection views over the full arc")
    ct.add_argument("--dose", type=float, default=1.0, help="photon fraction of the full-dose I0 (--i0)")
    ct.add_argument("--i0", type=float, default=FULL_DOSE_I0, help="full-dose photons per detector element")
    ct.add_argument("--geometry", choices=("parallel", "fan"), default="parallel")
    ct.add_argument("--electronic-noise", type=float, default=0.0, help="electronic noise std (photons)")
    ct.add_argument("--noise-free", action="store_true", help="no photon noise (views only)")
    mr = p.add_argument_group("MR")
    mr.add_argument("--accel", type=float, default=4.0, help="acceleration factor")
    mr.add_argument("--mask", default="equispaced", help="mask kind (equispaced, random, gaussian, poisson, radial)")
    mr.add_argument("--center-fraction", type=float, default=0.08, help="fully sampled centre fraction")
    mr.add_argument("--coils", type=int, default=1, help="simulated receive coils")
    mr.add_argument("--noise-std", type=float, default=0.0, help="k-space noise std relative to max |k|")
    p.add_argument("--dicom", action="store_true",
                   help="also write the simulated acquisition as a derived DICOM series OUT/dicom in the source study "
                        "(CT: FBP in HU; MR: zero-filled magnitude); implied by --push")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (PACS transfers)")
    add_pacs_options(p)
    p.set_defaults(func=run)


def write_ct_study(series: Series, sim: CTSimulation, out: Path, source: Path, *, dicom: bool = False) -> Path:
    """Simulate ``series`` and write the sinogram directory ``out`` (atomically, as a whole); with
    ``dicom``, also ``out/dicom``: the FBP of the simulated sinograms as a derived series."""
    work = _work_dir(out)
    sinos, geometry, truth = simulate_ct(series, sim, source)
    atomic_save_npy(work / GROUND_TRUTH_FILE, truth)
    if dicom:
        write_simulated_series(work / DICOM_DIR, series, classical_ct_images(sinos, geometry), modality="CT",
                               extra={"method": "fbp", "simulation": f"{sim.views} views, dose {sim.dose:g}",
                                      "relative_dose": round(sim.relative_dose, 4), "seed": sim.seed})
    noise = None
    if sim.noise:
        noise = {"model": "poisson_transmission", "i0": sim.i0, "electronic_noise_std": sim.electronic_noise}
    write_sinogram_dir(
        work, sinos, geometry, values="line_integrals", noise=noise, identity=series.identity,
        reference=source.resolve(), overwrite=True,
        extra={
            "ground_truth": GROUND_TRUTH_FILE,
            "simulation": {
                "views": sim.views, "dose": sim.dose, "i0_full": sim.i0_full, "seed": sim.seed,
                "relative_dose": sim.relative_dose, "full_views": FULL_VIEWS[sim.geometry],
                "noise_free": not sim.noise, "projector": "strip", "native_pixel_mm": series.pixel_spacing_mm[1],
            },
        },
    )
    return _publish(work, out)


def write_mr_study(series: Series, sim: MRSimulation, out: Path, source: Path, *, dicom: bool = False) -> Path:
    """Simulate ``series`` and write the k-space directory ``out`` (atomically, as a whole); with
    ``dicom``, also ``out/dicom``: the zero-filled magnitude as a derived series."""
    work = _work_dir(out)
    kspace, mask, maps, truth = simulate_mr(series, sim)
    atomic_save_npy(work / GROUND_TRUTH_FILE, truth)
    if dicom:
        write_simulated_series(work / DICOM_DIR, series, classical_mr_images(kspace, mask, maps), modality="MR",
                               extra={"method": "zero_filled", "simulation": f"{sim.mask} x{sim.acceleration:g}",
                                      "seed": sim.seed})
    fov = np.asarray(series.pixel_spacing_mm) * np.asarray(series.pixels.shape[1:])
    write_kspace_dir(
        work, kspace, mask=mask, identity=series.identity, reference=source.resolve(), overwrite=True,
        meta={
            "acceleration": sim.acceleration, "mask_kind": sim.mask, "center_fraction": sim.center_fraction,
            "seed": sim.seed, "coils": sim.coils, "noise_std": sim.noise_std,
            "pixel_spacing_mm": (fov / sim.size).tolist(), "ground_truth": GROUND_TRUTH_FILE,
        },
    )
    return _publish(work, out)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    # check the output before any work, so that a bad path costs nothing
    if out.exists() and not out.is_dir():
        raise InputError(out, "output path exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise InputError(out, "output directory is not empty; pass --overwrite to replace it")
    check_push(args)
    source = resolve_input(args, args.dicom_dir, series_uid=args.series_uid)
    series = read_series(source, series_uid=args.series_uid)
    dicom = bool(args.dicom or args.push)
    if series.modality != args.modality.upper():
        raise InputError(source, f"series modality is {series.modality}, but --modality {args.modality} was given")
    if args.modality == "ct":
        sim = CTSimulation(
            views=args.views, dose=args.dose, geometry=args.geometry, size=args.size, i0_full=args.i0,
            electronic_noise=args.electronic_noise, noise=not args.noise_free, seed=args.seed,
        )
        write_ct_study(series, sim, out, source, dicom=dicom)
        print(f"wrote {series.n_slices} sinograms ({sim.views} views, dose {sim.dose:g} x I0 {sim.i0_full:g}, "
              f"relative dose {sim.relative_dose:.3g}) to {out}")
    else:
        sim = MRSimulation(
            acceleration=args.accel, mask=args.mask, center_fraction=args.center_fraction, coils=args.coils,
            size=args.size, noise_std=args.noise_std, seed=args.seed,
        )
        write_mr_study(series, sim, out, source, dicom=dicom)
        print(f"wrote {series.n_slices} k-space slices ({sim.coils} coil(s), {sim.mask} x{sim.acceleration:g}) to {out}")
    if dicom:
        print(f"wrote the simulated acquisition as a derived DICOM series to {out / DICOM_DIR}")
    push_outputs(args, [out / DICOM_DIR], progress=not args.no_progress)
    return 0


# --------------------------------------------------------------------------------------- DICOM
def classical_ct_images(sinos: np.ndarray, geometry: dict[str, Any], batch: int = 16) -> np.ndarray:
    """FBP (HU) of simulated line integrals ``[n, n_angles, n_detectors]`` -> float32 ``[n, size, size]``."""
    from operators.geometry import geometry_from_dict
    from operators.radon import radon_from_geometry
    from recon.api import reconstruct

    op = radon_from_geometry(geometry_from_dict(geometry))
    y = torch.from_numpy(np.ascontiguousarray(sinos)).unsqueeze(1)
    out = [np.asarray(reconstruct(y[i : i + batch], op, None, method="fbp", device="cpu").mean, dtype=np.float32)
           for i in range(0, y.shape[0], batch)]
    return np.concatenate(out).reshape(y.shape[0], *np.asarray(out[0]).shape[-2:])


def classical_mr_images(kspace: np.ndarray, mask: np.ndarray, coil_maps: np.ndarray | None) -> np.ndarray:
    """Zero-filled magnitude of undersampled k-space ``[n, coils, H, W]`` -> float32 ``[n, H, W]``."""
    from operators.fourier import CartesianFourier
    from recon.api import reconstruct

    maps = None if coil_maps is None else torch.from_numpy(coil_maps)
    op = CartesianFourier(torch.from_numpy(mask).bool(), coil_maps=maps)
    mean = reconstruct(torch.from_numpy(kspace), op, None, method="zero_filled", device="cpu").mean
    images = np.abs(np.asarray(mean))
    return images.reshape(kspace.shape[0], *images.shape[-2:]).astype(np.float32)


def write_simulated_series(folder: Path, series: Series, images: np.ndarray, *, modality: str,
                           extra: dict[str, Any]) -> None:
    """``images`` ``[n, H, W]`` (HU for CT) as a derived series of ``series``' study in ``folder``:
    same patient, study and frame of reference, each slice referencing its source image."""
    from pipelines.plots import CT_DISPLAY_WINDOW
    from recon.io.dicom_write import write_series

    number = series.reference_datasets[0].get("SeriesNumber") if series.reference_datasets else None
    kind = "simulated " + ("low-dose CT" if modality == "CT" else "undersampled MR")
    write_series(
        images, folder, modality=modality, reference=series, extra={"image": kind, **extra},
        description=f"{kind} {extra['simulation']} ({extra['method']})"[:64],
        series_number=(int(number) if number not in (None, "") else 0) + SIMULATED_SERIES_OFFSET,
        window=CT_DISPLAY_WINDOW if modality == "CT" else None, overwrite=True,
    )


def _work_dir(out: Path) -> Path:
    """A sibling directory the study is assembled in; renamed to ``out`` when complete."""
    return ensure_output_dir(out.with_name(out.name + ".partial"), overwrite=True)


def _publish(work: Path, out: Path) -> Path:
    """Replace ``out`` by the completed ``work`` directory."""
    import shutil

    if out.exists():
        shutil.rmtree(out)
    work.rename(out)
    return out
