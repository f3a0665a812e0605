"""Thread budget: cgroup quotas and affinity cap the default; every pool follows the budget."""

from __future__ import annotations

import pytest
import torch

from operators import cpu


def test_cgroup_quota_caps_the_cores(tmp_path, monkeypatch):
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")  # 1.5 cores
    assert cpu._cgroup_cores(quota) == pytest.approx(1.5)
    quota.write_text("max 100000\n")
    assert cpu._cgroup_cores(quota) is None
    assert cpu._cgroup_cores(tmp_path / "absent") is None
    monkeypatch.setattr(cpu, "_cgroup_cores", lambda: 1.5)
    assert cpu.available_cores() == 1


def test_budget_sets_torch_blas_and_environment(monkeypatch):
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        assert cpu.default_threads() == 1
        assert cpu.apply_thread_budget(1) == 1
        assert torch.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
        with pytest.raises(ValueError, match="at least 1"):
            cpu.apply_thread_budget(0)
        monkeypatch.setenv("OMP_NUM_THREADS", "x")
        assert cpu.default_threads() == cpu.available_cores()
    finally:
        torch.set_num_threads(before)
