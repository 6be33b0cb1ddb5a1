"""Patient-level evaluation: predict every slice of a case, stack them, and score the volume.

Per case, the 2D predictions are stacked into a volume and scored per region (one per foreground class,
or BraTS WT/TC/ET) with Dice, HD95 and TP/FP/FN (``shapnas.training.metrics``, nnU-Net semantics), as the paper
reports patient-level Dice (Benedykciuk et al., Sci. Rep. 2026).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from shapnas.runtime import eval_mode
from shapnas.training.metrics import confusion_counts, dice_from_counts, evaluate_volume, summarize_cases

__all__ = ["predict_volume", "case_record", "evaluate_model", "case_dice", "patient_scores", "patient_dice"]


@torch.no_grad()
def predict_volume(model: nn.Module, image: np.ndarray | torch.Tensor, device: torch.device, batch_size: int,
                   output_size: tuple[int, int] | None = None) -> np.ndarray:
    """Arg-max class of every pixel of every slice (eval mode, no grad; the model's mode is restored).

    Args:
        model: maps (B, C, H, W) to logits (B, K, H, W).
        image: (S, C, H, W) float32 slices of one case.
        device: where the model lives; batches are moved there.
        batch_size: slices per forward pass.
        output_size: (H', W') to resize the logits to (bilinear) before the arg-max, e.g. the input's
            original in-plane size; None keeps (H, W). Defaults to None.

    Returns:
        (S, H', W') int64 class ids.

    Raises:
        ValueError: ``image`` is not 4D or ``batch_size < 1``.
    """
    if image.ndim != 4:
        raise ValueError(f"image shape {tuple(image.shape)}; expected (S, C, H, W)")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}; expected at least 1")
    images = torch.as_tensor(image, dtype=torch.float32)
    out = []
    with eval_mode(model):
        for start in range(0, images.shape[0], batch_size):
            logits = model(images[start:start + batch_size].to(device))  # (b, K, H, W)
            if output_size is not None and tuple(logits.shape[-2:]) != tuple(output_size):
                logits = F.interpolate(logits.float(), size=tuple(output_size), mode="bilinear", align_corners=False)
            out.append(logits.argmax(1).cpu())  # (b, H', W')
    if not out:
        height, width = output_size if output_size is not None else images.shape[-2:]
        return np.zeros((0, height, width), dtype=np.int64)
    return torch.cat(out).numpy().astype(np.int64)


def case_record(volume: Any, pred: np.ndarray, regions: dict[str, Sequence[int]]) -> dict[str, Any]:
    """The per-case record of the eval ``metrics.json``.

    Args:
        volume: a :class:`~shapnas.data.volumes.Volume` (``label`` (S, H, W), ``spacing`` (x = W, y = H, slice) mm).
        pred: (S, H, W) predicted class ids.
        regions: region name -> contiguous class ids (``DatasetSpec.eval_regions``).

    Returns:
        ``{case_id, patient_id, regions: {name: {dice, hd95, tp, fp, fn, n_pred, n_ref}}}``; HD95 in mm.
    """
    spacing = (float(volume.spacing[2]), float(volume.spacing[1]), float(volume.spacing[0]))  # (S, H, W)
    scores = evaluate_volume(pred, volume.label, {k: tuple(v) for k, v in regions.items()}, spacing)
    return {"case_id": volume.case_id, "patient_id": volume.patient_id, "regions": scores}


def evaluate_model(model: nn.Module, volumes: Sequence[Any], spec: Any, device: torch.device, batch_size: int,
                   *, progress: bool = False) -> dict[str, Any]:
    """Evaluate a model case by case on stacked 2D predictions.

    Args:
        model: maps (B, C, H, W) to logits (B, K, H, W) with K = ``len(spec.class_names)``.
        volumes: the cases (:class:`~shapnas.data.volumes.Volume`), e.g. the test split.
        spec: the :class:`~shapnas.data.layouts.DatasetSpec` (``eval_regions``; BraTS: WT, TC, ET).
        device: where the model lives.
        batch_size: slices per forward pass.
        progress: show a progress bar over cases. Defaults to False.

    Returns:
        The body of ``eval-<target>/metrics.json``: ``dice_mean``, ``dice_per_class``, ``hd95_mean``,
        ``hd95_per_class``, ``hd95_num_inf``, ``num_cases`` (``shapnas.training.metrics.summarize_cases``) and
        ``per_case`` records (:func:`case_record`).

    Raises:
        ValueError: no volumes.
    """
    if not volumes:
        raise ValueError("volumes is empty; expected at least one case to evaluate")
    records = []
    for volume in tqdm(volumes, desc="evaluate", leave=False, disable=not progress):
        pred = predict_volume(model, volume.image, device, batch_size)  # (S, H, W)
        records.append(case_record(volume, pred, spec.eval_regions))
    return {**summarize_cases(records), "per_case": records}


def case_dice(regions: dict[str, Any]) -> float:
    """Mean Dice over a case's regions, skipping regions absent from both prediction and reference (NaN).

    Args:
        regions: region name -> ``{dice, ...}`` (a ``case_record``'s ``regions``; JSON null read as NaN).

    Returns:
        The mean, or NaN when every region is absent from both masks.
    """
    values = [float(r["dice"]) for r in regions.values() if r.get("dice") is not None and not np.isnan(r["dice"])]
    return float(np.mean(values)) if values else float("nan")


def patient_scores(per_case: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Patient-level Dice: per patient the mean over its cases (ACDC: two frames) of :func:`case_dice`.

    Args:
        per_case: ``case_record`` dicts (``patient_id``, ``regions``), e.g. an eval ``metrics.json``'s ``per_case``.

    Returns:
        patient id -> Dice (fraction); patients whose every case is NaN are left out.
    """
    by_patient: dict[str, list[float]] = {}
    for record in per_case:
        by_patient.setdefault(str(record["patient_id"]), []).append(case_dice(record["regions"]))
    scores = {}
    for patient, values in by_patient.items():
        finite = [v for v in values if not np.isnan(v)]
        if finite:
            scores[patient] = float(np.mean(finite))
    return scores


@torch.no_grad()
def patient_dice(model: nn.Module, volumes: Sequence[Any], spec: Any, device: torch.device,
                 batch_size: int) -> float:
    """Mean patient-level Dice of whole volumes: the model-selection score on V of every arm.

    The same rule as the test evaluation (stacked 2D predictions, Dice per region, mean over regions, mean
    over a patient's cases), without HD95, so V selection and test reporting measure the same thing
    (Benedykciuk et al., Sci. Rep. 2026 report patient-level Dice).

    Args:
        model: maps (B, C, H, W) to logits (B, K, H, W).
        volumes: whole V volumes (:class:`~shapnas.data.volumes.Volume`).
        spec: the dataset spec (``eval_regions``).
        device: where the model lives.
        batch_size: slices per forward pass.

    Returns:
        The mean over patients (NaN-free patients only); NaN if none.

    Raises:
        ValueError: no volumes.
    """
    if not volumes:
        raise ValueError("volumes is empty; expected the whole V volumes to score")
    records = []
    for volume in volumes:
        pred = predict_volume(model, volume.image, device, batch_size)  # (S, H, W)
        regions = {}
        for name, class_ids in spec.eval_regions.items():
            tp, fp, fn = confusion_counts(pred, volume.label, tuple(class_ids))
            regions[name] = {"dice": dice_from_counts(tp, fp, fn)}
        records.append({"patient_id": volume.patient_id, "regions": regions})
    scores = list(patient_scores(records).values())
    return float(np.mean(scores)) if scores else float("nan")
