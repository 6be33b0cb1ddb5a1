"""Pruning policies for the search loop: ``none``, ``shapley``, ``alpha``, ``js``, ``random``.

All policies share one schedule and one code path (method.md, "Pruning policies in one framework"):
after the warm-up, every ``prune_interval`` epochs the search asks the policy for per-op scores on the
edges it wants pruned, and removes the ``prune_per_round`` lowest-scored active ops of each such edge,
never the last. The policies differ only in the scores:

- ``shapley``: Shapley values of (edge, op) players on held-out validation slices (Benedykciuk et al.,
  Sci. Rep. 2026; estimator of Shapley-NAS, Xiao et al. CVPR 2022), momentum-smoothed across rounds;
- ``alpha``: the softmax of α (the DARTS magnitude heuristic);
- ``js``: IAC-LTH's rule: an edge is pruned (by α) once the Jensen–Shannon divergence of its op
  distribution over a window of epochs falls below a threshold;
- ``random``: uniform scores from the run's generator (control);
- ``none``: never prunes (the full PC-DARTS search, the IAC baseline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from scipy.special import rel_entr

from shapnas.config.names import check_policy

if TYPE_CHECKING:
    import torch

__all__ = [
    "PolicyContext",
    "PruningPolicy",
    "NoPruning",
    "AlphaPolicy",
    "RandomPolicy",
    "JSPolicy",
    "ShapleyPolicy",
    "PolicyFactory",
    "POLICY_FACTORIES",
    "build_policy",
    "select_ops_to_prune",
    "js_divergence",
    "mean_op_probs",
    "is_pruning_epoch",
]

EdgeScores = dict[int, dict[int, float]]  # edge -> {op index: score}; higher means keep


@dataclass
class PolicyContext:
    """What a policy may look at after an epoch.

    Args:
        epoch: the epoch that just ended (0-based).
        op_probs: softmax of α over active ops, (E, P), mean over levels.
        players: active non-``none`` (edge, op) pairs in a fixed order.
        generator: NumPy generator of this epoch (random policy, Monte-Carlo Shapley).
        estimate_shapley: callable ``(players, round_index=0)`` running one Shapley round on V; returns a
            dict with ``mean``, ``stderr`` (lists aligned with ``players``) and the round's cost record
            (``estimator``, ``completeness_gap``, ``passes``, ``num_evals``, ``ms``; see
            :func:`shapnas.shapley.supernet_game.estimate_supernet_shapley`).
    """

    epoch: int
    op_probs: np.ndarray
    players: list[tuple[int, int]]
    generator: np.random.Generator
    estimate_shapley: Callable[..., dict[str, Any]] | None = None


@dataclass
class PruningPolicy:
    """Base policy: ``scores`` returns the edges to prune this round with per-op scores (or None)."""

    name: str = "none"
    info: dict[str, Any] | None = field(default=None, init=False)  # extra record of the last round

    def observe(self, ctx: PolicyContext) -> None:
        """Called after every epoch (JS keeps its window here)."""

    def scores(self, ctx: PolicyContext) -> EdgeScores | None:
        """Per-edge op scores for the edges to prune now, or None for no pruning."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """Plain-type state for resumable checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""


class NoPruning(PruningPolicy):
    """The full PC-DARTS search: never prunes."""

    def __init__(self) -> None:
        super().__init__(name="none")


def _group_by_edge(players: list[tuple[int, int]], values: np.ndarray) -> EdgeScores:
    grouped: EdgeScores = {}
    for (edge, op), value in zip(players, values):
        grouped.setdefault(edge, {})[op] = float(value)
    return grouped


class AlphaPolicy(PruningPolicy):
    """Prune the ops with the lowest softmax α on every edge."""

    def __init__(self) -> None:
        super().__init__(name="alpha")

    def scores(self, ctx: PolicyContext) -> EdgeScores:
        values = np.array([ctx.op_probs[e, o] for e, o in ctx.players])
        return _group_by_edge(ctx.players, values)


class RandomPolicy(PruningPolicy):
    """Prune random ops (a control): scores drawn from the epoch's generator."""

    def __init__(self) -> None:
        super().__init__(name="random")

    def scores(self, ctx: PolicyContext) -> EdgeScores:
        return _group_by_edge(ctx.players, ctx.generator.random(len(ctx.players)))


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen–Shannon divergence, base 2 (in [0, 1]), between matching rows of two distributions.

    Rows are normalised to sum to 1 first (``0 log 0 = 0``). The JS policy (IAC-LTH) and the stability
    measures (:mod:`shapnas.experiments.stability.report`) both use this one definition.

    Args:
        p: (E, P) non-negative, each row with a positive sum (or (P,) for one distribution).
        q: same shape as ``p``.

    Returns:
        (E,) divergences (a 0-d array for 1-D inputs).

    Raises:
        ValueError: on a shape mismatch, negative entries or a zero row.
    """
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.shape != q.shape:
        raise ValueError(f"distributions of shapes {p.shape} and {q.shape}; expected equal shapes")
    if (p < 0).any() or (q < 0).any():
        raise ValueError("distributions have negative entries; expected probabilities")
    p_sum, q_sum = p.sum(-1, keepdims=True), q.sum(-1, keepdims=True)
    if (p_sum <= 0).any() or (q_sum <= 0).any():
        raise ValueError("a distribution row sums to 0; expected a positive sum")
    p, q = p / p_sum, q / q_sum
    m = 0.5 * (p + q)
    divergence = 0.5 * (rel_entr(p, m).sum(-1) + rel_entr(q, m).sum(-1)) / math.log(2)
    return np.clip(divergence, 0.0, 1.0)


class JSPolicy(PruningPolicy):
    """IAC-LTH: prune an edge (lowest α first) once its op distribution has settled.

    An edge is settled when the JS divergence between its active-op distribution now and ``window``
    epochs ago is below ``threshold`` (IAC-LTH, arXiv 2604.14849; the exact window is our choice).

    Args:
        window: epochs between the compared distributions.
        threshold: JS divergence (base 2) under which the edge counts as settled.
    """

    def __init__(self, window: int, threshold: float) -> None:
        super().__init__(name="js")
        self.window = window
        self.threshold = threshold
        self.past: list[list[list[float]]] = []  # op_probs per observed epoch

    def observe(self, ctx: PolicyContext) -> None:
        self.past.append(ctx.op_probs.tolist())
        self.past = self.past[-(self.window + 1) :]

    def scores(self, ctx: PolicyContext) -> EdgeScores | None:
        if len(self.past) <= self.window:
            return None
        before, now = np.array(self.past[0]), ctx.op_probs
        by_edge = _group_by_edge(ctx.players, np.array([now[e, o] for e, o in ctx.players]))
        settled = {}
        divergences = {}
        for edge, ops in by_edge.items():
            idx = sorted(ops)
            divergences[edge] = float(js_divergence(before[edge, idx], now[edge, idx]))
            if divergences[edge] < self.threshold:
                settled[edge] = ops
        self.info = {"js": {str(e): d for e, d in divergences.items()}}
        return settled or None

    def state_dict(self) -> dict[str, Any]:
        return {"past": self.past}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.past = [list(map(list, p)) for p in state.get("past", [])]


class ShapleyPolicy(PruningPolicy):
    """The paper's policy: prune the ops of lowest (momentum-smoothed) Shapley value.

    Each round estimates Shapley values of the active (edge, op) players on held-out validation
    slices; a player's round score is its lower confidence bound ``mean − stderr`` standardised over
    the players (Shapley-NAS's ``mean − std``, standardised), and the score used for pruning is an
    exponential moving average across rounds with ``momentum`` (Shapley-NAS: 0.8).

    Args:
        momentum: weight of the previous score in the moving average.
    """

    def __init__(self, momentum: float) -> None:
        super().__init__(name="shapley")
        self.momentum = momentum
        self.smoothed: dict[str, float] = {}  # "edge,op" -> score
        self.rounds = 0

    def scores(self, ctx: PolicyContext) -> EdgeScores:
        if ctx.estimate_shapley is None:
            raise ValueError("the shapley policy needs an estimate_shapley callable in the context")
        result = ctx.estimate_shapley(ctx.players, round_index=self.rounds)
        mean = np.asarray(result["mean"], dtype=float)
        stderr = np.nan_to_num(np.asarray(result["stderr"], dtype=float), nan=0.0)  # NaN when M < 2
        lower = mean - stderr
        z = (lower - lower.mean()) / (lower.std() + 1e-12)
        scores = []
        for (edge, op), value in zip(ctx.players, z):
            key = f"{edge},{op}"
            previous = self.smoothed.get(key)
            smoothed = value if previous is None else self.momentum * previous + (1 - self.momentum) * value
            self.smoothed[key] = float(smoothed)
            scores.append(smoothed)
        self.rounds += 1
        self.info = {"shapley": {**result, "round": self.rounds, "score": [float(s) for s in scores]}}
        return _group_by_edge(ctx.players, np.array(scores))

    def state_dict(self) -> dict[str, Any]:
        return {"smoothed": dict(self.smoothed), "rounds": self.rounds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.smoothed = {str(k): float(v) for k, v in state.get("smoothed", {}).items()}
        self.rounds = int(state.get("rounds", 0))


PolicyFactory = Callable[[float, int, float], PruningPolicy]
"""``(momentum, js_window, js_threshold) -> policy``: each factory takes the settings it needs."""

POLICY_FACTORIES: dict[str, PolicyFactory] = {
    "none": lambda momentum, js_window, js_threshold: NoPruning(),
    "shapley": lambda momentum, js_window, js_threshold: ShapleyPolicy(momentum),
    "alpha": lambda momentum, js_window, js_threshold: AlphaPolicy(),
    "js": lambda momentum, js_window, js_threshold: JSPolicy(js_window, js_threshold),
    "random": lambda momentum, js_window, js_threshold: RandomPolicy(),
}
"""The class of each policy of :data:`shapnas.config.names.POLICIES`, keyed by the same names."""


def build_policy(name: str, *, momentum: float = 0.8, js_window: int = 2, js_threshold: float = 0.01) -> PruningPolicy:
    """The policy called ``name`` (a name of :data:`shapnas.config.names.POLICY_NAMES`).

    Args:
        name: the policy's config value.
        momentum: Shapley score momentum (Shapley-NAS: 0.8). Defaults to 0.8.
        js_window: epochs between the distributions the JS policy compares. Defaults to 2.
        js_threshold: JS divergence under which an edge counts as settled. Defaults to 0.01.

    Returns:
        A fresh policy.

    Raises:
        ValueError: for a name that is not a registered policy, listing the valid ones.
    """
    return POLICY_FACTORIES[check_policy(name)](momentum, js_window, js_threshold)


def is_pruning_epoch(epoch: int, warmup_epochs: int, interval: int) -> bool:
    """True after epoch ``epoch`` (0-based) ends on the pruning schedule: the warm-up done, then every
    ``interval`` epochs (the first round right after the first post-warm-up epoch)."""
    done = epoch + 1 - warmup_epochs
    return done >= 1 and done % interval == 0


def select_ops_to_prune(edge_scores: EdgeScores, per_round: int) -> list[tuple[int, int]]:
    """The ``per_round`` lowest-scored ops of each scored edge, keeping at least one op per edge.

    Ties are broken by op index (lower first), so the choice is deterministic.

    Args:
        edge_scores: edge -> {op index: score} over that edge's active non-``none`` ops.
        per_round: r, ops to remove per edge.

    Returns:
        (edge, op) pairs to remove, sorted.
    """
    removed = []
    for edge in sorted(edge_scores):
        ops = edge_scores[edge]
        budget = min(per_round, len(ops) - 1)
        ranked = sorted(ops, key=lambda op: (ops[op], op))
        removed.extend((edge, op) for op in ranked[:budget])
    return sorted(removed)


def mean_op_probs(op_probs_per_level: list[torch.Tensor]) -> np.ndarray:
    """Mean over skip levels of the (E, P) op distributions, as NumPy."""
    import torch  # here, so that the policies and js_divergence load without PyTorch

    return torch.stack([p.detach().float().cpu() for p in op_probs_per_level]).mean(0).numpy()
