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
measures how far the quadrature misses the path integral (method.md).

:func:`owen_gradients` samples the same integral through binary coalitions instead of continuous masks.
Owen's theorem written as an expectation, ``phi_i = ∫_0^1 E_{S ~ Bernoulli(t)^n} [∂_i f(S)] dt`` (for the
multilinear extension ``∂_i f(S) = v(S ∪ i) − v(S ∖ i)``, the marginal contribution: Owen sampling,
Okhrati & Lipani, ICPR 2020, estimates it with value differences). Taking the mask gradient at a random
binary coalition keeps every other player fully on or off, as in the coalitions the Shapley value averages
over; only player i's own mask is linearised. On a supernet round with signal this follows the
Monte-Carlo reference where the continuous diagonal does not (book/calibration.md, "a third estimator").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from shapnas.shapley.monte_carlo import ValueFn

__all__ = [
    "GradFn",
    "DiagonalEstimate",
    "quadrature",
    "aumann_shapley",
    "owen_gradients",
    "coalition_samples",
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
    grads = _mask_gradients(value_and_grad, masks)  # (rows, n)
    mean = weights @ grads  # (n,)
    v_full, v_empty, extra = _endpoints(value_and_grad, value_fn, num_players)
    return DiagonalEstimate(mean=mean, points=points, weights=weights, value_full=v_full, value_empty=v_empty,
                            completeness_gap=completeness_gap(float(mean.sum()), v_full, v_empty),
                            passes=num_points + extra, num_evals=0 if value_fn is None else 2,
                            ms=1000.0 * (time.perf_counter() - start))


def coalition_samples(num_players: int, num_points: int, samples: int,
                      generator: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random binary coalitions on the midpoint rule's points, antithetic across the diagonal.

    At each point t_k, ``samples`` coalitions with every player present independently with probability t_k.
    The midpoint rule's points are symmetric (t_{K−1−k} = 1 − t_k), so the coalitions of the upper half are
    the complements of the lower half's (a complement of a Bernoulli(t) coalition is a Bernoulli(1 − t) one);
    at the middle point (K odd) half the coalitions are complements of the other half.

    Args:
        num_players: n.
        num_points: K, midpoint-rule points.
        samples: R ≥ 1 coalitions per point.
        generator: NumPy generator (the only randomness).

    Returns:
        (coalitions (K·R, n) float 0/1, point index of each row (K·R,)).
    """
    points, _ = quadrature(num_points, "midpoint")
    rows: list[np.ndarray | None] = [None] * num_points
    for k in range(num_points // 2):
        drawn = generator.random((samples, num_players)) < points[k]  # (R, n)
        rows[k], rows[num_points - 1 - k] = drawn, ~drawn
    if num_points % 2:
        middle = num_points // 2
        half = generator.random(((samples + 1) // 2, num_players)) < 0.5
        rows[middle] = np.concatenate([half, ~half])[:samples]
    owner = np.repeat(np.arange(num_points), samples)  # (K·R,)
    return np.concatenate(rows).astype(float), owner


def owen_gradients(value_and_grad: GradFn, num_players: int, num_points: int = 1, samples: int = 4, *,
                   generator: np.random.Generator, value_fn: ValueFn | None = None) -> DiagonalEstimate:
    """Shapley values by Owen sampling with mask gradients: ``phi ≈ Σ_k w_k mean_r ∇f(S_kr)``.

    ``S_kr`` are random binary coalitions at the midpoint rule's points t_k (:func:`coalition_samples`, antithetic
    across the diagonal); the gradient at a binary point is each player's marginal contribution there, exactly
    for the multilinear extension (Owen 1972; Okhrati & Lipani, ICPR 2020 sample it with value differences),
    to first order in the player's own mask for a network. Unbiased for the Shapley value up to the quadrature
    error on the multilinear extension; exact for additive games with any K and R, and for games with only
    pairwise interactions when K or R is even (every coalition then has its complement, and the two together
    hold every other player once).

    Args:
        value_and_grad: the extension, ``masks (K, n) float -> (values (K,), grads (K, n))``.
        num_players: n.
        num_points: K, midpoint-rule points. Defaults to 1 (t = ½).
        samples: R, coalitions per point (one forward+backward pass each). Defaults to 4.
        generator: NumPy generator of the coalitions.
        value_fn: the set game for f(1), f(0) (completeness); defaults to ``value_and_grad`` (two more passes).

    Returns:
        The estimate (``points``, ``weights`` of the rule; ``passes`` = K·R, plus 2 without ``value_fn``).

    Raises:
        ValueError: for n < 1, K < 1, R < 1, or answers of the wrong shape.
    """
    if num_players < 1:
        raise ValueError(f"num_players={num_players}; expected at least 1")
    if samples < 1:
        raise ValueError(f"samples={samples}; expected at least 1")
    start = time.perf_counter()
    points, weights = quadrature(num_points, "midpoint")
    masks, owner = coalition_samples(num_players, num_points, samples, generator)  # (K·R, n), (K·R,)
    grads = _mask_gradients(value_and_grad, masks)  # (rows, n)
    per_point = np.stack([grads[owner == k].mean(0) for k in range(num_points)])  # (K, n)
    mean = weights @ per_point  # (n,)
    v_full, v_empty, extra = _endpoints(value_and_grad, value_fn, num_players)
    return DiagonalEstimate(mean=mean, points=points, weights=weights, value_full=v_full, value_empty=v_empty,
                            completeness_gap=completeness_gap(float(mean.sum()), v_full, v_empty),
                            passes=len(masks) + extra, num_evals=0 if value_fn is None else 2,
                            ms=1000.0 * (time.perf_counter() - start))


def _mask_gradients(value_and_grad: GradFn, masks: np.ndarray) -> np.ndarray:
    """The extension's gradients at ``masks`` (rows, n), checked for shape."""
    values, grads = value_and_grad(masks)
    grads = np.asarray(grads, dtype=float)
    if grads.shape != masks.shape or np.asarray(values).reshape(-1).shape != (len(masks),):
        raise ValueError(f"value_and_grad returned values {np.shape(values)} and grads {grads.shape} for "
                         f"masks {masks.shape}; expected ({len(masks)},) and {masks.shape}")
    return grads


def _endpoints(value_and_grad: GradFn, value_fn: ValueFn | None, num_players: int) -> tuple[float, float, int]:
    """(v(N), v(∅), passes spent): from ``value_fn`` when given, else two passes of ``value_and_grad``."""
    ends = np.stack([np.ones(num_players), np.zeros(num_players)])  # (2, n): N, ∅
    if value_fn is None:
        end_values, passes = np.asarray(value_and_grad(ends)[0], dtype=float).reshape(-1), 2
    else:
        end_values, passes = np.asarray(value_fn(ends.astype(bool)), dtype=float).reshape(-1), 0
    if end_values.shape != (2,):
        raise ValueError(f"the game returned {end_values.size} values for 2 coalitions; expected 2")
    return float(end_values[0]), float(end_values[1]), passes


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
