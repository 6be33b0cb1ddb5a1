"""Aumann–Shapley values: integrated gradients of a game's continuous extension along the diagonal.

Generic (no U-Net inside). A game with ``n`` players is given through a differentiable extension to
continuous keep-masks, ``value_and_grad(masks (K, n) float in [0, 1]) -> (values (K,), grads (K, n))``. The
Aumann–Shapley value of player i is ``phi_i = ∫_0^1 ∂_i f(t·1) dt``, the integrated gradient from the empty
coalition (all masks 0) to the full one (all 1) (Aumann & Shapley, *Values of Non-Atomic Games*, 1974;
Sundararajan et al., ICML 2017). By Owen's theorem (Owen, *Multilinear extensions of games*, Management
Science 1972), when ``f`` is the multilinear extension of a set game this integral **is** the game's
Shapley value. ``∂_i f(t·1)`` is then a polynomial of degree n − 1 in t, so

- for an additive game it is constant: any quadrature is exact;
- for a game with only pairwise interactions it is linear in t: one midpoint (t = ½) is exact;
- in general Gauss–Legendre with ⌈n/2⌉ points is exact (degree 2K − 1 ≥ n − 1).

A supernet's value is not multilinear in its keep-masks (masks of consecutive edges multiply, and the
value is a non-linear function of the cell outputs), so there the estimate departs from the Shapley value
through interactions of unequal degree; the completeness gap ``|Σφ − (f(1) − f(0))| / |f(1) − f(0)|``
measures how far the quadrature misses the path integral (method.md, issue 10).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from shapnas.shapley import ValueFn

__all__ = [
    "GradFn",
    "DiagonalEstimate",
    "quadrature",
    "aumann_shapley",
    "multilinear_extension",
    "completeness_gap",
]

GradFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # masks (K, n) float -> (values (K,), grads (K, n))

RULES = ("midpoint", "gauss")


@dataclass(frozen=True)
class DiagonalEstimate:
    """Aumann–Shapley values of ``n`` players and what they cost.

    Attributes:
        mean: (n,) estimated values.
        points: (K,) diagonal points t used.
        weights: (K,) quadrature weights (sum 1).
        value_full: f(1), the full coalition.
        value_empty: f(0), the empty coalition.
        completeness_gap: ``|Σ mean − (f(1) − f(0))| / |f(1) − f(0)|`` (see :func:`completeness_gap`).
        passes: forward+backward passes (one per point).
        num_evals: value-only evaluations (f(1) and f(0)).
        ms: wall-clock milliseconds of the whole estimate.
    """

    mean: np.ndarray
    points: np.ndarray
    weights: np.ndarray
    value_full: float
    value_empty: float
    completeness_gap: float
    passes: int
    num_evals: int
    ms: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (lists, ints, floats)."""
        return {
            "mean": [float(x) for x in self.mean],
            "points": [float(x) for x in self.points],
            "weights": [float(x) for x in self.weights],
            "value_full": float(self.value_full),
            "value_empty": float(self.value_empty),
            "completeness_gap": float(self.completeness_gap),
            "passes": int(self.passes),
            "num_evals": int(self.num_evals),
            "ms": float(self.ms),
        }


def quadrature(num_points: int, rule: str = "midpoint") -> tuple[np.ndarray, np.ndarray]:
    """Points and weights of a K-point rule on [0, 1].

    Args:
        num_points: K ≥ 1.
        rule: ``midpoint`` (t_k = (k + ½)/K, weights 1/K) or ``gauss`` (Gauss–Legendre, exact for
            polynomials of degree ≤ 2K − 1).

    Returns:
        (points (K,), weights (K,)); the weights sum to 1.

    Raises:
        ValueError: for K < 1 or an unknown rule.
    """
    if num_points < 1:
        raise ValueError(f"num_points={num_points}; expected at least 1")
    if rule == "midpoint":
        return (np.arange(num_points) + 0.5) / num_points, np.full(num_points, 1.0 / num_points)
    if rule == "gauss":
        nodes, weights = np.polynomial.legendre.leggauss(num_points)  # on [-1, 1]
        return 0.5 * (nodes + 1.0), 0.5 * weights
    raise ValueError(f"rule={rule!r}; expected one of {', '.join(RULES)}")


def completeness_gap(total: float, value_full: float, value_empty: float) -> float:
    """``|total − (v(N) − v(∅))| / |v(N) − v(∅)|``; 0 if both vanish, ``inf`` if only the span does."""
    span = value_full - value_empty
    miss = abs(total - span)
    if span == 0.0:
        return 0.0 if miss == 0.0 else math.inf
    return miss / abs(span)


def aumann_shapley(value_and_grad: GradFn, num_players: int, num_points: int = 1, rule: str = "midpoint",
                   value_fn: ValueFn | None = None) -> DiagonalEstimate:
    """Aumann–Shapley values by a K-point quadrature of the gradient along the diagonal.

    ``phi ≈ Σ_k w_k ∇f(t_k·1)`` (Aumann & Shapley 1974; Owen 1972: the Shapley value when ``f`` is the
    multilinear extension of the game).

    Args:
        value_and_grad: the extension, ``masks (K, n) float -> (values (K,), grads (K, n))``.
        num_players: n.
        num_points: K, quadrature points (one forward+backward pass each). Defaults to 1 (t = ½).
        rule: ``midpoint`` or ``gauss`` (see :func:`quadrature`). Defaults to ``midpoint``.
        value_fn: the set game ``masks (K, n) bool -> values (K,)`` for f(1), f(0) (completeness); defaults
            to ``value_and_grad``'s values at 1 and 0, which costs two more passes.

    Returns:
        The estimate with its completeness gap and cost.

    Raises:
        ValueError: for n < 1, K < 1, an unknown rule, or answers of the wrong shape.
    """
    if num_players < 1:
        raise ValueError(f"num_players={num_players}; expected at least 1")
    start = time.perf_counter()
    points, weights = quadrature(num_points, rule)
    masks = points[:, None] * np.ones((1, num_players))  # (K, n)
    values, grads = value_and_grad(masks)
    grads = np.asarray(grads, dtype=float)
    if grads.shape != masks.shape or np.asarray(values).reshape(-1).shape != (len(masks),):
        raise ValueError(f"value_and_grad returned values {np.shape(values)} and grads {grads.shape} for "
                         f"masks {masks.shape}; expected ({len(masks)},) and {masks.shape}")
    mean = weights @ grads  # (n,)
    ends = np.stack([np.ones(num_players), np.zeros(num_players)])  # (2, n): N, ∅
    passes = num_points
    if value_fn is None:
        end_values = np.asarray(value_and_grad(ends)[0], dtype=float).reshape(-1)
        passes += 2
    else:
        end_values = np.asarray(value_fn(ends.astype(bool)), dtype=float).reshape(-1)
    if end_values.shape != (2,):
        raise ValueError(f"the game returned {end_values.size} values for 2 coalitions; expected 2")
    v_full, v_empty = float(end_values[0]), float(end_values[1])
    return DiagonalEstimate(mean=mean, points=points, weights=weights, value_full=v_full, value_empty=v_empty,
                            completeness_gap=completeness_gap(float(mean.sum()), v_full, v_empty),
                            passes=passes, num_evals=0 if value_fn is None else 2,
                            ms=1000.0 * (time.perf_counter() - start))


def multilinear_extension(value_fn: ValueFn, num_players: int) -> GradFn:
    """The multilinear extension of a small set game with its exact gradient (Owen 1972).

    ``f(x) = Σ_S v(S) Π_{i∈S} x_i Π_{i∉S} (1 − x_i)``; ``∂_i f(x) = Σ_{S∌i} (v(S+i) − v(S)) Π_{j∈S} x_j
    Π_{j∉S, j≠i} (1 − x_j)``. Enumerates all 2^n coalitions once; for tests and small sub-games.

    Args:
        value_fn: the set game, ``masks (K, n) bool -> values (K,)``.
        num_players: n, at most 16.

    Returns:
        ``value_and_grad(masks (K, n) float) -> (values (K,), grads (K, n))``.

    Raises:
        ValueError: for n outside [1, 16].
    """
    if not 1 <= num_players <= 16:
        raise ValueError(f"num_players={num_players}; expected 1..16 (the extension enumerates 2^n coalitions)")
    n = num_players
    index = np.arange(2**n, dtype=np.int64)
    bits = ((index[:, None] >> np.arange(n)) & 1).astype(bool)  # (2^n, n)
    table = np.asarray(value_fn(bits), dtype=float).reshape(-1)  # (2^n,)

    def value_and_grad(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(masks, dtype=float)  # (K, n)
        factors = np.where(bits[None], x[:, None, :], 1.0 - x[:, None, :])  # (K, 2^n, n)
        values = np.prod(factors, axis=2) @ table  # (K,)
        grads = np.empty_like(x)
        for i in range(n):
            others = np.delete(factors, i, axis=2).prod(axis=2)  # (K, 2^n)
            sign = np.where(bits[:, i], 1.0, -1.0)  # ∂/∂x_i of x_i or (1 − x_i)
            grads[:, i] = (others * sign) @ table
        return values, grads

    return value_and_grad
