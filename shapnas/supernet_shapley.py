"""Shapley values of (edge, op) players of a retrofitted supernet on held-out validation slices.

Players are the active non-``none`` (edge, op) pairs; removing a player zeroes its mixing weight on
its edge, without re-normalisation (Shapley-NAS, Xiao et al. CVPR 2022). The value of a coalition is the
mean foreground soft Dice (or −DiceCE) of the supernet on a fixed, foreground-rich batch of V slices, in
eval mode without gradients (Benedykciuk et al., Sci. Rep. 2026; method.md). The frozen encoder's features
are computed once per round; each coalition reruns only the cells and the decoder.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from monai.losses import DiceCELoss

from shapnas.metrics import soft_dice
from shapnas.shapley import permutation_shapley

__all__ = ["foreground_rich_batch", "coalition_mask", "SupernetGame", "estimate_supernet_shapley"]


def foreground_rich_batch(images: torch.Tensor, labels: torch.Tensor, num_slices: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``num_slices`` slices with the most foreground, in their original order.

    Args:
        images: V images (N, C, H, W).
        labels: V labels (N, 1, H, W).
        num_slices: how many to keep.

    Returns:
        (images (n, C, H, W), labels (n, 1, H, W)).
    """
    foreground = (labels > 0).flatten(1).sum(1)  # (N,)
    order = torch.argsort(foreground, descending=True, stable=True)[:num_slices]
    keep = torch.sort(order).values
    return images[keep], labels[keep]


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
        self.num_evals = 0
        self.eval_seconds = 0.0
        with torch.no_grad():
            self.features = model.encode(images)  # computed once per round

    @torch.no_grad()
    def __call__(self, masks: np.ndarray) -> np.ndarray:
        values = np.empty(len(masks))
        for row, present in enumerate(masks):
            start = time.perf_counter()
            coalition = coalition_mask(self.active, self.players, present)
            logits = self.model.decode_from(self.features, coalition=coalition)  # (B, K, H, W)
            if self.value == "dice":
                values[row] = float(soft_dice(logits, self.labels))
            else:
                values[row] = -float(self.loss(logits, self.labels))
            self.eval_seconds += time.perf_counter() - start
            self.num_evals += 1
        return values


def estimate_supernet_shapley(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                              players: list[tuple[int, int]], *, num_permutations: int, truncation: float,
                              generator: np.random.Generator, value: str = "dice") -> dict[str, Any]:
    """One Shapley round on the supernet (eval mode restored to the previous mode afterwards).

    Args:
        model: retrofitted supernet.
        images, labels: the fixed V value batch on the model's device.
        players: active non-``none`` (edge, op) pairs.
        num_permutations: M antithetic permutation pairs.
        truncation: relative truncation tolerance τ (0 disables).
        generator: NumPy generator of this round.
        value: ``dice`` or ``dicece``.

    Returns:
        dict with ``players`` ([[edge, op]]), ``mean``, ``stderr``, ``num_evals``, ``evals_saved``,
        ``eval_ms`` (mean time of one coalition evaluation), ``value_full``, ``value_empty``, ``wall_s``.
    """
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    game = SupernetGame(model, images, labels, players, value=value)
    estimate = permutation_shapley(game, len(players), num_permutations, generator, truncation=truncation)
    model.train(was_training)
    return {
        "players": [list(p) for p in players],
        "mean": estimate.mean.tolist(),
        "stderr": estimate.stderr.tolist(),
        "num_evals": int(estimate.num_evals),
        "evals_saved": int(estimate.evals_saved_by_truncation),
        "eval_ms": 1000.0 * game.eval_seconds / max(game.num_evals, 1),
        "value_full": float(estimate.value_full),
        "value_empty": float(estimate.value_empty),
        "wall_s": time.perf_counter() - start,
    }
