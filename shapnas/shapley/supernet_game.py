"""Shapley values of (edge, op) players of a retrofitted supernet on held-out validation slices.

Players are the active non-``none`` (edge, op) pairs; removing a player zeroes its mixing weight on
its edge, without re-normalisation (Shapley-NAS, Xiao et al. CVPR 2022). The value of a coalition is the
mean foreground soft Dice (or −DiceCE) of the supernet on a fixed, foreground-rich batch of V slices, in
eval mode without gradients (Benedykciuk et al., Sci. Rep. 2026; method.md). The frozen encoder's features
are computed once per round; each coalition reruns only the cells and the decoder.

The game runs in float32 on every device (no autocast): a Shapley value is a small difference of values, below
the resolution of bf16 logits. Values and mask gradients stay on the device until a call's loop is done.

Three estimators share the game: ``mc`` (truncated Monte-Carlo permutations, :mod:`shapnas.shapley.monte_carlo`), ``ig``
(Aumann–Shapley, :mod:`shapnas.shapley.aumann`): the keep-mask becomes a float in [0, 1] that multiplies each
player's op weight, and the gradient of the value with respect to the masks only (parameters frozen for the
round) is averaged over K points t·1 on the diagonal; and ``owen`` (the same mask gradients, taken at R random
binary coalitions per diagonal point instead of at t·1: Owen sampling with gradients).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch
from monai.losses import DiceCELoss

from shapnas.config.names import SHAPLEY_ESTIMATORS
from shapnas.runtime import eval_mode
from shapnas.shapley.aumann import aumann_shapley, completeness_gap, owen_gradients
from shapnas.shapley.monte_carlo import permutation_shapley
from shapnas.training.metrics import soft_dice

__all__ = ["foreground_rich_batch", "disjoint_value_batches", "coalition_mask", "float_coalition", "frozen_parameters",
           "SupernetGame", "ops_contribution", "estimate_supernet_shapley", "round_options", "ESTIMATORS"]

ESTIMATORS = SHAPLEY_ESTIMATORS  # ig, owen, mc


def foreground_rich_batch(images: torch.Tensor, labels: torch.Tensor, num_slices: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``num_slices`` slices with the most foreground, in their original order.

    Args:
        images: V images (N, C, H, W).
        labels: V labels (N, 1, H, W).
        num_slices: how many to keep.

    Returns:
        (images (n, C, H, W), labels (n, 1, H, W)).
    """
    keep = torch.sort(_by_foreground(labels)[:num_slices]).values
    return images[keep], labels[keep]


def _by_foreground(labels: torch.Tensor) -> torch.Tensor:
    """Slice indices (N,) from the most foreground pixels to the fewest (ties: lower index first)."""
    foreground = (labels > 0).flatten(1).sum(1)  # (N,)
    return torch.argsort(foreground, descending=True, stable=True)


def disjoint_value_batches(images: torch.Tensor, labels: torch.Tensor, size: int
                           ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The search's value batch (the ``size`` most foreground-rich V slices) and the next ``size`` richest.

    Two disjoint batches of one rule, to see whether a round's ranking holds beyond the slices it was taken on.

    Args:
        images: V images (N, C, H, W).
        labels: V labels (N, 1, H, W).
        size: slices per batch.

    Returns:
        ((images, labels) of the first batch, (images, labels) of the second), each (size, ...).

    Raises:
        ValueError: when V has fewer than ``2·size`` slices.
    """
    if images.shape[0] < 2 * size:
        raise ValueError(f"V has {images.shape[0]} slices; two disjoint value batches need {2 * size}")
    order = _by_foreground(labels)
    first, second = (torch.sort(order[start:start + size]).values for start in (0, size))
    return (images[first], labels[first]), (images[second], labels[second])


def coalition_mask(active: torch.Tensor, players: list[tuple[int, int]], present: np.ndarray) -> torch.Tensor:
    """The (E, P) keep-mask of a coalition: every entry kept except the absent players.

    Args:
        active: (E, P) bool mask of active ops.
        players: (edge, op) pairs, aligned with ``present``.
        present: (n,) bool, which players are in the coalition.

    Returns:
        (E, P) bool tensor.
    """
    mask = active.clone()
    absent = [players[i] for i in np.flatnonzero(~present)]
    if absent:
        edges, ops = zip(*absent)
        mask[list(edges), list(ops)] = False
    return mask


def float_coalition(active: torch.Tensor, players: list[tuple[int, int]], masks: torch.Tensor) -> torch.Tensor:
    """The (E, P) float keep-mask of a continuous coalition: active ops 1, each player its mask value.

    Args:
        active: (E, P) bool mask of active ops.
        players: (edge, op) pairs, aligned with ``masks``.
        masks: (n,) float keep-masks in [0, 1] (may require grad; the result is differentiable in it).

    Returns:
        (E, P) float tensor.
    """
    base = active.to(masks.dtype).clone()
    edges = torch.tensor([e for e, _ in players], dtype=torch.long, device=base.device)
    ops = torch.tensor([o for _, o in players], dtype=torch.long, device=base.device)
    base[edges, ops] = 0.0
    return base.index_put((edges, ops), masks.to(base.device), accumulate=True)


@contextmanager
def frozen_parameters(model: torch.nn.Module) -> Iterator[None]:
    """Turn off ``requires_grad`` of every parameter for the block (restored afterwards)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class SupernetGame:
    """The coalition game of one Shapley round: ``value_fn(masks (K, n)) -> values (K,)``.

    Args:
        model: the retrofitted supernet (``encode``, ``decode_from``, ``arch``).
        images: value batch (B, C, H, W), on the model's device.
        labels: value batch labels (B, 1, H, W).
        players: the (edge, op) players.
        value: ``dice`` (soft foreground Dice) or ``dicece`` (−DiceCE).
    """

    def __init__(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 players: list[tuple[int, int]], value: str = "dice") -> None:
        self.model = model
        self.labels = labels
        self.players = players
        self.value = value
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True)
        self.active = model.arch[0].active.detach().clone()  # (E, P)
        self.dtype = next(model.arch[0].parameters()).dtype
        self.num_evals = 0
        self.eval_seconds = 0.0
        self.num_passes = 0
        self.pass_seconds = 0.0
        with torch.no_grad():
            self.features = model.encode(images)  # computed once per round

    def _value(self, logits: torch.Tensor) -> torch.Tensor:
        if self.value == "dice":
            return soft_dice(logits, self.labels)
        return -self.loss(logits, self.labels)

    def value_and_grad(self, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values and mask gradients of continuous coalitions (one forward+backward pass each).

        Args:
            masks: (K, n) float keep-masks in [0, 1].

        Returns:
            (values (K,), grads (K, n)).
        """
        points = np.asarray(masks, dtype=float)
        if not len(points):
            return np.empty(0), np.empty((0, len(self.players)))
        start = time.perf_counter()
        values, grads = [], []  # 0-dim and (n,) tensors on the device, read once after the loop
        with frozen_parameters(self.model), torch.enable_grad():
            for point in points:
                mask = torch.tensor(point, dtype=self.dtype, device=self.active.device, requires_grad=True)  # (n,)
                coalition = float_coalition(self.active, self.players, mask)  # (E, P)
                value = self._value(self.model.decode_from(self.features, coalition=coalition))
                (grad,) = torch.autograd.grad(value, mask)
                values.append(value.detach())
                grads.append(grad.detach())
        out = torch.stack(values).double().cpu().numpy(), torch.stack(grads).double().cpu().numpy()
        self.pass_seconds += time.perf_counter() - start
        self.num_passes += len(points)
        return out

    def endpoints(self) -> tuple[float, float]:
        """(v(N), v(∅)): the value with every player and with none (the bypass and the backbone remain).

        Their difference is what the players' Shapley values sum to (efficiency), the signal of a round.
        """
        n = len(self.players)
        full, empty = self(np.stack([np.ones(n, bool), np.zeros(n, bool)]))
        return float(full), float(empty)

    @torch.no_grad()
    def __call__(self, masks: np.ndarray) -> np.ndarray:
        """Values (K,) of coalitions ``masks`` (K, n) bool; the values are read from the device once per call."""
        if not len(masks):
            return np.empty(0)
        start = time.perf_counter()
        values = []  # 0-dim tensors on the device
        for present in masks:
            coalition = coalition_mask(self.active, self.players, present)
            logits = self.model.decode_from(self.features, coalition=coalition)  # (B, K, H, W)
            values.append(self._value(logits))
        out = torch.stack(values).double().cpu().numpy()
        self.eval_seconds += time.perf_counter() - start
        self.num_evals += len(masks)
        return out


def ops_contribution(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                     value: str = "dice") -> float:
    """v(N) − v(∅) of the supernet's active ops on one value batch (eval mode; the previous mode restored).

    Args:
        model: retrofitted supernet.
        images, labels: value batch (B, C, H, W), (B, 1, H, W) on the model's device.
        value: ``dice`` or ``dicece``.

    Returns:
        The contribution of all players together (what a round's Shapley values sum to).
    """
    with eval_mode(model):
        full, empty = SupernetGame(model, images, labels, model.arch[0].players(), value=value).endpoints()
    return full - empty


def estimate_supernet_shapley(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                              players: list[tuple[int, int]], *, num_permutations: int, truncation: float,
                              generator: np.random.Generator, value: str = "dice", estimator: str = "mc",
                              points: int = 1, samples: int = 4) -> dict[str, Any]:
    """One Shapley round on the supernet (eval mode; the previous mode restored afterwards).

    Args:
        model: retrofitted supernet.
        images, labels: the fixed V value batch on the model's device.
        players: active non-``none`` (edge, op) pairs.
        num_permutations: M antithetic permutation pairs (``mc``).
        truncation: relative truncation tolerance τ, 0 disables (``mc``).
        generator: NumPy generator of this round (``mc``, ``owen``).
        value: ``dice`` or ``dicece``.
        estimator: ``mc`` (Monte-Carlo permutations), ``ig`` (Aumann–Shapley) or ``owen`` (Owen sampling with
            mask gradients). Defaults to ``mc``.
        points: K, midpoint-rule points on the diagonal (``ig``, ``owen``). Defaults to 1.
        samples: R, random coalitions per point (``owen``). Defaults to 4.

    Returns:
        dict with ``estimator``, ``players`` ([[edge, op]]), ``mean``, ``stderr`` (zeros for ``ig`` and ``owen``),
        ``num_evals`` (value-only evaluations), ``passes`` (forward+backward passes),
        ``evals_saved_by_truncation`` (the field names of :class:`~shapnas.shapley.monte_carlo.ShapleyEstimate` and
        :class:`~shapnas.shapley.aumann.DiagonalEstimate`), ``eval_ms`` (mean time of one evaluation),
        ``value_full``, ``value_empty``, ``completeness_gap`` (``|Σφ − (v(N) − v(∅))| / |v(N) − v(∅)|``),
        ``ms`` and ``wall_s`` (the whole round).

    Raises:
        ValueError: for an unknown estimator.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator={estimator!r}; expected one of {', '.join(ESTIMATORS)}")
    start = time.perf_counter()
    with eval_mode(model):
        game = SupernetGame(model, images, labels, players, value=value)
        if estimator == "mc":
            mc = permutation_shapley(game, len(players), num_permutations, generator, truncation=truncation)
            mean, stderr, saved = mc.mean, mc.stderr, mc.evals_saved_by_truncation
            v_full, v_empty = mc.value_full, mc.value_empty
        else:
            if estimator == "ig":
                diagonal = aumann_shapley(game.value_and_grad, len(players), points, value_fn=game)
            else:
                diagonal = owen_gradients(game.value_and_grad, len(players), points, samples, generator=generator,
                                          value_fn=game)
            mean, stderr, saved = diagonal.mean, np.zeros(len(players)), 0
            v_full, v_empty = diagonal.value_full, diagonal.value_empty
    wall = time.perf_counter() - start
    gap = completeness_gap(float(np.sum(mean)), float(v_full), float(v_empty))
    return {
        "estimator": estimator,
        "players": [list(p) for p in players],
        "mean": [float(x) for x in mean],
        "stderr": [float(x) for x in stderr],
        "num_evals": int(game.num_evals),
        "passes": int(game.num_passes),
        "evals_saved_by_truncation": int(saved),
        "eval_ms": 1000.0 * game.eval_seconds / max(game.num_evals, 1),
        "pass_ms": 1000.0 * game.pass_seconds / max(game.num_passes, 1),
        "value_full": float(v_full),
        "value_empty": float(v_empty),
        "completeness_gap": gap if np.isfinite(gap) else None,  # None: v(N) = v(∅) but Σφ ≠ 0
        "ms": 1000.0 * wall,
        "wall_s": wall,
    }


def round_options(cfg: Any, round_index: int) -> dict[str, Any]:
    """Keyword arguments of :func:`estimate_supernet_shapley` for round ``round_index`` (0-based) of a search.

    Args:
        cfg: a :class:`shapnas.config.stage_configs.SearchConfig` (``shapley_*`` fields).
        round_index: rounds already run (the first ``ig`` or ``owen`` round uses ``shapley_points_first`` points).

    Returns:
        ``num_permutations``, ``truncation``, ``value``, ``estimator``, ``points``, ``samples``.
    """
    return {
        "num_permutations": cfg.shapley_permutations,
        "truncation": cfg.shapley_truncation,
        "value": cfg.shapley_value,
        "estimator": cfg.shapley_estimator,
        "points": cfg.shapley_points_first if round_index == 0 else cfg.shapley_points,
        "samples": cfg.shapley_samples,
    }
