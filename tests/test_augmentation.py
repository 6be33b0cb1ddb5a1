"""Training-time augmentation: seeded, label-safe, mirroring only where the anatomy allows, a no-op for ``none``,
applied to the training batches only (fit's and the search's W batches), and a config field old runs still match."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch
from monai.networks.nets import BasicUNet

from shapnas.cli import main
from shapnas.config.names import DATASET_NAMES
from shapnas.config.overrides import parse_overrides
from shapnas.config.stage_configs import AUGMENTATION_NAMES, PretrainConfig, RetrainConfig, SearchConfig, resolve_config
from shapnas.profiles import PROFILE_NAMES, load_profile
from shapnas.runs.identity import StaleStageError, reusable, stage_key
from shapnas.training import augmentation as aug
from shapnas.training.augmentation import FLIP_AXES, augment_batch, build_augmenter
from shapnas.training.train import fit

NUM_CLASSES = 3
CASES = [  # (batch, channels, height, width, label layout)
    (5, 1, 33, 47, "B1HW"),
    (4, 4, 32, 32, "BHW"),
    (16, 2, 64, 61, "B1HW"),
]


def _batch(batch: int, channels: int, height: int, width: int, layout: str, seed: int = 0):
    """Random images (B, C, H, W) and labels with classes {0, 2, 5} (gaps: an interpolated label would show)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, channels, height, width, generator=g)
    labels = torch.tensor([0, 2, 5])[torch.randint(0, 3, (batch, 1, height, width), generator=g)]
    return images, (labels if layout == "B1HW" else labels[:, 0])


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("batch, channels, height, width, layout", CASES)
def test_standard_keeps_shapes_dtypes_and_label_values(batch, channels, height, width, layout):
    images, labels = _batch(batch, channels, height, width, layout)
    out_images, out_labels = augment_batch(images, labels, _gen(1), policy="standard", dataset="brats")
    assert out_images.shape == images.shape and out_images.dtype == images.dtype
    assert out_labels.shape == labels.shape and out_labels.dtype == labels.dtype
    assert type(out_images) is torch.Tensor and type(out_labels) is torch.Tensor  # no MONAI MetaTensor leaks out
    assert set(out_labels.unique().tolist()) <= {0, 2, 5}
    assert torch.isfinite(out_images).all()
    assert not torch.equal(out_images, images)
    assert torch.equal(images, _batch(batch, channels, height, width, layout)[0])  # the input is left as it was


def test_same_seed_same_batch_and_different_seeds_differ():
    images, labels = _batch(16, 2, 32, 32, "B1HW")
    first = augment_batch(images, labels, _gen(7), policy="standard", dataset="brats")
    again = augment_batch(images, labels, _gen(7), policy="standard", dataset="brats")
    other = augment_batch(images, labels, _gen(8), policy="standard", dataset="brats")
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0]) and not torch.equal(first[1], other[1])


def test_each_slice_gets_its_own_draw():
    images, labels = _batch(1, 1, 32, 32, "B1HW")
    out, _ = augment_batch(images.repeat(16, 1, 1, 1), labels.repeat(16, 1, 1, 1), _gen(3), policy="standard",
                           dataset="kits")
    assert len({tuple(slice_.flatten()[:64].tolist()) for slice_ in out}) > 8  # one identical slice, many outcomes


def test_none_returns_the_inputs_and_draws_nothing():
    images, labels = _batch(4, 1, 16, 16, "B1HW")
    generator = _gen(0)
    state = generator.get_state()
    out_images, out_labels = augment_batch(images, labels, generator, policy="none", dataset="brats")
    assert out_images is images and out_labels is labels
    assert torch.equal(generator.get_state(), state)
    assert build_augmenter("none", "brats") is None


def test_standard_draws_a_fixed_block_per_batch():
    images, labels = _batch(6, 1, 16, 16, "B1HW")
    generator, reference = _gen(0), _gen(0)
    augment_batch(images, labels, generator, policy="standard", dataset="acdc")
    torch.rand(6, len(aug.DRAWS), generator=reference, dtype=torch.float64)
    assert torch.equal(generator.get_state(), reference.get_state())


def _sided(batch: int = 32, size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """Slices whose left half is class 1 and right half class 2 (the image says the same)."""
    labels = torch.ones(batch, 1, size, size, dtype=torch.int64)
    labels[..., size // 2:] = 2
    return labels.float(), labels


@pytest.mark.parametrize("seed", range(4))
def test_a_dataset_without_flip_axes_is_never_mirrored(seed):
    images, labels = _sided()
    # a ±15° rotation, ±10 % zoom and ±5 % shift never carry the right half to a point 6 px from the left edge
    # on the middle row; a left/right mirror does
    _, kits = augment_batch(images, labels, _gen(seed), policy="standard", dataset="kits")
    assert (kits[:, 0, 24, 6] == 1).all() and (kits[:, 0, 24, -7] == 2).all()
    _, brats = augment_batch(images, labels, _gen(seed), policy="standard", dataset="brats")
    assert (brats[:, 0, 24, 6] == 2).any()  # the check can see a mirror: BraTS slices are mirrored


def test_flip_table_names_datasets_and_axes():
    assert set(FLIP_AXES) <= set(DATASET_NAMES)
    assert all(set(axes) <= {0, 1} for axes in FLIP_AXES.values())
    assert aug.flip_axes("kits") == () and aug.flip_axes("acdc") == () and aug.flip_axes("amos") == ()
    assert aug.flip_axes("") == ()


def test_invalid_policy_is_a_clear_error():
    images, labels = _batch(2, 1, 16, 16, "B1HW")
    message = r"augmentation='heavy'; expected one of none, standard"
    with pytest.raises(ValueError, match=message):
        augment_batch(images, labels, _gen(0), policy="heavy", dataset="acdc")
    with pytest.raises(ValueError, match=message):
        PretrainConfig(augmentation="heavy")
    with pytest.raises(ValueError, match=message):
        _fit(0, augmentation="heavy")
    assert AUGMENTATION_NAMES == ("none", "standard") and tuple(aug.AUGMENTERS) == AUGMENTATION_NAMES


def _squares(num: int, seed: int, value_shift: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Slices with a class-1 and a class-2 square; intensity = class + noise (+ ``value_shift``)."""
    g = _gen(seed)
    labels = torch.zeros(num, 1, 32, 32, dtype=torch.int64)
    for i in range(num):
        for cls in (1, 2):
            r, c = torch.randint(0, 22, (2,), generator=g).tolist()
            labels[i, 0, r:r + 8, c:c + 8] = cls
    return labels.float() + 0.3 * torch.randn(num, 1, 32, 32, generator=g) + value_shift, labels


def _net() -> BasicUNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return BasicUNet(spatial_dims=2, in_channels=1, out_channels=NUM_CLASSES, features=(4, 4, 8, 8, 16, 4))


def _fit(seed: int, net: torch.nn.Module | None = None, **kwargs):
    net = net if net is not None else _net()
    result = fit(net, list(net.parameters()), _squares(12, 1), _squares(4, 2), epochs=2, lr=1e-2, batch_size=4,
                 device=torch.device("cpu"), generator=_gen(seed), num_classes=NUM_CLASSES, progress=False, **kwargs)
    return net, result


def _weights(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_fit_with_standard_augmentation_is_reproducible():
    first, result = _fit(0, augmentation="standard", dataset="acdc")
    again, _ = _fit(0, augmentation="standard", dataset="acdc")
    plain, _ = _fit(0)
    assert result.steps == 6
    assert all(torch.equal(a, b) for a, b in zip(_weights(first).values(), _weights(again).values()))
    assert any(not torch.equal(a, b) for a, b in zip(_weights(first).values(), _weights(plain).values()))
    none, _ = _fit(0, augmentation="none", dataset="acdc")  # explicit none: the weights of no augmentation
    assert all(torch.equal(a, b) for a, b in zip(_weights(none).values(), _weights(plain).values()))


class _Recorder:
    """An augmenter that records the batches it is given and returns them unchanged."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def __call__(self, images, labels, generator):
        assert isinstance(generator, torch.Generator)
        self.seen.append(images.clone())
        return images, labels


def test_fit_augments_training_batches_only(monkeypatch):
    import shapnas.training.train as train_module

    recorder = _Recorder()
    monkeypatch.setattr(train_module, "build_augmenter", lambda policy, dataset: recorder)
    net = _net()
    fit(net, list(net.parameters()), _squares(12, 1), _squares(4, 2, value_shift=100.0), epochs=2, lr=1e-2,
        batch_size=4, device=torch.device("cpu"), generator=_gen(0), num_classes=NUM_CLASSES, progress=False,
        augmentation="standard")
    assert len(recorder.seen) == 6  # 3 batches x 2 epochs, V (shifted by 100) never
    assert all(float(batch.max()) < 50 for batch in recorder.seen)


def test_search_augments_weight_batches_not_architecture_batches(monkeypatch):
    import shapnas.search.loop as loop
    from shapnas.networks.backbones import adapt, build_backbone
    from shapnas.networks.retrofit import build_supernet

    recorder = _Recorder()
    monkeypatch.setattr(loop, "build_augmenter", lambda policy, dataset: recorder)
    net, _ = build_backbone("basic_unet", 1, NUM_CLASSES, "tiny")
    model = build_supernet(adapt(net), generator=_gen(0)).freeze_backbone()
    cfg = SearchConfig(augmentation="standard", batch_size=4, search_epoch_steps=2, search_epochs=2, warmup_epochs=0)
    w_images, w_labels = _squares(8, 1)
    a_images, a_labels = _squares(8, 2, value_shift=100.0)  # A slices are told apart by their intensities
    data = loop.SearchData((w_images, w_labels), (a_images, a_labels), _squares(4, 3), NUM_CLASSES)
    weight_opt, arch_opt, _ = loop.build_optimizers(model, cfg)
    loop.train_search_epoch(model, data, cfg, weight_opt, arch_opt, True, _gen(0), torch.device("cpu"), False)
    assert len(recorder.seen) == 2 and all(float(batch.max()) < 50 for batch in recorder.seen)


def test_config_field_from_profiles_overrides_and_the_command_line(tmp_path):
    assert all(load_profile(name).get("augmentation", "none") == "none" for name in PROFILE_NAMES)
    assert resolve_config(RetrainConfig, "workshop", {}).augmentation == "none"
    assert parse_overrides(["augmentation=standard"], RetrainConfig) == {"augmentation": "standard"}
    cfg = resolve_config(RetrainConfig, "workshop", {"augmentation": "standard"})
    assert cfg.augmentation == "standard"
    assert RetrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["matrix", "--datasets", "acdc", "--profile", "smoke", "--results", str(tmp_path),
                     "--stages", "pretrain", "--set", "augmentation=standard", "--list"])
    assert code == 0
    spec = json.loads(Path(out.getvalue().split("\t")[1].split()[-1]).read_text())
    assert spec["config"]["augmentation"] == "standard"


def test_a_stage_stored_before_the_field_existed_counts_as_none(tmp_path):
    cfg = PretrainConfig(results_root=str(tmp_path), profile="smoke")
    key = stage_key(cfg, "pretrain")
    stage = key.path(tmp_path)
    stage.mkdir(parents=True)
    stored = cfg.to_dict()
    del stored["augmentation"]
    (stage / "config.json").write_text(json.dumps(stored))
    (stage / "metrics.json").write_text("{}")
    assert reusable(stage, cfg, key) is True
    assert PretrainConfig.from_dict(stored).augmentation == "none"
    with pytest.raises(StaleStageError, match="augmentation: stored '\\(not recorded\\)', requested 'standard'"):
        reusable(stage, cfg.replace(augmentation="standard"), key)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_standard_runs_on_the_device_of_its_inputs():
    device = torch.device("cuda")
    images, labels = _batch(8, 2, 32, 32, "B1HW")
    cpu = augment_batch(images, labels, _gen(0), policy="standard", dataset="brats")
    out_images, out_labels = augment_batch(images.to(device), labels.to(device), _gen(0), policy="standard",
                                           dataset="brats")
    assert out_images.device.type == "cuda" and out_labels.device.type == "cuda"
    assert set(out_labels.unique().tolist()) <= {0, 2, 5}
    assert torch.equal(out_labels.cpu(), cpu[1]) or (out_labels.cpu() != cpu[1]).float().mean() < 0.01
    assert torch.allclose(out_images.cpu(), cpu[0], atol=1e-3)
