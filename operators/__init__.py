"""Forward models: CT geometry and Radon transforms (ASTRA), noise and dose models, MRI Fourier operators.

Images are ``[B, C, H, W]`` torch tensors; sinograms ``[B, 1, n_angles, n_detectors]``; k-space
``[B, n_coils, H, W]`` complex. Every operator is a :class:`LinearOperator`.
"""

from operators.base import LinearOperator, MatrixOperator, ScaledOperator, WrappedOperator
from operators.geometry import (
    FanGeometry,
    Geometry,
    ParallelGeometry,
    geometry_from_dict,
    geometry_from_json,
    limited_angles,
    sparse_view_angles,
    uniform_angles,
)
from operators.noise import (
    COUNT_FLOOR,
    MU_WATER_PER_MM,
    complex_gaussian_noise,
    counts_to_line_integrals,
    hu_to_mu,
    line_integral_noise_variance,
    mu_to_hu,
    simulate_counts,
    transmission_noise,
)
from operators.radon import FBP_FILTERS, FanBeam, ParallelBeam, RadonTransform, available_backends, radon_from_geometry

__all__ = [
    "LinearOperator",
    "MatrixOperator",
    "ScaledOperator",
    "WrappedOperator",
    # geometry
    "ParallelGeometry",
    "FanGeometry",
    "Geometry",
    "geometry_from_dict",
    "geometry_from_json",
    "uniform_angles",
    "sparse_view_angles",
    "limited_angles",
    # Radon
    "ParallelBeam",
    "FanBeam",
    "RadonTransform",
    "radon_from_geometry",
    "FBP_FILTERS",
    "available_backends",
    # noise and dose
    "MU_WATER_PER_MM",
    "COUNT_FLOOR",
    "transmission_noise",
    "simulate_counts",
    "counts_to_line_integrals",
    "line_integral_noise_variance",
    "hu_to_mu",
    "mu_to_hu",
    "complex_gaussian_noise",
]

# --- MRI Fourier operators, masks and coil sensitivities (operators.fourier / masks / coils) ---------
from operators.coils import (  # noqa: E402
    COIL_MAP_METHODS,
    DEFAULT_COIL_MAP_METHOD,
    calibration_region,
    espirit_maps,
    estimate_coil_maps,
    rss,
    simulated_coil_maps,
    sum_of_squares_maps,
)
from operators.fourier import CartesianFourier, fft2c, ifft2c  # noqa: E402
from operators.masks import (  # noqa: E402
    MASK_KINDS,
    achieved_acceleration,
    equispaced_mask,
    gaussian_mask,
    make_mask,
    poisson_disc_mask,
    radial_mask,
    random_mask,
)

__all__ += [
    "CartesianFourier",
    "fft2c",
    "ifft2c",
    "MASK_KINDS",
    "make_mask",
    "equispaced_mask",
    "random_mask",
    "gaussian_mask",
    "poisson_disc_mask",
    "radial_mask",
    "achieved_acceleration",
    "COIL_MAP_METHODS",
    "DEFAULT_COIL_MAP_METHOD",
    "calibration_region",
    "espirit_maps",
    "sum_of_squares_maps",
    "estimate_coil_maps",
    "simulated_coil_maps",
    "rss",
]
