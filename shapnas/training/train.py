"""Supervised training of any 2D segmentation net: batches, DiceCE loss, validation Dice, ``fit``.

Used for backbone pre-training, the fine-tuned baseline and the re-training of the discrete cell
(Benedykciuk et al., Sci. Rep. 2026; IAC, arXiv 2405.03420): Adam on the given parameters, MONAI
``DiceCELoss``, hard foreground Dice on the held-out validation slices V after each epoch, and model
selection on V (the best epoch's weights are restored at the end). The training batches (never V) may be
augmented (:mod:`shapnas.training.augmentation`). Generic over any ``nn.Module`` mapping
``(B, C, H, W)`` images to ``(B, K, H, W)`` logits. Randomness only from the ``torch.Generator`` passed in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from monai.losses import DiceCELoss
from torch import nn
from tqdm.auto import tqdm

from shapnas.runs.files import append_jsonl
from shapnas.runtime import (
    DevicePolicy,
    autocast,
    channels_last_convs,
    configure_backends,
    device_policy,
    eval_mode,
    grad_scaler,
    keep_on_device,
    to_batch,
)
from shapnas.training.augmentation import BatchAugmenter, build_augmenter

__all__ = [
    "FitResult",
    "iterate_batches",
    "dice_ce_loss",
    "confusion_matrix",
    "validation_dice",
    "fit",
    "count_parameters",
    "train_epoch",
    "training_step",
]

CheckpointFn = Callable[[int, nn.Module, dict[str, Any]], None]


@dataclass
class FitResult:
    """Outcome of :func:`fit`.

    Attributes:
        best_epoch: 0-based epoch whose weights were kept (highest V Dice, first on ties).
        best_val_dice: its V Dice.
        history: one record per validation ``{epoch, step, train_loss, val_dice, time_s}`` (resumed ones too;
            ``train_loss`` of the epoch that ended at the validation, ``time_s`` since the previous record).
        wall_s: seconds spent training and validating (summed over resumed calls).
        best_step: optimiser steps taken when the kept weights were validated.
        steps: optimiser steps taken in all.
        stopped: why training ended: ``epochs`` (the cap), ``budget`` (``max_steps``) or ``patience``.
    """

    best_epoch: int
    best_val_dice: float
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    best_step: int = -1
    steps: int = 0
    stopped: str = "epochs"


def iterate_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                    generator: torch.Generator | None, shuffle: bool = True
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches of slices; the order is drawn when this function is called (not lazily).

    Args:
        images: (N, C, H, W) float.
        labels: (N, 1, H, W) int64 class ids.
        batch_size: slices per batch; the last, partial batch is kept.
        generator: CPU generator the permutation is drawn from (required when ``shuffle``).
        shuffle: random order (``torch.randperm(N, generator=generator)``); else the stored order.

    Returns:
        An iterator of ``(images (b, C, H, W), labels (b, 1, H, W))`` on the tensors' own device.

    Raises:
        ValueError: mismatched lengths, ``batch_size < 1``, or ``shuffle`` without a generator.
    """
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"images {tuple(images.shape)} and labels {tuple(labels.shape)}; expected the same N")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}; expected at least 1")
    num = images.shape[0]
    if shuffle:
        if generator is None:
            raise ValueError("shuffle=True needs a torch.Generator (no global RNG is used)")
        order = torch.randperm(num, generator=generator)
    else:
        order = torch.arange(num)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        image_order, label_order = order.to(images.device), order.to(labels.device)  # one copy per pass
        for start in range(0, num, batch_size):
            yield images[image_order[start:start + batch_size]], labels[label_order[start:start + batch_size]]

    return batches()


def dice_ce_loss() -> DiceCELoss:
    """MONAI ``DiceCELoss(to_onehot_y=True, softmax=True)``: logits (B, K, H, W), labels (B, 1, H, W)."""
    return DiceCELoss(to_onehot_y=True, softmax=True)


def confusion_matrix(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts ``M[r, p]`` of pixels with reference class ``r`` predicted as ``p``.

    Args:
        pred: integer class ids, any shape.
        label: integer class ids, the same shape.
        num_classes: K.

    Returns:
        (K, K) int64 on the inputs' device.
    """
    index = label.reshape(-1).long() * num_classes + pred.reshape(-1).long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _dice_from_confusion(matrix: torch.Tensor) -> float:
    """Mean over foreground classes of ``2TP / (2TP + FP + FN)``; classes absent from both are skipped,
    and 1.0 when every foreground class is absent from both (nothing to find, nothing predicted)."""
    matrix = matrix.double()
    tp = matrix.diagonal()[1:]  # (K-1,)
    fp = matrix.sum(0)[1:] - tp
    fn = matrix.sum(1)[1:] - tp
    denominator = 2 * tp + fp + fn
    present = denominator > 0
    if not bool(present.any()):
        return 1.0
    return float((2 * tp[present] / denominator[present]).mean())


@torch.no_grad()
def validation_dice(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                    device: torch.device, batch_size: int) -> float:
    """Mean foreground hard Dice over a set of slices (counts pooled over all slices, then per class).

    The model runs in eval mode without gradients; its previous train/eval mode is restored.

    Args:
        model: maps (B, C, H, W) to logits (B, K, H, W).
        images: (N, C, H, W).
        labels: (N, 1, H, W) int64.
        num_classes: K, including background.
        device: where the model lives; batches are moved there.
        batch_size: slices per forward pass.

    Returns:
        The mean over foreground classes present in the reference or the prediction (1.0 if none is).
    """
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    policy = device_policy(device)
    with eval_mode(model):
        for batch_images, batch_labels in iterate_batches(images, labels, batch_size, None, shuffle=False):
            with autocast(policy):
                logits = model(to_batch(batch_images, device, policy))  # (b, K, H, W)
            if logits.shape[1] != num_classes:
                raise ValueError(f"model gives {logits.shape[1]} output channels; expected num_classes={num_classes}")
            matrix += confusion_matrix(logits.argmax(1), batch_labels.to(device)[:, 0], num_classes)
    return _dice_from_confusion(matrix)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (only those with ``requires_grad`` when ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module, params: list[nn.Parameter],
                  images: torch.Tensor, labels: torch.Tensor, device: torch.device, grad_clip: float | None,
                  policy: DevicePolicy, scaler: torch.amp.GradScaler) -> torch.Tensor:
    """One optimiser step on a batch under the device's policy (autocast and loss scaling on CUDA only).

    Args:
        model: maps (B, C, H, W) to logits (B, K, H, W), in training mode.
        optimizer: steps ``params``.
        loss_fn: (logits, labels) -> scalar loss.
        params: the trained parameters (gradient clipping).
        images: (B, C, H, W). labels: (B, 1, H, W), on any device.
        device: where the model lives.
        grad_clip: max gradient norm, or None.
        policy: :func:`shapnas.runtime.device_policy` of ``device``.
        scaler: :func:`shapnas.runtime.grad_scaler` of the policy (a pass-through unless fp16).

    Returns:
        The detached loss (a 0-dim tensor on ``device``; reading it is left to the caller).
    """
    optimizer.zero_grad(set_to_none=True)
    with autocast(policy):
        logits = model(to_batch(images, device, policy))  # (B, K, H, W)
    loss = loss_fn(logits.float(), labels.to(device, non_blocking=True))  # the loss in float32
    scaler.scale(loss).backward()
    if grad_clip is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module, params: list[nn.Parameter],
                batches: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device, grad_clip: float | None,
                desc: str, progress: bool, scaler: torch.amp.GradScaler | None = None,
                augmenter: BatchAugmenter | None = None, generator: torch.Generator | None = None) -> float:
    """One pass over ``batches``; returns the mean batch loss.

    The losses are summed on the device (in float64, the sum a Python float would give) and read once at the
    end, so a CUDA epoch never waits for the GPU between steps; on CPU the running mean is shown per step.

    Args:
        model: the trained network.
        optimizer: steps ``params``.
        loss_fn: (logits, labels) -> loss.
        params: the trained parameters.
        batches: (images (B, C, H, W), labels (B, 1, H, W)) pairs.
        device: where the model lives.
        grad_clip: max gradient norm, or None.
        desc: progress-bar label.
        progress: show a progress bar.
        scaler: the gradient scaler to keep across epochs; None makes one for this epoch.
        augmenter: augments each batch on ``device`` before its step (:func:`shapnas.training.augmentation.
            build_augmenter`); None trains on the batches as they are. Defaults to None.
        generator: the run's generator the augmenter draws from (required with ``augmenter``). Defaults to None.

    Returns:
        The mean batch loss.

    Raises:
        ValueError: an augmenter without a generator.
    """
    if augmenter is not None and generator is None:
        raise ValueError("augmenter without a generator; expected the run's torch.Generator (no global RNG is used)")
    model.train()
    policy = device_policy(device)
    scaler = scaler if scaler is not None else grad_scaler(policy)
    total, count = torch.zeros((), dtype=torch.float64, device=device), 0
    bar = tqdm(batches, desc=desc, leave=False, disable=not progress)
    for images, labels in bar:
        if augmenter is not None:  # on the device: (B, C, H, W), (B, 1, H, W)
            images, labels = augmenter(images.to(device, non_blocking=True), labels.to(device, non_blocking=True),
                                       generator)
        loss = training_step(model, optimizer, loss_fn, params, images, labels, device, grad_clip, policy, scaler)
        total += loss.double()
        count += 1
        if progress and device.type == "cpu":
            bar.set_postfix(loss=f"{float(total) / count:.4f}")
    return float(total) / max(count, 1)


def _rewrite_history(path: Path, history: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    for record in history:
        append_jsonl(path, record)


def _flat_params(params: Sequence[nn.Parameter] | Sequence[dict[str, Any]]) -> list[nn.Parameter]:
    """The parameters of a list of parameters or of Adam parameter groups (dicts with ``params``)."""
    flat: list[nn.Parameter] = []
    for item in params:
        flat.extend(item["params"] if isinstance(item, dict) else [item])
    return flat


def _stop_reason(step: int, max_steps: int, best_step: int, patience_steps: int) -> str | None:
    """``"budget"`` once ``max_steps`` are spent, ``"patience"`` once V Dice has not improved for
    ``patience_steps`` steps, else None (0 disables either rule)."""
    if max_steps and step >= max_steps:
        return "budget"
    if patience_steps and best_step >= 0 and step - best_step >= patience_steps:
        return "patience"
    return None


def fit(model: nn.Module, params: Sequence[nn.Parameter] | Sequence[dict[str, Any]],
        train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor], *, epochs: int, lr: float,
        batch_size: int, device: torch.device, generator: torch.Generator, num_classes: int,
        history_path: str | Path | None = None, checkpoint_fn: CheckpointFn | None = None, desc: str = "train",
        grad_clip: float | None = None, progress: bool = True, resume: dict[str, Any] | None = None,
        max_steps: int = 0, patience_steps: int = 0, scorer: Callable[[nn.Module], float] | None = None,
        val_every_steps: int = 0, augmentation: str = "none", dataset: str = "") -> FitResult:
    """Train with Adam and DiceCE, select the point with the best V Dice and restore its weights.

    V Dice is measured after every epoch, or, with ``val_every_steps``, after the first epoch that ends at
    least that many steps after the last validation (and always after the last epoch). Training stops at the
    epoch cap, once ``max_steps`` optimiser steps are spent, or once V Dice has not improved for
    ``patience_steps`` steps (early stopping; IAC re-trains and the fine-tuned control are selected on V,
    Benedykciuk et al., Sci. Rep. 2026). Deterministic on CPU for a fixed model initialisation and
    generator state: batches are shuffled only with ``generator`` (one permutation per epoch) and augmented
    (``augmentation``) with draws from it (a fixed block per batch; none without augmentation). On CUDA it
    follows :func:`shapnas.runtime.device_policy`: bf16 autocast (fp16 with loss scaling where bf16 is
    missing), channels-last convolutions, cuDNN autotuning, the slices kept on the GPU when they fit.

    Args:
        model: on ``device``; maps (B, C, H, W) to logits (B, K, H, W).
        params: the parameters Adam updates (others stay as they are, e.g. a frozen backbone), or Adam
            parameter groups (dicts with ``params`` and an optional own ``lr``).
        train: (images (N, C, H, W), labels (N, 1, H, W) int64), on any device.
        val: the held-out validation slices V, the same layout (pooled V Dice when ``scorer`` is None).
        epochs: epoch cap (a resumed call runs the ones left).
        lr: Adam learning rate (of groups without their own).
        batch_size: slices per batch.
        device: where the model lives; batches are moved there.
        generator: CPU generator for the batch order.
        num_classes: K, including background.
        history_path: ``history.jsonl`` to (re)write, one record ``{epoch, step, train_loss, val_dice, time_s}``
            per validation; a fresh call empties it, a resumed one keeps the resumed history. Defaults to None.
        checkpoint_fn: called after each epoch as ``checkpoint_fn(epoch, model, state)``; ``state`` holds plain
            types and tensors (``epoch``, ``optimizer``, ``best_state``, ``best_epoch``, ``best_val_dice``,
            ``history``, ``generator``, ``wall_s``, ``best_step``) and, saved with the model's weights, resumes
            training via ``resume``. Defaults to None.
        desc: progress-bar label.
        grad_clip: max gradient norm (``clip_grad_norm_`` on ``params``); None disables. Defaults to None.
        progress: show a progress bar per epoch. Defaults to True.
        resume: a ``state`` given to ``checkpoint_fn``; load the model weights saved with it first.
            Defaults to None.
        max_steps: optimiser-step budget; 0 means ``epochs`` full epochs. Defaults to 0.
        patience_steps: stop once V Dice has not improved for this many steps; 0 never stops early.
            Defaults to 0.
        scorer: model -> V score used for selection instead of the pooled Dice of ``val`` (e.g. the mean
            patient-level Dice of whole V volumes, :func:`shapnas.training.evaluate.patient_dice`). Defaults to None.
        val_every_steps: validate only once this many optimiser steps have passed since the last validation
            (scoring whole V volumes after every 3-10-step epoch costs as much as the training); 0 validates
            after every epoch. Early stopping and selection only see validated points. Defaults to 0.
        augmentation: augmentation policy of the training batches, ``none`` or ``standard``
            (:mod:`shapnas.training.augmentation`; V is never augmented). Defaults to ``none``.
        dataset: the dataset name, which says the axes ``standard`` may mirror. Defaults to ``""`` (none).

    Returns:
        The :class:`FitResult`; the model holds the best point's weights.
    """
    groups = list(params)
    params = _flat_params(groups)
    if epochs < 1:
        raise ValueError(f"epochs={epochs}; expected at least 1")
    if not params:
        raise ValueError("params is empty; expected the parameters to train")
    if max_steps < 0 or patience_steps < 0 or val_every_steps < 0:
        raise ValueError(f"max_steps={max_steps}, patience_steps={patience_steps}, val_every_steps={val_every_steps}; "
                         "expected non-negative")
    augmenter = build_augmenter(augmentation, dataset)  # None for "none": the batches as they are
    policy = device_policy(device)  # CUDA: mixed precision, channels-last, resident slices; CPU: all off
    configure_backends(policy)
    channels_last_convs(model, policy)
    train, val = tuple(keep_on_device(train, device, policy)), tuple(keep_on_device(val, device, policy))
    scaler = grad_scaler(policy)
    optimizer = torch.optim.Adam(groups, lr=lr)
    loss_fn = dice_ce_loss()
    score = scorer or (lambda net: validation_dice(net, *val, num_classes=num_classes, device=device,
                                                   batch_size=batch_size))
    history: list[dict[str, Any]] = []
    best_epoch, best_dice, best_state, wall, best_step = -1, -float("inf"), None, 0.0, -1
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        generator.set_state(resume["generator"])
        history = [dict(r) for r in resume["history"]]
        best_epoch, best_dice = int(resume["best_epoch"]), float(resume["best_val_dice"])
        best_state, wall = resume["best_state"], float(resume["wall_s"])
        best_step = int(resume.get("best_step", -1))
    if history_path is not None:
        _rewrite_history(Path(history_path), history)
    # epochs without a validation leave no history record: the state says where training stopped
    step, first_epoch = (int(resume["step"]), int(resume["epoch"]) + 1) if resume is not None else (0, 0)
    validated_step = int(history[-1]["step"]) if history else 0
    unrecorded = wall - sum(r["time_s"] for r in history)  # seconds since the last history record
    if max_steps:
        epochs = max(epochs, math.ceil(max_steps / max(math.ceil(train[0].shape[0] / batch_size), 1)))
    stopped = _stop_reason(step, max_steps, best_step, patience_steps) if resume is not None else None
    for epoch in range(first_epoch, epochs):
        if stopped:
            break
        tick = time.perf_counter()
        batches = list(iterate_batches(*train, batch_size, generator, shuffle=True))
        if max_steps:
            batches = batches[:max_steps - step]
        train_loss = train_epoch(model, optimizer, loss_fn, params, batches, device, grad_clip,
                                 f"{desc} {epoch + 1}/{epochs}", progress, scaler, augmenter, generator)
        step += len(batches)
        last = epoch == epochs - 1 or bool(max_steps and step >= max_steps)
        validate = last or step - validated_step >= val_every_steps
        if validate:
            validated_step, val_dice = step, float(score(model))
            if val_dice > best_dice:
                best_epoch, best_dice, best_step = epoch, val_dice, step
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elapsed = time.perf_counter() - tick
        wall += elapsed
        unrecorded += elapsed
        if validate:
            record = {"epoch": epoch, "step": step, "train_loss": train_loss, "val_dice": val_dice,
                      "time_s": unrecorded}
            unrecorded = 0.0
            history.append(record)
            if history_path is not None:
                append_jsonl(history_path, record)
        stopped = _stop_reason(step, max_steps, best_step, patience_steps)
        if checkpoint_fn is not None:
            checkpoint_fn(epoch, model, {
                "epoch": epoch, "optimizer": optimizer.state_dict(), "best_state": best_state,
                "best_epoch": best_epoch, "best_val_dice": best_dice, "history": [dict(r) for r in history],
                "generator": generator.get_state(), "wall_s": wall, "best_step": best_step, "step": step})
    if best_state is not None:
        model.load_state_dict(best_state)
    return FitResult(best_epoch=best_epoch, best_val_dice=best_dice, history=history, wall_s=wall,
                     best_step=best_step, steps=step, stopped=stopped or "epochs")
