"""Tests of shapnas.training.train: batches, validation Dice, fit (determinism, model selection, clipping, resume)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from monai.networks.nets import BasicUNet
from torch import nn

from shapnas.runs.files import load_checkpoint, save_checkpoint
from shapnas.training.train import (
    FitResult,
    confusion_matrix,
    count_parameters,
    dice_ce_loss,
    fit,
    iterate_batches,
    validation_dice,
)

NUM_CLASSES = 3
SIZE = 32


class OneHotOfChannel0(nn.Module):
    """Logits that are the one-hot encoding of the class ids stored in input channel 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.one_hot(x[:, 0].round().long(), NUM_CLASSES).permute(0, 3, 1, 2).float()  # (B, K, H, W)


def _squares(num: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Slices with a class-1 and a class-2 square at random places; intensity = class + noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(num, 1, SIZE, SIZE, dtype=torch.int64)
    for i in range(num):
        for cls in (1, 2):
            r, c = torch.randint(0, SIZE - 10, (2,), generator=g).tolist()
            labels[i, 0, r:r + 8, c:c + 8] = cls
    images = labels.float() + 0.3 * torch.randn(num, 1, SIZE, SIZE, generator=g)
    return images, labels


def _net(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BasicUNet(spatial_dims=2, in_channels=1, out_channels=NUM_CLASSES, features=(4, 4, 8, 8, 16, 4))


def _fit(model: nn.Module, seed: int, epochs: int = 2, **kwargs) -> FitResult:
    train, val = _squares(12, 1), _squares(4, 2)
    return fit(model, list(model.parameters()), train, val, epochs=epochs, lr=1e-2, batch_size=4,
               device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed), num_classes=NUM_CLASSES,
               progress=False, **kwargs)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _without_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time_s"} for r in history]


def test_iterate_batches_partition_and_order() -> None:
    images = torch.arange(10).float().reshape(10, 1, 1, 1)
    labels = torch.arange(10).reshape(10, 1, 1, 1)
    batches = list(iterate_batches(images, labels, 4, torch.Generator().manual_seed(3)))
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    seen = torch.cat([b[0].flatten() for b in batches])
    assert sorted(seen.long().tolist()) == list(range(10))
    assert all(torch.equal(b[0].long(), b[1]) for b in batches)  # images and labels stay paired
    again = torch.cat([b[0].flatten() for b in iterate_batches(images, labels, 4, torch.Generator().manual_seed(3))])
    assert torch.equal(seen, again)
    plain = torch.cat([b[1].flatten() for b in iterate_batches(images, labels, 3, None, shuffle=False)])
    assert plain.tolist() == list(range(10))


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch_size"),
    ({"generator": None}, "Generator"),
])
def test_iterate_batches_errors(kwargs: dict, match: str) -> None:
    args = {"images": torch.zeros(4, 1, 2, 2), "labels": torch.zeros(4, 1, 2, 2), "batch_size": 2,
            "generator": torch.Generator()}
    with pytest.raises(ValueError, match=match):
        iterate_batches(**{**args, **kwargs})
    with pytest.raises(ValueError, match="same N"):
        iterate_batches(torch.zeros(4, 1, 2, 2), torch.zeros(3, 1, 2, 2), 2, torch.Generator())


def test_confusion_and_validation_dice_hand_worked() -> None:
    label = torch.tensor([[0, 1], [2, 2]])
    pred = torch.tensor([[1, 1], [2, 0]])
    assert confusion_matrix(pred, label, 3).tolist() == [[0, 1, 0], [0, 1, 0], [1, 0, 1]]
    # class 1: TP 1, FP 1, FN 0 -> 2/3; class 2: TP 1, FP 0, FN 1 -> 2/3
    model = OneHotOfChannel0()
    images, labels = pred.reshape(1, 1, 2, 2).float(), label.reshape(1, 1, 2, 2)
    dice = validation_dice(model, images, labels, num_classes=3, device=torch.device("cpu"), batch_size=1)
    assert dice == pytest.approx(2 / 3)
    # counts pool over slices; a perfect copy adds class 1 TP 1, class 2 TP 2: (4/5 + 6/7) / 2
    images2 = torch.cat([images, labels.float()])
    labels2 = torch.cat([labels, labels])
    dice2 = validation_dice(model, images2, labels2, num_classes=3, device=torch.device("cpu"), batch_size=1)
    assert dice2 == pytest.approx((4 / 5 + 6 / 7) / 2)
    empty = torch.zeros(1, 1, 2, 2)
    assert validation_dice(model, empty, empty.long(), 3, torch.device("cpu"), 4) == 1.0  # nothing to find


def test_validation_dice_restores_mode_and_checks_classes() -> None:
    net = _net()
    net.train()
    images, labels = _squares(2, 0)
    validation_dice(net, images, labels, NUM_CLASSES, torch.device("cpu"), 2)
    assert net.training
    with pytest.raises(ValueError, match="num_classes=4"):
        validation_dice(net, images, labels, 4, torch.device("cpu"), 2)
    assert net.training  # restored also when the evaluation raises (shapnas.runtime.eval_mode)


def test_dice_ce_loss_lower_for_right_logits() -> None:
    loss = dice_ce_loss()
    _, labels = _squares(2, 0)
    right = 10 * F.one_hot(labels[:, 0], NUM_CLASSES).permute(0, 3, 1, 2).float()
    assert float(loss(right, labels)) < 0.05 < float(loss(torch.zeros_like(right), labels))


def test_fit_is_deterministic_and_selects_best(tmp_path) -> None:
    net_a, net_b = _net(), _net()
    result_a = _fit(net_a, seed=5, epochs=3, history_path=tmp_path / "history.jsonl")
    result_b = _fit(net_b, seed=5, epochs=3)
    assert _without_time(result_a.history) == _without_time(result_b.history)
    assert _same_weights(net_a, net_b)
    lines = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1, 2]
    assert set(lines[0]) == {"epoch", "step", "train_loss", "val_dice", "time_s"}
    dices = [r["val_dice"] for r in result_a.history]
    assert result_a.best_epoch == dices.index(max(dices))
    assert result_a.best_val_dice == max(dices)
    val = _squares(4, 2)
    assert validation_dice(net_a, *val, NUM_CLASSES, torch.device("cpu"), 4) == pytest.approx(result_a.best_val_dice)
    assert result_a.history[-1]["train_loss"] < result_a.history[0]["train_loss"]
    net_c = _net()
    _fit(net_c, seed=6, epochs=3)
    assert not _same_weights(net_a, net_c)  # another batch order gives other weights


def test_fit_zero_grad_clip_and_frozen_params() -> None:
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    _fit(net, seed=0, epochs=1, grad_clip=0.0)  # every gradient scaled to 0: Adam moves nothing
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items() if "num_batches" not in k)
    frozen = _net()
    first = frozen.conv_0.conv_0.conv.weight
    first.requires_grad_(False)
    kept = first.clone()
    trainable = [p for p in frozen.parameters() if p.requires_grad]
    train, val = _squares(4, 1), _squares(2, 2)
    fit(frozen, trainable, train, val, epochs=1, lr=1e-2, batch_size=4, device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0), num_classes=NUM_CLASSES, progress=False)
    assert torch.equal(first, kept)
    assert count_parameters(frozen) - count_parameters(frozen, trainable_only=True) == first.numel()


def test_fit_resumes_exactly(tmp_path) -> None:
    full = _net()
    expected = _fit(full, seed=7, epochs=3)

    class Killed(Exception):
        pass

    def save_then_die(epoch: int, model: nn.Module, state: dict) -> None:
        save_checkpoint(tmp_path / "state.pt", {"model": model.state_dict(), "fit": state})
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        _fit(_net(), seed=7, epochs=3, checkpoint_fn=save_then_die, history_path=tmp_path / "history.jsonl")
    checkpoint = load_checkpoint(tmp_path / "state.pt")  # weights_only=True must read the state
    resumed = _net(seed=99)
    resumed.load_state_dict(checkpoint["model"])
    result = _fit(resumed, seed=12345, epochs=3, resume=checkpoint["fit"], history_path=tmp_path / "history.jsonl")
    assert _without_time(result.history) == _without_time(expected.history)
    assert result.best_epoch == expected.best_epoch
    assert _same_weights(resumed, full)
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 3


def test_fit_validates_every_n_steps_and_resumes_between_validations(tmp_path) -> None:
    """``val_every_steps``: V is scored once that many steps passed (3 steps an epoch here: after steps 6, 12
    and the last epoch's 15), selection sees only those points, and a run killed after an epoch without a
    validation resumes to the same weights and history."""
    full = _net()
    expected = _fit(full, seed=3, epochs=5, val_every_steps=5)
    assert [(r["epoch"], r["step"]) for r in expected.history] == [(1, 6), (3, 12), (4, 15)]
    assert expected.best_step in (6, 12, 15)
    every_epoch = _fit(_net(), seed=3, epochs=5)
    assert len(every_epoch.history) == 5

    class Killed(Exception):
        pass

    def save_then_die(epoch: int, model: nn.Module, state: dict) -> None:
        save_checkpoint(tmp_path / "state.pt", {"model": model.state_dict(), "fit": state})
        if epoch == 2:  # after step 9: no validation since step 6
            raise Killed

    with pytest.raises(Killed):
        _fit(_net(), seed=3, epochs=5, val_every_steps=5, checkpoint_fn=save_then_die,
             history_path=tmp_path / "history.jsonl")
    checkpoint = load_checkpoint(tmp_path / "state.pt")
    resumed = _net(seed=99)
    resumed.load_state_dict(checkpoint["model"])
    result = _fit(resumed, seed=12345, epochs=5, val_every_steps=5, resume=checkpoint["fit"],
                  history_path=tmp_path / "history.jsonl")
    assert _without_time(result.history) == _without_time(expected.history)
    assert result.best_step == expected.best_step
    assert _same_weights(resumed, full)
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 3
    with pytest.raises(ValueError, match="val_every_steps=-1"):
        _fit(_net(), seed=0, val_every_steps=-1)
