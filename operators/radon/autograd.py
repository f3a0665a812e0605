"""Autograd for the Radon backends: the gradient of ``A x`` is ``A^T``, and of ``A^T y`` is ``A``.

Each function's backward is the other function, so both are differentiable any number of times
(double backward works, e.g. for gradient penalties or Hessian-vector products).
"""

from __future__ import annotations

from typing import Any

import torch

from operators.radon.backend import RadonBackend

__all__ = ["Project", "Backproject"]


class Project(torch.autograd.Function):
    """``y = A x`` through ``backend``; its backward is ``A^T`` (through :class:`Backproject`)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, backend: RadonBackend) -> torch.Tensor:
        ctx.backend = backend
        return backend.project(x, adjoint=False)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        return Backproject.apply(g.contiguous(), ctx.backend), None


class Backproject(torch.autograd.Function):
    """``x = A^T y`` through ``backend``; its backward is ``A`` (through :class:`Project`)."""

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor, backend: RadonBackend) -> torch.Tensor:
        ctx.backend = backend
        return backend.project(y, adjoint=True)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        return Project.apply(g.contiguous(), ctx.backend), None
