"""Segmentation metrics on hand-worked volumes; soft Dice against a hand computation and MONAI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.losses import DiceLoss

from shapnas.training.metrics import (
    confusion_counts,
    dice_from_counts,
    evaluate_volume,
    hd95,
    soft_dice,
    soft_dice_per_group,
    summarize_cases,
)

# BraTS-like regions on contiguous ids (ET = 3 here)
REGIONS = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
LABEL = np.array([[[0, 1, 2], [3, 3, 2], [0, 0, 1]]])  # (1, 3, 3)
PRED = np.array([[[0, 1, 1], [3, 2, 2], [0, 1, 0]]])

COUNT_CASES = [
    # pred, label, class_ids, (tp, fp, fn), dice
    ([[[1, 0], [1, 1]]], [[[1, 1], [0, 1]]], (1,), (2, 1, 1), 4 / 6),
    ([[[0, 0], [0, 0]]], [[[0, 0], [0, 0]]], (1,), (0, 0, 0), math.nan),  # empty/empty
    ([[[0, 0], [0, 0]]], [[[0, 1], [0, 0]]], (1,), (0, 0, 1), 0.0),  # empty prediction
    ([[[2, 2], [0, 0]]], [[[0, 0], [0, 0]]], (2,), (0, 2, 0), 0.0),  # empty reference
    ([[[1, 2], [2, 0]]], [[[1, 2], [2, 0]]], (1, 2), (3, 0, 0), 1.0),
    (PRED, LABEL, (1, 2, 3), (5, 1, 1), 5 / 6),
    (PRED, LABEL, (1, 3), (2, 2, 2), 0.5),
    (PRED, LABEL, (3,), (1, 0, 1), 2 / 3),
]


@pytest.mark.parametrize("pred,label,class_ids,counts,dice", COUNT_CASES)
def test_counts_and_dice(pred, label, class_ids, counts, dice):
    got = confusion_counts(np.asarray(pred), np.asarray(label), class_ids)
    assert got == counts
    value = dice_from_counts(*got)
    assert (math.isnan(value) and math.isnan(dice)) or value == pytest.approx(dice)


def test_counts_validation():
    with pytest.raises(ValueError, match="shape"):
        confusion_counts(np.zeros((1, 2, 2)), np.zeros((1, 2, 3)), (1,))
    with pytest.raises(ValueError, match="class_ids"):
        confusion_counts(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), ())


def voxel(shape, *points):
    mask = np.zeros(shape, dtype=bool)
    for point in points:
        mask[point] = True
    return mask


HD_CASES = [
    # pred, label, spacing, expected
    (voxel((1, 1, 5), (0, 0, 0)), voxel((1, 1, 5), (0, 0, 3)), None, 3.0),
    (voxel((1, 1, 5), (0, 0, 0)), voxel((1, 1, 5), (0, 0, 3)), (1.0, 1.0, 2.0), 6.0),
    (voxel((3, 2, 2), (0, 0, 0)), voxel((3, 2, 2), (2, 0, 0)), (2.5, 1.0, 1.0), 5.0),  # across slices
    (voxel((1, 6, 6), (0, 0, 0)), voxel((1, 6, 6), (0, 3, 4)), None, 5.0),
    (voxel((2, 4, 4), (0, 1, 1), (1, 2, 2)), voxel((2, 4, 4), (0, 1, 1), (1, 2, 2)), (3.0, 0.5, 0.5), 0.0),
]


@pytest.mark.parametrize("pred,label,spacing,expected", HD_CASES)
def test_hd95_hand_worked(pred, label, spacing, expected):
    assert hd95(pred, label, spacing) == pytest.approx(expected, abs=1e-5)


def test_hd95_is_a_percentile_not_the_maximum():
    label = np.zeros((1, 3, 40), dtype=bool)
    label[0, 0] = True  # a line of 40 voxels
    pred = label.copy()
    pred[0, 2, 0] = True  # one outlier 2 voxels away: 1 of 41 distances
    assert hd95(pred, label) == pytest.approx(0.0)
    pred[0, 2, :5] = True  # 5 of 45 distances (> 5 %) are now 2
    assert hd95(pred, label) == pytest.approx(2.0)


def test_hd95_empty_masks():
    empty, some = np.zeros((2, 4, 4), bool), voxel((2, 4, 4), (1, 1, 1))
    assert math.isnan(hd95(empty, empty))
    assert hd95(empty, some) == math.inf
    assert hd95(some, empty) == math.inf
    with pytest.raises(ValueError, match="spacing"):
        hd95(some, some, spacing=(1.0, 1.0))


def test_evaluate_volume_brats_like():
    result = evaluate_volume(PRED, LABEL, REGIONS, spacing=(1.0, 1.0, 1.0))
    assert set(result) == set(REGIONS)
    # HD95 interpolates linearly between sorted distances (torch.quantile): WT pred->ref is [0, 0, 0, 0, 0, 1]
    assert result["WT"] == pytest.approx({"dice": 5 / 6, "hd95": 0.75, "tp": 5, "fp": 1, "fn": 1, "n_pred": 6,
                                          "n_ref": 6})
    assert result["TC"]["dice"] == pytest.approx(0.5) and result["TC"]["n_ref"] == 4
    assert result["ET"]["dice"] == pytest.approx(2 / 3)
    assert result["ET"]["hd95"] == pytest.approx(0.95)  # ref->pred distances [0, 1]
    missing = evaluate_volume(np.zeros_like(LABEL), LABEL, {"ET": (3,), "none": (7,)})
    assert missing["ET"]["dice"] == 0.0 and missing["ET"]["hd95"] == math.inf
    assert math.isnan(missing["none"]["dice"]) and math.isnan(missing["none"]["hd95"])


def test_summarize_ignores_nan_and_counts_inf():
    cases = [
        {"case": "a", "regions": {"A": {"dice": 0.5, "hd95": math.inf}, "B": {"dice": 1.0, "hd95": 2.0}}},
        {"case": "b", "regions": {"A": {"dice": math.nan, "hd95": math.nan}, "B": {"dice": 0.0, "hd95": 4.0}}},
        {"A": {"dice": None, "hd95": None}, "B": {"dice": 0.5, "hd95": 3.0}},  # bare evaluate_volume output
    ]
    summary = summarize_cases(cases)
    assert summary["num_cases"] == 3
    assert summary["dice_per_class"] == pytest.approx({"A": 0.5, "B": 0.5})
    assert summary["dice_mean"] == pytest.approx(0.5)
    assert math.isnan(summary["hd95_per_class"]["A"])  # only inf/NaN there
    assert summary["hd95_per_class"]["B"] == pytest.approx(3.0)
    assert summary["hd95_mean"] == pytest.approx(3.0)
    assert summary["hd95_num_inf"] == {"A": 1, "B": 0}


def test_summarize_from_evaluate_volume():
    records = [{"case": str(i), "regions": evaluate_volume(PRED, LABEL, REGIONS)} for i in range(2)]
    summary = summarize_cases(records)
    assert summary["dice_mean"] == pytest.approx((5 / 6 + 0.5 + 2 / 3) / 3)


def test_soft_dice_perfect_confident_logits():
    labels = torch.tensor([[[[0, 1, 2], [2, 1, 0]]], [[[1, 1, 0], [0, 2, 2]]]])  # (2, 1, 2, 3)
    logits = 30.0 * torch.nn.functional.one_hot(labels[:, 0], 3).permute(0, 3, 1, 2).float()  # (2, 3, 2, 3)
    assert float(soft_dice(logits, labels)) == pytest.approx(1.0, abs=1e-6)
    assert float(soft_dice(logits, labels, include_background=True)) == pytest.approx(1.0, abs=1e-6)
    assert float(soft_dice(-logits, labels)) == pytest.approx(0.0, abs=1e-5)


def test_soft_dice_hand_computed():
    # one image, 3 pixels, 2 classes; foreground probabilities 0.75, 0.25, 0.5; labels 1, 0, 1
    logits = torch.tensor([[0.0, 0.0, 0.0], [math.log(3), -math.log(3), 0.0]]).reshape(1, 2, 1, 3)
    labels = torch.tensor([1, 0, 1]).reshape(1, 1, 1, 3)
    foreground = (2 * 1.25) / (1.5 + 2)  # = 5/7
    background = (2 * 0.75) / (1.5 + 1)  # = 0.6
    assert float(soft_dice(logits, labels, smooth=0.0)) == pytest.approx(foreground)
    assert float(soft_dice(logits, labels, include_background=True, smooth=0.0)) == pytest.approx(
        (foreground + background) / 2)


@pytest.mark.parametrize("include_background", [False, True])
def test_soft_dice_matches_monai_batch_dice(include_background):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 17, 13, generator=generator)
    labels = torch.randint(0, 4, (3, 1, 17, 13), generator=generator)
    loss = DiceLoss(include_background=include_background, to_onehot_y=True, softmax=True, batch=True,
                    smooth_nr=1e-5, smooth_dr=1e-5)
    expected = 1.0 - loss(logits, labels)
    assert float(soft_dice(logits, labels, include_background=include_background)) == pytest.approx(
        float(expected), abs=1e-6)


def test_soft_dice_is_differentiable():
    logits = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), requires_grad=True)
    labels = torch.randint(0, 3, (2, 1, 8, 8), generator=torch.Generator().manual_seed(2))
    soft_dice(logits, labels).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_soft_dice_per_group_equals_loop():
    generator = torch.Generator().manual_seed(3)
    groups, batch = 3, 2
    logits = torch.randn(groups * batch, 3, 16, 12, generator=generator)
    labels = torch.randint(0, 3, (batch, 1, 16, 12), generator=generator)
    values = soft_dice_per_group(logits, labels, groups)
    assert values.shape == (groups,)
    expected = torch.stack([soft_dice(logits[g * batch:(g + 1) * batch], labels) for g in range(groups)])
    torch.testing.assert_close(values, expected)
    assert len(set(values.tolist())) == groups  # the groups really differ


def test_soft_dice_validation():
    logits, labels = torch.zeros(2, 3, 4, 4), torch.zeros(2, 1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="expected"):
        soft_dice(logits, labels[:, 0])
    with pytest.raises(ValueError, match="batch"):
        soft_dice(logits, labels[:1])
    with pytest.raises(ValueError, match="groups"):
        soft_dice_per_group(logits, labels, groups=3)
