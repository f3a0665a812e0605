"""``priors.precision``: option parsing, the scoped setting, and bf16 denoising close to float32."""

from __future__ import annotations

import argparse

import pytest
import torch

from priors.precision import (
    PRECISIONS,
    add_precision_argument,
    cpu_has_native_bf16,
    network_precision,
    resolve_precision,
)
from tests.priors.helpers import tiny_prior

CPU = torch.device("cpu")


def test_resolve_precision_values():
    assert resolve_precision("fp32", CPU) is None
    assert resolve_precision("bf16", CPU) is torch.bfloat16
    expected = torch.bfloat16 if cpu_has_native_bf16() else None
    assert resolve_precision("auto", CPU) is expected
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", CPU)


def test_network_precision_is_scoped_and_restored():
    p = tiny_prior()
    assert p.compute_dtype is None
    with network_precision(p, torch.bfloat16):
        assert p.compute_dtype is torch.bfloat16
        with pytest.raises(RuntimeError):
            with network_precision(p, None):
                assert p.compute_dtype is None
                raise RuntimeError("interrupted")
        assert p.compute_dtype is torch.bfloat16
    assert p.compute_dtype is None


def test_bf16_denoiser_matches_fp32_and_keeps_dtype():
    torch.manual_seed(0)
    p = tiny_prior()
    # non-zero output layers, so the network (not only the skip path) shapes the result
    with torch.no_grad():
        for q in p.net.parameters():
            q.add_(0.05 * torch.randn_like(q))
    x = torch.rand(2, 1, 32, 32) + 0.3 * torch.randn(2, 1, 32, 32)
    ref = p.denoise(x, 0.3)
    with network_precision(p, torch.bfloat16):
        low = p.denoise(x, 0.3)
    assert low.dtype == torch.float32
    assert not torch.equal(low, ref)  # the network really ran in bfloat16
    rel = ((low - ref).norm() / ref.norm()).detach()
    assert float(rel) < 2e-2


def test_float64_weights_are_not_downcast():
    p = tiny_prior().double()
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    ref = p.denoise(x, 0.5)
    with network_precision(p, torch.bfloat16):
        assert torch.equal(p.denoise(x, 0.5), ref)


def test_cli_option():
    parser = argparse.ArgumentParser()
    add_precision_argument(parser)
    assert parser.parse_args([]).precision == "auto"
    assert parser.parse_args(["--precision", "bf16"]).precision == "bf16"
    assert set(PRECISIONS) == {"auto", "fp32", "bf16"}
    with pytest.raises(SystemExit):
        parser.parse_args(["--precision", "half"])
