"""Segmentation metrics: per-case Dice/HD95 with TP/FP/FN on stacked volumes, their summary, and soft Dice.

Semantics follow nnU-Net v2 (Dice NaN when TP + FP + FN = 0, counts kept per case) and MONAI
(``compute_hausdorff_distance``; ``DiceLoss(batch=True)`` for the soft Dice used as the Shapley value).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.metrics import compute_hausdorff_distance

__all__ = [
    "confusion_counts",
    "dice_from_counts",
    "hd95",
    "evaluate_volume",
    "summarize_cases",
    "soft_dice",
    "soft_dice_per_group",
]


def _check_same_shape(pred: np.ndarray, label: np.ndarray) -> None:
    if pred.shape != label.shape:
        raise ValueError(f"prediction shape {pred.shape} != label shape {label.shape}; expected equal (S, H, W)")


def confusion_counts(pred: np.ndarray, label: np.ndarray, class_ids: tuple[int, ...]) -> tuple[int, int, int]:
    """TP, FP, FN voxels of the region made of ``class_ids``.

    Args:
        pred: integer label volume (S, H, W) predicted.
        label: integer reference volume (S, H, W).
        class_ids: the classes forming the region (e.g. BraTS WT = (1, 2, 4)).

    Returns:
        (tp, fp, fn).

    Raises:
        ValueError: on a shape mismatch or an empty ``class_ids``.
    """
    _check_same_shape(pred, label)
    if len(class_ids) == 0:
        raise ValueError("class_ids=(); expected at least one class id")
    p, r = np.isin(pred, class_ids), np.isin(label, class_ids)
    return int(np.sum(p & r)), int(np.sum(p & ~r)), int(np.sum(~p & r))


def dice_from_counts(tp: int, fp: int, fn: int) -> float:
    """Dice ``2TP / (2TP + FP + FN)``; NaN when TP + FP + FN = 0 (both masks empty, as nnU-Net)."""
    denominator = 2 * tp + fp + fn
    return float("nan") if tp + fp + fn == 0 else 2.0 * tp / denominator


def hd95(pred_mask: np.ndarray, label_mask: np.ndarray,
         spacing: tuple[float, float, float] | None = None) -> float:
    """Symmetric 95th-percentile Hausdorff distance between two binary volumes (MONAI, euclidean).

    Empty masks: NaN when both are empty (undefined, like Dice); ``inf`` when exactly one is empty (MONAI's
    value: a missed or hallucinated structure is infinitely far). :func:`summarize_cases` averages the finite
    values and counts the infinite ones.

    Args:
        pred_mask: bool volume (S, H, W) predicted.
        label_mask: bool volume (S, H, W) reference.
        spacing: voxel size along (S, H, W), e.g. (slice thickness, row, column) in mm. Defaults to None
            (unit spacing, distances in voxels).

    Returns:
        The distance, in the units of ``spacing``.

    Raises:
        ValueError: on a shape mismatch or a ``spacing`` of the wrong length.
    """
    _check_same_shape(pred_mask, label_mask)
    if spacing is not None and len(spacing) != pred_mask.ndim:
        raise ValueError(f"spacing={spacing}; expected {pred_mask.ndim} values, one per axis of {pred_mask.shape}")
    pred_any, label_any = bool(np.any(pred_mask)), bool(np.any(label_mask))
    if not pred_any and not label_any:
        return float("nan")
    if pred_any != label_any:
        return float("inf")
    y_pred = torch.as_tensor(np.asarray(pred_mask, dtype=bool))[None, None].float()  # (1, 1, S, H, W)
    y = torch.as_tensor(np.asarray(label_mask, dtype=bool))[None, None].float()  # (1, 1, S, H, W)
    spacing_arg = None if spacing is None else [float(s) for s in spacing]
    distance = compute_hausdorff_distance(y_pred, y, include_background=True, percentile=95, spacing=spacing_arg)
    return float(distance[0, 0])


def evaluate_volume(pred: np.ndarray, label: np.ndarray, regions: Mapping[str, tuple[int, ...]],
                    spacing: tuple[float, float, float] | None = None) -> dict[str, dict[str, float | int]]:
    """Dice, HD95 and counts of every region of one case (a patient's stacked 2D predictions).

    Args:
        pred: integer label volume (S, H, W) predicted.
        label: integer reference volume (S, H, W).
        regions: region name -> class ids, e.g. ``{"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}`` or one
            region per foreground class.
        spacing: voxel size along (S, H, W). Defaults to None (voxels).

    Returns:
        ``{region: {dice, hd95, tp, fp, fn, n_pred, n_ref}}``.
    """
    _check_same_shape(pred, label)
    result: dict[str, dict[str, float | int]] = {}
    for name, class_ids in regions.items():
        tp, fp, fn = confusion_counts(pred, label, tuple(class_ids))
        result[name] = {
            "dice": dice_from_counts(tp, fp, fn),
            "hd95": hd95(np.isin(pred, class_ids), np.isin(label, class_ids), spacing),
            "tp": tp, "fp": fp, "fn": fn, "n_pred": tp + fp, "n_ref": tp + fn,
        }
    return result


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def summarize_cases(case_records: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Summary over cases: per region the mean over cases ignoring NaN, then the mean over regions.

    Args:
        case_records: one per case, either the output of :func:`evaluate_volume` or a dict holding it under
            ``"regions"`` (other keys, e.g. ``"case"``, are ignored). ``None`` is read as NaN (JSON null).

    Returns:
        ``dice_mean``, ``dice_per_class`` {region: mean}, ``hd95_mean``, ``hd95_per_class`` (means of the
        finite HD95 values), ``hd95_num_inf`` {region: cases where exactly one mask was empty}, ``num_cases``.
    """
    per_case = [record["regions"] if "regions" in record else record for record in case_records]
    names: list[str] = []
    for regions in per_case:
        names += [name for name, value in regions.items() if isinstance(value, Mapping) and name not in names]
    dice: dict[str, float] = {}
    distance: dict[str, float] = {}
    num_inf: dict[str, int] = {}
    for name in names:
        rows = [regions[name] for regions in per_case if name in regions]
        dice[name] = _nanmean([row.get("dice") for row in rows])
        distances = [row.get("hd95") for row in rows]
        num_inf[name] = sum(1 for d in distances if d is not None and math.isinf(d))
        distance[name] = _nanmean([d for d in distances if d is None or not math.isinf(d)])
    return {
        "dice_mean": _nanmean(list(dice.values())),
        "dice_per_class": dice,
        "hd95_mean": _nanmean(list(distance.values())),
        "hd95_per_class": distance,
        "hd95_num_inf": num_inf,
        "num_cases": len(case_records),
    }


def _check_logits(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if logits.ndim != 4 or labels.ndim != 4 or labels.shape[1] != 1:
        raise ValueError(f"logits {tuple(logits.shape)}, labels {tuple(labels.shape)}; "
                         "expected (B, C, H, W) and (B, 1, H, W)")
    if logits.shape[2:] != labels.shape[2:]:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} differ in (H, W)")


def _soft_dice_grouped(logits: torch.Tensor, labels: torch.Tensor, groups: int, include_background: bool,
                       smooth: float) -> torch.Tensor:
    num_classes = logits.shape[1]
    batch = labels.shape[0]
    probs = torch.softmax(logits.float(), dim=1).reshape(groups, batch, num_classes, -1)  # (G, B, C, HW)
    onehot = F.one_hot(labels[:, 0].long(), num_classes).permute(0, 3, 1, 2)  # (B, C, H, W)
    onehot = onehot.reshape(1, batch, num_classes, -1).to(probs.dtype)  # (1, B, C, HW)
    intersection = (probs * onehot).sum(dim=(1, 3))  # (G, C)
    denominator = probs.sum(dim=(1, 3)) + onehot.sum(dim=(1, 3))  # (G, C)
    dice = (2.0 * intersection + smooth) / (denominator + smooth)  # (G, C)
    if not include_background:
        if num_classes < 2:
            raise ValueError(f"logits have {num_classes} class; include_background=False needs at least 2")
        dice = dice[:, 1:]
    return dice.mean(dim=1)  # (G,)


def soft_dice(logits: torch.Tensor, labels: torch.Tensor, include_background: bool = False,
              smooth: float = 1e-5) -> torch.Tensor:
    """Mean soft Dice of softmax probabilities against one-hot labels (differentiable).

    Per class, intersections and sums run over the whole batch and all pixels (MONAI ``DiceLoss(batch=True,
    softmax=True, to_onehot_y=True)``, ``smooth_nr = smooth_dr = smooth``); then the mean over classes
    (foreground only unless ``include_background``). The Shapley value function (method.md).

    Args:
        logits: (B, C, H, W).
        labels: (B, 1, H, W) integer class ids.
        include_background: also average class 0. Defaults to False.
        smooth: added to numerator and denominator. Defaults to 1e-5.

    Returns:
        A scalar tensor in [0, 1].
    """
    _check_logits(logits, labels)
    if logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits batch {logits.shape[0]} != labels batch {labels.shape[0]}")
    return _soft_dice_grouped(logits, labels, 1, include_background, smooth)[0]


def soft_dice_per_group(logits: torch.Tensor, labels: torch.Tensor, groups: int, include_background: bool = False,
                        smooth: float = 1e-5) -> torch.Tensor:
    """:func:`soft_dice` of G coalitions stacked along the batch dimension, against one shared label batch.

    Args:
        logits: (G*B, C, H, W), group-major: rows ``g*B .. (g+1)*B - 1`` belong to group ``g``.
        labels: (B, 1, H, W) integer class ids, shared by every group.
        groups: G.
        include_background: also average class 0. Defaults to False.
        smooth: added to numerator and denominator. Defaults to 1e-5.

    Returns:
        (G,) soft Dice per group; entry g equals ``soft_dice(logits[g*B:(g+1)*B], labels)``.
    """
    _check_logits(logits, labels)
    if groups < 1 or logits.shape[0] != groups * labels.shape[0]:
        raise ValueError(f"logits batch {logits.shape[0]} with groups={groups} and labels batch "
                         f"{labels.shape[0]}; expected logits batch = groups * labels batch")
    return _soft_dice_grouped(logits, labels, groups, include_background, smooth)
