"""An analytic Gaussian prior: exact denoiser, exact score and a closed-form linear posterior.

For ``x0 ~ N(mu, Sigma)`` observed as ``x = x0 + sigma * n`` the posterior mean is
``D(x, sigma) = mu + Sigma (Sigma + sigma^2 I)^{-1} (x - mu)``, exactly. Samplers run against this
prior can therefore be checked against the closed-form posterior of a linear-Gaussian inverse
problem (:meth:`GaussianPrior.posterior`), which is what the sampler tests do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from priors.base import Prior, sigma_as_batch
from priors.normalization import Normalization

__all__ = ["GaussianPrior", "IDENTITY"]

#: ``physical = normalised``: a prior whose samples are already in the operator's units.
IDENTITY = Normalization(kind="window", low=0.0, high=1.0, unit="a.u.")


class GaussianPrior(Prior):
    """``x0 ~ N(mean, cov)`` on images ``[C, H, W]``, stored as an eigendecomposition.

    Args:
        mean: ``[C, H, W]`` prior mean (normalised units).
        cov: one of
            - a dense ``[N, N]`` symmetric PSD matrix, ``N = C*H*W`` (flattened in C, H, W order);
            - a ``[N]`` vector or a ``[C, H, W]`` tensor of variances (diagonal covariance);
            - a Python float: isotropic variance ``cov * I``;
            - a tuple ``(eigvecs [N, K], eigvals [K])`` with orthonormal columns; directions outside
              the span of ``eigvecs`` have zero variance.
        modality: ``"ct"``, ``"mr"`` or ``"any"``.
        normalization: the physical <-> normalised map (default: identity).
        sigma_min, sigma_max: the noise range samplers may use (any range is exact here).

    The denoiser is exact for every ``sigma``; ``sigma_data`` is set to the RMS prior standard
    deviation ``sqrt(trace(cov) / N)`` so samplers that use it get the value that is right for an
    isotropic prior.
    """

    def __init__(
        self,
        mean: torch.Tensor,
        cov: torch.Tensor | float | tuple[torch.Tensor, torch.Tensor],
        *,
        modality: str = "any",
        normalization: Normalization = IDENTITY,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
    ):
        super().__init__()
        if mean.ndim != 3:
            raise ValueError(f"GaussianPrior: mean must be [C, H, W], got shape {tuple(mean.shape)}")
        n = mean.numel()
        dtype = mean.dtype if mean.is_floating_point() else torch.float64
        self.image_shape: tuple[int, ...] = tuple(mean.shape)
        self.image_channels = int(mean.shape[0])
        self.modality = modality
        self.normalization = normalization
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)

        self._diagonal = False
        if isinstance(cov, tuple):
            vecs, vals = cov
            if vecs.shape[0] != n or vals.ndim != 1 or vecs.shape[1] != vals.shape[0]:
                raise ValueError("GaussianPrior: eigendecomposition must be (vecs [N, K], vals [K])")
        elif isinstance(cov, (int, float)):
            vals = torch.full((n,), float(cov), dtype=dtype)
            vecs = None
            self._diagonal = True
        elif cov.ndim == 2 and cov.shape == (n, n):
            sym = 0.5 * (cov + cov.T)
            vals, vecs = torch.linalg.eigh(sym.to(torch.float64))
        elif cov.numel() == n and (cov.ndim == 1 or tuple(cov.shape) == self.image_shape):
            vals, vecs = cov.reshape(-1), None
            self._diagonal = True
        else:
            raise ValueError(f"GaussianPrior: cov of shape {tuple(cov.shape)} does not fit N = {n}")
        if (torch.as_tensor(vals) < -1e-8 * torch.as_tensor(vals).abs().max()).any():
            raise ValueError("GaussianPrior: covariance must be positive semi-definite")
        vals = torch.as_tensor(vals).clamp_min(0).to(torch.float64)
        self.register_buffer("mean", mean.to(torch.float64))
        self.register_buffer("eigvals", vals)
        self.register_buffer("eigvecs", None if vecs is None else vecs.to(torch.float64))
        self.sigma_data = math.sqrt(float(vals.sum()) / n)

    # --- the Prior contract -------------------------------------------------------------
    def denoise(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Exact ``E[x0 | x]`` for ``x = x0 + sigma * n``; ``x`` is ``[B, C, H, W]``, real."""
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"GaussianPrior: image shape {tuple(x.shape[1:])} != {self.image_shape}")
        s2 = sigma_as_batch(sigma, x).reshape(-1, 1).to(torch.float64) ** 2  # [B, 1]
        d = (x.to(torch.float64) - self.mean).reshape(x.shape[0], -1)  # [B, N]
        shrink = self.eigvals / (self.eigvals + s2).clamp_min(torch.finfo(torch.float64).tiny)  # [B, K]
        if self.eigvecs is None:
            out = d * shrink
        else:
            out = ((d @ self.eigvecs) * shrink) @ self.eigvecs.T
        return (self.mean + out.reshape(x.shape)).to(x.dtype)

    # --- helpers for tests ----------------------------------------------------------------
    def covariance(self) -> torch.Tensor:
        """The dense ``[N, N]`` covariance (float64)."""
        if self.eigvecs is None:
            return torch.diag(self.eigvals)
        return (self.eigvecs * self.eigvals) @ self.eigvecs.T

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` prior draws ``[n, C, H, W]`` (float64)."""
        std = self.eigvals.sqrt()
        if self.eigvecs is None:
            z = torch.randn(n, std.numel(), generator=generator, dtype=torch.float64)
            draw = z * std
        else:
            z = torch.randn(n, std.numel(), generator=generator, dtype=torch.float64)
            draw = (z * std) @ self.eigvecs.T
        return self.mean + draw.reshape(n, *self.image_shape)

    def posterior(
        self,
        matrix: torch.Tensor,
        y: torch.Tensor,
        noise_var: float | torch.Tensor = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Closed-form posterior of ``y = matrix @ vec(x0) + e``, ``e ~ N(0, diag(noise_var))``.

        Args:
            matrix: ``[M, N]`` real forward matrix acting on the flattened image.
            y: ``[B, M]`` (or ``[B, *range]``) measurements.
            noise_var: scalar or ``[M]`` noise variance; ``0`` gives the noise-free posterior
                (the prior conditioned on ``matrix @ x = y``).

        Returns:
            ``(mean [B, C, H, W], cov [N, N])`` in float64 (the covariance does not depend on ``y``).
        """
        A = matrix.to(torch.float64)
        m = A.shape[0]
        cov = self.covariance()
        v = torch.as_tensor(noise_var, dtype=torch.float64).expand(m)
        S = A @ cov @ A.T + torch.diag(v)  # [M, M] covariance of y
        gain = cov @ A.T @ torch.linalg.pinv(S, hermitian=True)  # [N, M]
        mu = self.mean.reshape(-1)
        resid = y.reshape(y.shape[0], -1).to(torch.float64) - mu @ A.T
        mean = mu + resid @ gain.T
        post_cov = cov - gain @ A @ cov
        post_cov = 0.5 * (post_cov + post_cov.T)
        return mean.reshape(y.shape[0], *self.image_shape), post_cov

    @property
    def config(self) -> dict:
        cfg = super().config
        cfg.update({"architecture": "gaussian", "image_shape": list(self.image_shape)})
        return cfg


def isotropic(shape: Sequence[int], variance: float, mean: float = 0.0, **kw) -> GaussianPrior:
    """Convenience constructor: ``N(mean * 1, variance * I)`` on images of ``shape``."""
    return GaussianPrior(torch.full(tuple(shape), float(mean), dtype=torch.float64), float(variance), **kw)
