import json

import pytest
import torch

from priors.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from priors.errors import PriorError
from priors.registry import available_priors, load_prior
from tests.priors.helpers import tiny_prior


@pytest.fixture
def saved(tmp_path):
    prior = tiny_prior(metadata={"data": {"sources": [{"name": "synthetic", "licence": "CC0"}]}})
    path = save_checkpoint(prior, tmp_path / "ckpt")
    return prior, path


def test_round_trip_bit_exact(saved):
    prior, path = saved
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "weights.safetensors"]
    loaded = load_checkpoint(path)
    x = torch.rand(2, 1, 16, 16)
    for s in (0.01, 0.7, 30.0):
        assert torch.equal(loaded.denoise(x, s), prior.denoise(x, s))
    assert loaded.modality == "ct" and loaded.image_size == 32
    assert loaded.normalization == prior.normalization
    assert loaded.metadata["data"]["sources"][0]["licence"] == "CC0"
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["format_version"] == FORMAT_VERSION and "torch" in cfg["versions"]
    assert not any(p.requires_grad for p in loaded.parameters())


def test_load_prior_by_path(saved):
    prior, path = saved
    x = torch.rand(1, 1, 16, 16)
    assert torch.equal(load_prior(str(path)).denoise(x, 0.3), prior.denoise(x, 0.3))


def test_truncated_weights_refused(saved):
    _, path = saved
    w = path / "weights.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])
    with pytest.raises(PriorError, match="weights.safetensors"):
        load_checkpoint(path)
    # Even without the hash check, the safetensors header no longer matches the file.
    with pytest.raises(PriorError, match="truncated or corrupt"):
        load_checkpoint(path, verify_hash=False)


def test_corrupted_byte_refused(saved):
    _, path = saved
    w = path / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-10] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(PriorError, match="sha256"):
        load_checkpoint(path)


def test_garbage_weights_refused(saved):
    _, path = saved
    (path / "weights.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(PriorError, match="weights.safetensors"):
        load_checkpoint(path, verify_hash=False)


def test_missing_files_refused(saved, tmp_path):
    _, path = saved
    (path / "weights.safetensors").unlink()
    with pytest.raises(PriorError, match="weights.safetensors: file is missing"):
        load_checkpoint(path)
    with pytest.raises(PriorError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PriorError, match="not a prior checkpoint"):
        load_checkpoint(empty)


def test_bad_json_and_version_refused(saved):
    _, path = saved
    cfg_path = path / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["format_version"] = 99
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(PriorError, match="unsupported format_version 99"):
        load_checkpoint(path)
    cfg_path.write_text("{ not json")
    with pytest.raises(PriorError, match="invalid JSON"):
        load_checkpoint(path)


def test_config_weights_mismatch_refused(saved):
    _, path = saved
    cfg_path = path / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["architecture"]["model_channels"] = 16
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(PriorError, match="do not match config.json architecture: .*shape mismatches"):
        load_checkpoint(path)
    cfg["architecture"]["model_channels"] = 8
    cfg["architecture"]["channel_mult"] = [1, 2, 2]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(PriorError, match="missing tensors"):
        load_checkpoint(path)


def test_error_is_one_line(saved):
    _, path = saved
    (path / "weights.safetensors").write_bytes(b"\x00" * 3)
    with pytest.raises(PriorError) as info:
        load_checkpoint(path, verify_hash=False)
    assert "\n" not in str(info.value)


def test_unknown_name_lists_available():
    with pytest.raises(PriorError, match=r"unknown prior 'nosuchprior'.*available"):
        load_prior("nosuchprior")
    assert isinstance(available_priors(), list)
