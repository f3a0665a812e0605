import json

import numpy as np
import pytest
import torch

from priors.checkpoint import load_checkpoint
from priors.training import TrainConfig, Trainer
from tests.priors.helpers import tiny_dataset


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(
        out_dir=str(tmp_path / "run"),
        modality="ct",
        image_size=32,
        patch_size=16,
        preset="tiny",
        batch_size=8,
        steps=10,
        lr=2e-3,
        warmup_steps=5,
        checkpoint_every=1000,
        sample_n=0,
        log_every=1000,
        progress=False,
        seed=0,
        device="cpu",
        val_max_images=2,
        val_sigmas=(0.1, 1.0),
    )
    base.update(kw)
    return TrainConfig(**base)


def test_loss_falls(tmp_path):
    tr = Trainer(_cfg(tmp_path, steps=80), tiny_dataset(), None)
    losses = [tr.train_step() for _ in range(80)]
    first, last = np.mean(losses[:15]), np.mean(losses[-15:])
    assert last < 0.8 * first, (first, last)


def test_run_writes_checkpoint_samples_metrics(tmp_path):
    cfg = _cfg(tmp_path, steps=6, checkpoint_every=3, sample_n=2, sample_steps=2, log_every=2)
    prior = Trainer(cfg, tiny_dataset(), tiny_dataset(n=2, patch=None, seed=5)).run()
    run = tmp_path / "run"
    for name in ("checkpoint/config.json", "checkpoint/weights.safetensors", "checkpoint/training_state.safetensors",
                 "checkpoint/training_state.json", "samples/step_0000003.png", "samples/step_0000006.png",
                 "metrics.jsonl", "val_loss.png", "train_config.json"):
        assert (run / name).is_file(), name
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if "val_loss" in r] == [3, 6]
    assert all({"loss", "images_per_s", "lr"} <= set(r) for r in recs if "loss" in r)
    loaded = load_checkpoint(run)
    x = torch.rand(1, 1, 32, 32)
    assert torch.equal(loaded.denoise(x, 0.5), prior.denoise(x, 0.5))
    cfg_json = json.loads((run / "checkpoint/config.json").read_text())
    assert cfg_json["training"]["steps"] == 6 and cfg_json["prior"]["patch_size"] == 16


def test_sample_every_skips_intermediate_grids(tmp_path):
    cfg = _cfg(tmp_path, steps=6, checkpoint_every=2, sample_n=1, sample_steps=2, sample_every=4)
    Trainer(cfg, tiny_dataset(), None).run()
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == ["step_0000004.png", "step_0000006.png"]


def test_validation_loss_is_reproducible(tmp_path):
    tr = Trainer(_cfg(tmp_path), tiny_dataset(), tiny_dataset(n=2, patch=None, seed=5))
    a, b = tr.validation_loss(), tr.validation_loss()
    assert a == b and set(a[1]) == {"0.1", "1"}


def test_resume_matches_uninterrupted(tmp_path):
    n = 4
    straight = Trainer(_cfg(tmp_path / "a", steps=2 * n), tiny_dataset(), None)
    straight.run()

    first = Trainer(_cfg(tmp_path / "b", steps=n), tiny_dataset(), None)
    first.run()
    resumed = Trainer(_cfg(tmp_path / "b", steps=2 * n), tiny_dataset(), None, resume=True)
    assert resumed.step == n and resumed.images_seen == n * 8
    # Optimizer moments and step counters came back.
    st = resumed.opt.state[next(iter(resumed.prior.net.parameters()))]
    assert float(st["step"]) == n and st["exp_avg"].abs().sum() > 0
    resumed.run()
    assert resumed.step == 2 * n
    for (k, a), b in zip(straight.prior.net.state_dict().items(), resumed.prior.net.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), k
    for a, b in zip(straight.ema.net.state_dict().values(), resumed.ema.net.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    tr = Trainer(_cfg(tmp_path), tiny_dataset(), None, resume=True)
    assert tr.step == 0


def test_ema_halflife_and_warmup(tmp_path):
    tr = Trainer(_cfg(tmp_path, ema_halflife_images=800, ema_rampup=0.0), tiny_dataset(), None)
    assert tr.ema_beta() == pytest.approx(0.5 ** (8 / 800))
    tr2 = Trainer(_cfg(tmp_path, ema_decay=0.999), tiny_dataset(), None)
    assert tr2.ema_beta() == pytest.approx(0.1)  # (1 + 0) / (10 + 0): early EMA follows the model
    assert tr2.lr_at(0) == pytest.approx(2e-3 / 5) and tr2.lr_at(100) == pytest.approx(2e-3)


def test_loguniform_sigma_distribution_trains(tmp_path):
    tr = Trainer(_cfg(tmp_path, sigma_distribution="loguniform"), tiny_dataset(), None)
    assert np.isfinite(tr.train_step())


def test_init_from_starts_at_the_given_weights(tmp_path):
    first = Trainer(_cfg(tmp_path / "a", steps=5), tiny_dataset(), None)
    first.run()
    source = tmp_path / "a" / "run" / "checkpoint"
    # the architecture comes from the source, not from the preset asked for
    warm = Trainer(_cfg(tmp_path / "b", steps=5, preset="small", init_from=str(source)), tiny_dataset(), None)
    saved = load_checkpoint(source)
    assert warm.prior.net.config == saved.net.config
    for name, value in saved.net.state_dict().items():
        assert torch.equal(warm.prior.net.state_dict()[name], value)
        assert torch.equal(warm.ema.net.state_dict()[name], value)
    assert warm.step == 0  # a new run: fresh optimizer and step count
    warm.run()
    cfg = json.loads((tmp_path / "b" / "run" / "checkpoint" / "config.json").read_text())
    assert cfg["training"]["initialised_from"] == str(source)


def test_init_from_refuses_another_modality(tmp_path):
    Trainer(_cfg(tmp_path / "a", steps=1), tiny_dataset(), None).run()
    from priors.errors import PriorError

    with pytest.raises(PriorError, match="ct prior cannot start a mr run"):
        Trainer(_cfg(tmp_path / "b", modality="mr", init_from=str(tmp_path / "a" / "run" / "checkpoint")),
                tiny_dataset(), None)


def test_patch_mix_draws_each_size_at_its_rate_with_equal_pixels(tmp_path):
    tr = Trainer(_cfg(tmp_path, patch_mix=((32, 0.25),)), tiny_dataset(), None)
    draws = []
    for step in range(400):
        tr.step = step
        draws.append(tr.crop_and_batch(torch.Generator().manual_seed(step)))
    assert set(draws) == {(16, 8), (32, 2)}  # batch shrinks by (16 / 32)^2: same pixels per step
    share = sum(crop == 32 for crop, _ in draws) / len(draws)
    assert 0.18 < share < 0.32, share
    tr.step = 0
    y = tr.train_set.sample_batch(2, torch.Generator().manual_seed(0), 32)
    assert y.shape == (2, 1, 32, 32)


def test_patch_mix_size_is_the_same_on_every_rank(tmp_path):
    # DDP ranks draw their batches from different streams but must agree on the crop size.
    a = Trainer(_cfg(tmp_path, patch_mix=((32, 0.5),)), tiny_dataset(), None)
    b = Trainer(_cfg(tmp_path, patch_mix=((32, 0.5),)), tiny_dataset(), None)
    b.rank = 1
    for step in range(50):
        a.step = b.step = step
        assert a.crop_and_batch(torch.Generator()) == b.crop_and_batch(torch.Generator())


def test_patch_mix_steps_train_and_count_images(tmp_path):
    tr = Trainer(_cfg(tmp_path, steps=20, patch_mix=((32, 0.5),)), tiny_dataset(), None)
    tr.run()
    assert tr.step == 20 and 2 * 20 <= tr.images_seen < 8 * 20


@pytest.mark.parametrize(
    "mix, message",
    [(((16, 0.2),), "above the patch size"), (((64, 0.2),), "at most 32"), (((32, 0.7), (24, 0.4)), "sum to less")],
)
def test_patch_mix_rejects_bad_sizes_and_probabilities(tmp_path, mix, message):
    with pytest.raises(ValueError, match=message):
        _cfg(tmp_path, patch_mix=mix)
