"""Shapley values of a cooperative game: exact enumeration and truncated Monte-Carlo permutation sampling.

Generic (no U-Net inside): a game is ``value_fn(masks (K, n) bool) -> values (K,)``. The estimator follows
Shapley-NAS (Xiao et al., CVPR 2022) with antithetic walks (shap's permutation explainer) and truncation
relative to the empty coalition (TMC-Shapley, Ghorbani & Zou, ICML 2019), as method.md chooses.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ValueFn",
    "ShapleyEstimate",
    "mask_from_players",
    "players_from_mask",
    "exact_shapley",
    "permutation_shapley",
]

ValueFn = Callable[[np.ndarray], np.ndarray]  # masks (K, n) bool -> values (K,) float

MAX_EXACT_PLAYERS = 20
WARN_EXACT_PLAYERS = 12


@dataclass(frozen=True)
class ShapleyEstimate:
    """Shapley values of ``n`` players and what they cost.

    Attributes:
        mean: (n,) estimated Shapley values.
        stderr: (n,) standard errors of ``mean`` (zeros for the exact estimator; NaN with fewer than 2
            independent sampling units).
        num_evals: coalitions evaluated through ``value_fn`` (each distinct coalition once, ∅ and N included).
        num_samples: (n,) marginal contributions averaged into each player's mean.
        evals_saved_by_truncation: evaluations an untruncated run over the same permutations would have
            added.
        value_full: v(N).
        value_empty: v(∅).
    """

    mean: np.ndarray
    stderr: np.ndarray
    num_evals: int
    num_samples: np.ndarray
    evals_saved_by_truncation: int
    value_full: float
    value_empty: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (lists, ints, floats)."""
        return {
            "mean": [float(x) for x in self.mean],
            "stderr": [float(x) for x in self.stderr],
            "num_evals": int(self.num_evals),
            "num_samples": [int(x) for x in self.num_samples],
            "evals_saved_by_truncation": int(self.evals_saved_by_truncation),
            "value_full": float(self.value_full),
            "value_empty": float(self.value_empty),
        }


def mask_from_players(players: Iterable[int], num_players: int) -> np.ndarray:
    """The (n,) bool coalition mask holding ``players``.

    Raises:
        ValueError: if a player index is outside ``[0, num_players)``.
    """
    mask = np.zeros(num_players, dtype=bool)
    for player in players:
        if not 0 <= player < num_players:
            raise ValueError(f"player={player}; expected an index in [0, {num_players})")
        mask[player] = True
    return mask


def players_from_mask(mask: np.ndarray) -> tuple[int, ...]:
    """The sorted player indices present in a (n,) bool coalition mask."""
    return tuple(int(i) for i in np.flatnonzero(np.asarray(mask, dtype=bool)))


def _check_players(num_players: int) -> None:
    if num_players < 1:
        raise ValueError(f"num_players={num_players}; expected at least 1")


def _call(value_fn: ValueFn, masks: np.ndarray) -> np.ndarray:
    """Evaluate a (K, n) batch of coalitions and check the (K,) answer."""
    values = np.asarray(value_fn(masks), dtype=float).reshape(-1)
    if values.shape != (len(masks),):
        raise ValueError(f"value_fn returned {values.size} values for {len(masks)} coalitions; expected one each")
    return values


def exact_shapley(value_fn: ValueFn, num_players: int, batch_size: int = 64) -> ShapleyEstimate:
    """Exact Shapley values by enumerating all 2^n coalitions.

    ``phi_i = sum_{S not containing i} |S|! (n - |S| - 1)! / n! * (v(S + i) - v(S))`` (Shapley, 1953). Player
    ``i`` is bit ``i`` of the coalition index. Used to test :func:`permutation_shapley`.

    Args:
        value_fn: the game, ``masks (K, n) bool -> values (K,)``.
        num_players: n, at most 20 (a warning above 12).
        batch_size: coalitions per ``value_fn`` call. Defaults to 64.

    Returns:
        The exact values (``stderr`` zeros, ``num_evals`` = 2^n, ``num_samples`` = 2^(n-1) each).

    Raises:
        ValueError: for fewer than 1 or more than 20 players, or ``batch_size`` < 1.
    """
    _check_players(num_players)
    if num_players > MAX_EXACT_PLAYERS:
        raise ValueError(f"num_players={num_players}; exact_shapley enumerates 2^n coalitions, "
                         f"expected at most {MAX_EXACT_PLAYERS} (use permutation_shapley)")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}; expected at least 1")
    if num_players > WARN_EXACT_PLAYERS:
        warnings.warn(f"exact_shapley with {num_players} players evaluates {2 ** num_players} coalitions",
                      stacklevel=2)
    n = num_players
    index = np.arange(2**n, dtype=np.int64)  # coalition index, bit i = player i
    bits = ((index[:, None] >> np.arange(n)) & 1).astype(bool)  # (2^n, n)
    values = np.concatenate([_call(value_fn, bits[i:i + batch_size]) for i in range(0, 2**n, batch_size)])
    sizes = bits.sum(1)  # (2^n,)
    weights = np.array([math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)])
    mean = np.empty(n)
    for i in range(n):
        without = index[~bits[:, i]]  # coalitions not holding i
        mean[i] = np.sum(weights[sizes[without]] * (values[without | (1 << i)] - values[without]))
    return ShapleyEstimate(mean=mean, stderr=np.zeros(n), num_evals=2**n,
                           num_samples=np.full(n, 2 ** (n - 1), dtype=np.int64), evals_saved_by_truncation=0,
                           value_full=float(values[-1]), value_empty=float(values[0]))


class _Walk:
    """One walk along a permutation: adding players from ∅ (``add``) or removing them from N.

    Each step toggles the next player; its marginal is ``v(with it) − v(without it)``. The walk stops early
    (remaining marginals 0) once its value is within ``tol`` of the value at its far end.
    """

    def __init__(self, order: np.ndarray, add: bool, start: np.ndarray, start_value: float) -> None:
        self.order = order
        self.add = add
        self.mask = start.copy()
        self.value = start_value
        self.step = 0
        self.done = False

    def next_mask(self) -> np.ndarray:
        mask = self.mask.copy()
        mask[self.order[self.step]] = self.add
        return mask


def _key(mask: np.ndarray) -> bytes:
    return np.packbits(mask).tobytes()


def _advance(walk: _Walk, cache: dict[bytes, float], marginals: np.ndarray, far_value: float, tol: float,
             truncate: bool) -> bytes | None:
    """Move ``walk`` through cached coalitions; return the key of the first coalition it still needs."""
    while not walk.done:
        if walk.step == len(walk.order) or (truncate and abs(far_value - walk.value) <= tol):
            walk.done = True
            return None
        nxt = walk.next_mask()
        key = _key(nxt)
        if key not in cache:
            return key
        player = walk.order[walk.step]
        marginals[player] = (cache[key] - walk.value) if walk.add else (walk.value - cache[key])
        walk.mask, walk.value, walk.step = nxt, cache[key], walk.step + 1
    return None


def permutation_shapley(value_fn: ValueFn, num_players: int, num_permutations: int,
                        generator: np.random.Generator, *, antithetic: bool = True, truncation: float = 0.0,
                        batch_size: int = 16) -> ShapleyEstimate:
    """Truncated Monte-Carlo permutation Shapley values with antithetic walks.

    For each of ``num_permutations`` permutations π drawn from ``generator``, an *add* walk starts at ∅ and
    adds π0, π1, ...; with ``antithetic`` a *remove* walk also starts at N and removes π0, π1, .... The remove
    walk gives each player its marginal in the reversed permutation (shap's antithetic path), so M permutations
    make 2M walks. A player's estimate is the mean of its marginals over walks; its standard error treats the
    M permutations (each one averaged over its two walks) as the independent units.

    Truncation (TMC-Shapley, Ghorbani & Zou 2019; method.md): with ``tol = truncation·|v(N) − v(∅)|`` an add
    walk stops once ``|v(N) − v(S)| ≤ tol`` and a remove walk once ``|v(S) − v(∅)| ≤ tol``; the remaining
    marginals count as 0. (Shapley-NAS's "value below 0.5·v(N)" never fires in a zero-gated retrofit, where
    v(∅) is the backbone.) Truncation is off when ``tol`` is 0. Per walk the marginals sum to
    ``v(S_last) − v(∅)`` (add) or ``v(N) − v(S_last)`` (remove), i.e. ``v(N) − v(∅)`` when untruncated.

    Coalitions are evaluated lazily: all unfinished walks advance in lock-step, each requesting only the next
    coalition it needs after its truncation check, so the result **and** ``num_evals`` do not depend on
    ``batch_size`` (only the number of ``value_fn`` calls does). Values are cached per call (bitmask keys).

    Args:
        value_fn: the game, ``masks (K, n) bool -> values (K,)``.
        num_players: n.
        num_permutations: M, permutations drawn (antithetic pairs when ``antithetic``).
        generator: the only source of randomness.
        antithetic: also walk each permutation backwards from N. Defaults to True.
        truncation: relative tolerance τ in ``[0, 1)``; 0 disables. Defaults to 0.0.
        batch_size: most coalitions per ``value_fn`` call. Defaults to 16.

    Returns:
        The estimate; ``num_samples`` is the number of walks for every player.

    Raises:
        ValueError: for n < 1, M < 1, ``batch_size`` < 1 or τ outside ``[0, 1)``.
    """
    _check_players(num_players)
    if num_permutations < 1:
        raise ValueError(f"num_permutations={num_permutations}; expected at least 1")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}; expected at least 1")
    if not 0.0 <= truncation < 1.0:
        raise ValueError(f"truncation={truncation}; expected a relative tolerance in [0, 1)")
    n = num_players
    empty, full = np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
    v_empty, v_full = _call(value_fn, np.stack([empty, full]))
    cache = {_key(empty): float(v_empty), _key(full): float(v_full)}
    tol = truncation * abs(v_full - v_empty)
    truncate = tol > 0.0
    orders = [generator.permutation(n) for _ in range(num_permutations)]
    walks = [_Walk(order, True, empty, v_empty) for order in orders]
    if antithetic:
        walks += [_Walk(order, False, full, v_full) for order in orders]
    far = [v_full if walk.add else v_empty for walk in walks]
    marginals = np.zeros((len(walks), n))  # (W, n)
    num_evals = 2
    while True:
        needed: dict[bytes, np.ndarray] = {}
        for w, walk in enumerate(walks):
            key = _advance(walk, cache, marginals[w], far[w], tol, truncate)
            if key is not None:
                needed.setdefault(key, walk.next_mask())
        if not needed:
            break
        keys, masks = list(needed), np.stack(list(needed.values()))  # (K, n)
        for start in range(0, len(keys), batch_size):
            values = _call(value_fn, masks[start:start + batch_size])
            cache.update(zip(keys[start:start + batch_size], values.tolist()))
        num_evals += len(keys)
    untruncated = {_key(empty), _key(full)}
    for walk in walks:
        mask = (empty if walk.add else full).copy()
        for player in walk.order:
            mask[player] = walk.add
            untruncated.add(_key(mask))
    units = marginals.reshape(2, num_permutations, n).mean(0) if antithetic else marginals  # (M, n)
    stderr = (units.std(0, ddof=1) / np.sqrt(len(units))) if len(units) > 1 else np.full(n, np.nan)
    return ShapleyEstimate(mean=marginals.mean(0), stderr=stderr, num_evals=num_evals,
                           num_samples=np.full(n, len(walks), dtype=np.int64),
                           evals_saved_by_truncation=len(untruncated) - num_evals,
                           value_full=float(v_full), value_empty=float(v_empty))
