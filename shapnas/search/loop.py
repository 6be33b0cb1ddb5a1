"""First-order PC-DARTS bilevel search of the implanted cells, with a pluggable pruning policy.

Weight steps (Adam by default, or PC-DARTS's SGD; cosine, clipped) on the W half of the training patients
alternate with architecture steps (Adam on α, β) on the A half once the warm-up is over (PC-DARTS, Xu et
al. ICLR 2020). An epoch is ``search_epoch_steps`` weight steps (0: one pass over W), so budgets are
optimiser steps. After each epoch the pruning policy may remove ops (Benedykciuk et al., Sci. Rep. 2026):
survivors keep α, β, weights and optimiser state; removed ops are no longer computed. The backbone stays
frozen and in eval mode. The W batches of the weight steps are augmented as ``cfg.augmentation`` says (the A
batches of the architecture steps and V never are). Each epoch records whether the search learns: α spread and
the chosen ops' probability (:func:`alpha_signal`), the relative change of the cell weights, step counts and the
loss.

Every epoch appends one line to ``history.jsonl`` and saves a resumable checkpoint; per-epoch randomness
comes from generators derived from (seed, epoch), so a resumed search ends exactly as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from shapnas.config.stage_configs import SearchConfig
from shapnas.networks.genotype import edge_index
from shapnas.networks.ops import PRIMITIVES
from shapnas.runs.files import append_jsonl, load_checkpoint, read_jsonl, save_checkpoint
from shapnas.runtime import channels_last_convs, configure_backends, device_policy, grad_scaler, keep_on_device
from shapnas.search.pruning import PolicyContext, build_policy, is_pruning_epoch, mean_op_probs, select_ops_to_prune
from shapnas.shapley.supernet_game import estimate_supernet_shapley, foreground_rich_batch, round_options
from shapnas.training.augmentation import build_augmenter
from shapnas.training.train import dice_ce_loss, iterate_batches, training_step, validation_dice

__all__ = ["SearchData", "SearchResult", "run_search_loop", "epoch_generators", "build_optimizers",
           "train_search_epoch", "alpha_signal", "search_signal", "flat_weights"]

STATE_FILE = "search_state.pt"
HISTORY_FILE = "history.jsonl"


@dataclass
class SearchData:
    """Slices of the splits the search uses, on the search device.

    Attributes:
        train_w: (images (N, C, H, W), labels (N, 1, H, W)) for weight steps.
        train_a: the same for architecture steps.
        val: held-out validation slices (V Dice each epoch, Shapley values).
        num_classes: classes including background.
    """

    train_w: tuple[torch.Tensor, torch.Tensor]
    train_a: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    num_classes: int


@dataclass
class SearchResult:
    """Outcome of a search: the derived genotype, epochs run and the wall-clock split."""

    genotype: Any
    epochs: int
    wall_s: float
    time_train_s: float
    time_shapley_s: float
    time_eval_s: float
    val_dice: float
    history: list[dict[str, Any]]
    finished: bool = True


def epoch_generators(seed: int, epoch: int) -> tuple[torch.Generator, np.random.Generator]:
    """The torch (batches) and NumPy (policy) generators of one epoch, derived from (seed, epoch)."""
    torch_gen = torch.Generator()
    torch_gen.manual_seed(seed * 100_003 + epoch)
    return torch_gen, np.random.default_rng([seed, epoch])


def build_optimizers(model: torch.nn.Module,
                     cfg: SearchConfig) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer, Any]:
    """Weight optimiser (Adam, or PC-DARTS's SGD) with its cosine schedule, and Adam on α, β (PC-DARTS).

    Returns:
        (weight optimiser, architecture optimiser, per-epoch cosine schedule of the weight learning rate).
    """
    weights = list(model.weight_parameters())
    if cfg.weight_optimizer == "adam":
        weight_opt = torch.optim.Adam(weights, lr=cfg.weight_lr, weight_decay=cfg.weight_decay)
    else:
        weight_opt = torch.optim.SGD(weights, lr=cfg.weight_lr, momentum=cfg.weight_momentum,
                                     weight_decay=cfg.weight_decay)
    arch_opt = torch.optim.Adam(list(model.arch_parameters()), lr=cfg.arch_lr,
                                betas=(cfg.arch_beta1, cfg.arch_beta2), weight_decay=cfg.arch_weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(weight_opt, T_max=cfg.search_epochs, eta_min=1e-3 * cfg.weight_lr)
    return weight_opt, arch_opt, schedule




def _cycle(images: torch.Tensor, labels: torch.Tensor, batch_size: int, generator: torch.Generator):
    """Batches of a split without end, reshuffled at every pass (order drawn from ``generator``)."""
    while True:
        yield from iterate_batches(images, labels, batch_size, generator, shuffle=True)


@contextmanager
def _without_grad(params: list[torch.nn.Parameter]) -> Iterator[None]:
    """``requires_grad`` off for the block (restored afterwards, also on error)."""
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def train_search_epoch(model, data: SearchData, cfg: SearchConfig, weight_opt, arch_opt, arch_steps: bool,
                       generator: torch.Generator, device: torch.device, progress: bool,
                       scalers: tuple[torch.amp.GradScaler, torch.amp.GradScaler] | None = None
                       ) -> tuple[float, float | None]:
    """One epoch of alternating steps: ``cfg.search_epoch_steps`` weight steps (0: one pass over W), each
    preceded by an architecture step on an A batch when ``arch_steps``.

    The architecture step computes the gradients of α, β only: the cell weights do not require grad
    during it (their gradients from that step were never used, the weight step starts from zero), which
    spares the weight-gradient kernels. The W batches (not the A ones) are augmented on the device as
    ``cfg.augmentation`` says, with draws from ``generator``. Steps follow
    :func:`shapnas.runtime.device_policy` (autocast and loss scaling on CUDA); the losses stay on the device and
    are read once, at the end of the epoch.

    Args:
        model: the supernet (backbone frozen).
        data: W, A (and V) slices.
        cfg: the search config (batch size, steps per epoch, gradient clipping, augmentation and dataset).
        weight_opt: optimiser of the cell weights. arch_opt: optimiser of α, β.
        arch_steps: take architecture steps (after the warm-up).
        generator: CPU generator of the batch order (and of the W batches' augmentation).
        device: where the model lives.
        progress: show a progress bar.
        scalers: (weight, architecture) gradient scalers kept across epochs; None makes them for this epoch.

    Returns:
        Mean weight loss and mean architecture loss (or None).
    """
    loss_fn = dice_ce_loss()
    model.train()
    policy = device_policy(device)
    weight_scaler, arch_scaler = scalers if scalers is not None else (grad_scaler(policy), grad_scaler(policy))
    weights = list(model.weight_parameters())
    augmenter = build_augmenter(cfg.augmentation, cfg.dataset)  # weight steps only; None for "none"
    steps = _epoch_steps(cfg, data)
    weight_batches = _cycle(*data.train_w, cfg.batch_size, generator)
    arch_batches = _cycle(*data.train_a, cfg.batch_size, generator) if arch_steps else None
    weight_losses, arch_losses = [], []  # 0-dim tensors on the device
    for _ in tqdm(range(steps), desc="search steps", leave=False, disable=not progress):
        images, labels = next(weight_batches)
        if arch_batches is not None:
            arch_images, arch_labels = next(arch_batches)
            with _without_grad(weights):
                arch_losses.append(training_step(model, arch_opt, loss_fn, [], arch_images, arch_labels, device, None,
                                                 policy, arch_scaler))
        arch_opt.zero_grad(set_to_none=True)
        if augmenter is not None:  # a W batch on the device: (B, C, H, W), (B, 1, H, W)
            images, labels = augmenter(images.to(device, non_blocking=True), labels.to(device, non_blocking=True),
                                       generator)
        weight_losses.append(training_step(model, weight_opt, loss_fn, weights, images, labels, device, cfg.grad_clip,
                                           policy, weight_scaler))
    return _mean(weight_losses), (_mean(arch_losses) if arch_losses else None)


def _mean(losses: list[torch.Tensor]) -> float:
    """NumPy's mean of the losses as float64 (one device read for the whole list)."""
    return float(np.mean(torch.stack(losses).double().cpu().numpy()))


def flat_weights(model) -> torch.Tensor:
    """All cell weights (and gates) as one detached CPU vector."""
    return torch.cat([p.detach().flatten().cpu() for p in model.weight_parameters()])


def alpha_signal(op_probs: np.ndarray, active: np.ndarray, genotype: Any) -> dict[str, float]:
    """How far α moved from uniform (a search whose α stays uniform has learned nothing): ``alpha_spread``, the mean over edges of the largest minus the
    smallest active-op probability; ``alpha_max_prob``, the mean over the genotype's edges of its chosen op's
    probability; ``alpha_uniform`` = 1 / number of ops (the value of both at initialisation, up to 1e-3).

    Args:
        op_probs: (E, P) level-mean op probabilities. active: (E, P) bool. genotype: the derived genotype.
    """
    masked_max = np.where(active, op_probs, -np.inf).max(1)
    masked_min = np.where(active, op_probs, np.inf).min(1)
    chosen = [op_probs[edge_index(node, src), PRIMITIVES.index(op)] for node, src, op in genotype.edges]
    return {"alpha_spread": float(np.mean(masked_max - masked_min)), "alpha_max_prob": float(np.mean(chosen)),
            "alpha_uniform": 1.0 / len(PRIMITIVES)}


def search_signal(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The signal figures of a finished search for its ``metrics.json``: the last epoch's α figures and
    cell-weight change, and the search training loss of the first and last epoch."""
    last = history[-1]
    keys = ("alpha_spread", "alpha_max_prob", "alpha_uniform", "cell_weight_change", "weight_steps", "arch_steps")
    return {**{k: last.get(k) for k in keys}, "loss_first": history[0]["train_loss"], "loss_last": last["train_loss"]}


def _ops_per_edge(model) -> list[int]:
    active = model.arch[0].active  # (E, P)
    return active[:, 1:].sum(1).tolist()  # non-'none' ops per edge


def _all_edges_single(model) -> bool:
    return all(n <= 1 for n in _ops_per_edge(model))


def _save_state(path: Path, model, weight_opt, arch_opt, schedule, policy, epoch: int, times: dict[str, float],
                settle_left: int | None, config: dict[str, Any], initial: torch.Tensor) -> None:
    save_checkpoint(path, {
        "initial_weights": initial,
        "epoch": epoch,
        "model": model.state_dict(),
        "weight_opt": weight_opt.state_dict(),
        "arch_opt": arch_opt.state_dict(),
        "schedule": schedule.state_dict(),
        "policy": policy.state_dict(),
        "times": dict(times),
        "settle_left": -1 if settle_left is None else settle_left,
        "config": config,
        "primitives": list(PRIMITIVES),
    })


def _restore(stage: Path, model, weight_opt, arch_opt, schedule, policy
             ) -> tuple[int, dict[str, float], int | None, torch.Tensor]:
    """Load the last epoch checkpoint (if any); returns (next epoch, cumulative times, settle epochs left,
    the cell weights at implant time)."""
    path = stage / STATE_FILE
    if not path.exists():
        (stage / HISTORY_FILE).unlink(missing_ok=True)
        return 0, {"train": 0.0, "shapley": 0.0, "eval": 0.0}, None, flat_weights(model)
    state = load_checkpoint(path)
    model.load_state_dict(state["model"])
    weight_opt.load_state_dict(state["weight_opt"])
    arch_opt.load_state_dict(state["arch_opt"])
    schedule.load_state_dict(state["schedule"])
    policy.load_state_dict(state["policy"])
    epoch = int(state["epoch"])
    kept = [r for r in read_jsonl(stage / HISTORY_FILE) if r["epoch"] <= epoch]
    (stage / HISTORY_FILE).write_text("".join(json.dumps(r) + "\n" for r in kept))
    settle = int(state["settle_left"])
    return (epoch + 1, {k: float(v) for k, v in state["times"].items()}, (None if settle < 0 else settle),
            state["initial_weights"])


def run_search_loop(model: torch.nn.Module, data: SearchData, cfg: SearchConfig, stage: Path, device: torch.device,
                    *, progress: bool = True, stop_after: int | None = None,
                    on_epoch: Callable[[dict[str, Any]], None] | None = None) -> SearchResult:
    """Run (or resume) the search in ``stage`` and return its result.

    Args:
        model: the retrofitted supernet on ``device`` (backbone frozen).
        data: W, A, V slices.
        cfg: the search config (policy, schedule, optimisers, Shapley settings).
        stage: the stage directory (history, checkpoint).
        device: where the model lives.
        progress: show progress bars.
        stop_after: stop (as if killed) after this many epochs of this call; for resume tests.
        on_epoch: called with each epoch's history record.

    Returns:
        The :class:`SearchResult`.
    """
    stage.mkdir(parents=True, exist_ok=True)
    device_rules = device_policy(device)  # CUDA: mixed precision, channels-last, resident slices; CPU: all off
    configure_backends(device_rules)
    channels_last_convs(model, device_rules)
    data = SearchData(*(tuple(keep_on_device(split, device, device_rules)) for split in (data.train_w, data.train_a,
                                                                                       data.val)), data.num_classes)
    scalers = (grad_scaler(device_rules), grad_scaler(device_rules))
    policy = build_policy(cfg.policy, momentum=cfg.shapley_momentum, js_window=cfg.js_window, js_threshold=cfg.js_threshold)
    weight_opt, arch_opt, schedule = build_optimizers(model, cfg)
    start_epoch, times, settle_left, initial = _restore(stage, model, weight_opt, arch_opt, schedule, policy)
    steps = _step_counts(read_jsonl(stage / HISTORY_FILE))
    value_images, value_labels = foreground_rich_batch(*data.val, cfg.shapley_slices)
    value_images, value_labels = value_images.to(device), value_labels.to(device)
    epochs_run = 0
    interrupted = False
    bar = tqdm(range(start_epoch, cfg.search_epochs), desc=f"search ({cfg.policy})", disable=not progress,
               initial=start_epoch, total=cfg.search_epochs)
    epoch = start_epoch - 1
    cpu: dict[str, float] = {}  # process CPU seconds of this epoch's parts (train, eval, shapley)
    for epoch in bar:
        if settle_left is not None and settle_left <= 0:
            break
        torch_gen, np_gen = epoch_generators(cfg.seed, epoch)
        phase = "warmup" if epoch < cfg.warmup_epochs else ("settle" if settle_left is not None else "search")
        tick = _clock()
        train_loss, arch_loss = train_search_epoch(model, data, cfg, weight_opt, arch_opt, phase != "warmup",
                                                   torch_gen, device, progress, scalers)
        schedule.step()
        t_train, cpu["train"] = _since(tick)
        times["train"] += t_train
        steps["weight_steps"] += _epoch_steps(cfg, data)
        steps["arch_steps"] += _epoch_steps(cfg, data) if phase != "warmup" else 0

        tick = _clock()
        val_dice = validation_dice(model, *data.val, num_classes=data.num_classes, device=device,
                                   batch_size=cfg.batch_size)
        t_eval, cpu["eval"] = _since(tick)
        times["eval"] += t_eval

        op_probs = mean_op_probs([arch.op_probs() for arch in model.arch])
        players = model.arch[0].players()
        context = PolicyContext(
            epoch=epoch, op_probs=op_probs, players=players, generator=np_gen,
            estimate_shapley=lambda ps, round_index=0: estimate_supernet_shapley(
                model, value_images, value_labels, ps, generator=np_gen, **round_options(cfg, round_index)),
        )
        policy.observe(context)
        tick = _clock()
        pruned: list[tuple[int, int]] = []
        policy.info = None
        if settle_left is None and players and is_pruning_epoch(epoch, cfg.prune_start, cfg.prune_interval):
            edge_scores = policy.scores(context)
            if edge_scores:
                pruned = select_ops_to_prune(edge_scores, cfg.prune_per_round)
                for edge, op in pruned:
                    model.prune(edge, op)
        t_policy, cpu["shapley"] = _since(tick)
        times["shapley"] += t_policy
        if settle_left is None and cfg.policy != "none" and _all_edges_single(model):
            settle_left = cfg.settle_epochs
        elif settle_left is not None and phase == "settle":
            settle_left -= 1

        record = _history_record(model, epoch, phase, train_loss, arch_loss, val_dice, t_train, t_policy, t_eval,
                                 times, pruned, policy.info)
        change = float((flat_weights(model) - initial).norm() / initial.norm().clamp_min(1e-12))
        record.update(cell_weight_change=change, **steps, **{f"cpu_{part}_s": value for part, value in cpu.items()})
        append_jsonl(stage / HISTORY_FILE, record)
        _save_state(stage / STATE_FILE, model, weight_opt, arch_opt, schedule, policy, epoch, times, settle_left,
                    cfg.to_dict(), initial)
        bar.set_postfix(loss=f"{train_loss:.3f}", val_dice=f"{val_dice:.3f}", ops=record["num_active_ops"])
        if on_epoch is not None:
            on_epoch(record)
        epochs_run += 1
        if stop_after is not None and epochs_run >= stop_after:
            interrupted = not (settle_left is not None and settle_left <= 0) and epoch + 1 < cfg.search_epochs
            break
    history = read_jsonl(stage / HISTORY_FILE)
    last = history[-1] if history else {"val_dice": math.nan}
    return SearchResult(
        genotype=model.genotype(), epochs=len(history), wall_s=sum(times.values()), time_train_s=times["train"],
        time_shapley_s=times["shapley"], time_eval_s=times["eval"], val_dice=float(last["val_dice"]), history=history,
        finished=not interrupted,
    )


def _clock() -> tuple[float, float]:
    """Now, as (wall-clock seconds, this process's CPU seconds over all its threads)."""
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    """(wall, CPU) seconds since ``start`` (a :func:`_clock` reading). CPU time does not grow while other jobs hold
    the cores, so a speed-up read from it survives a busy machine."""
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def _epoch_steps(cfg: SearchConfig, data: SearchData) -> int:
    return cfg.search_epoch_steps or -(-data.train_w[0].shape[0] // cfg.batch_size)


def _step_counts(history: list[dict[str, Any]]) -> dict[str, int]:
    last = history[-1] if history else {}
    return {"weight_steps": int(last.get("weight_steps", 0)), "arch_steps": int(last.get("arch_steps", 0))}


def _history_record(model, epoch, phase, train_loss, arch_loss, val_dice, t_train, t_policy, t_eval, times,
                    pruned, info) -> dict[str, Any]:
    op_probs = mean_op_probs([arch.op_probs() for arch in model.arch])
    edge_probs = torch.stack([arch.edge_probs().detach().cpu() for arch in model.arch]).mean(0)
    shapley = None
    if info and "shapley" in info:
        shapley = dict(info["shapley"])
        shapley["players"] = [[e, PRIMITIVES[o]] for e, o in shapley["players"]]
    genotype = model.genotype()
    return {
        **alpha_signal(op_probs, model.arch[0].active.cpu().numpy(), genotype),
        "epoch": epoch,
        "phase": phase,
        "train_loss": train_loss,
        "arch_loss": arch_loss,
        "val_dice": val_dice,
        "op_probs": op_probs.tolist(),
        "edge_probs": edge_probs.tolist(),
        "active": model.arch[0].active.cpu().tolist(),
        "num_active_ops": int(sum(_ops_per_edge(model))),
        "genotype": [list(t) for t in genotype.edges],
        "time_train_s": t_train,
        "time_shapley_s": t_policy,
        "time_eval_s": t_eval,
        "wall_s": sum(times.values()),
        "pruned": [[e, PRIMITIVES[o]] for e, o in pruned],
        "shapley": shapley,
        "js": (info or {}).get("js"),
    }
