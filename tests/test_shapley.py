"""Shapley estimators on games with known answers, the Shapley axioms, and the estimator's bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
from games import additive, pairwise  # tests/games.py

from shapnas.shapley.monte_carlo import (
    ShapleyEstimate,
    exact_shapley,
    mask_from_players,
    permutation_shapley,
    players_from_mask,
)


class CountingGame:
    """Wraps a game; records every coalition it is asked for and the number of calls."""

    def __init__(self, fn):
        self.fn = fn
        self.calls = 0
        self.seen: list[bytes] = []
        self.batch_sizes: list[int] = []

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        assert masks.dtype == bool and masks.ndim == 2
        self.calls += 1
        self.batch_sizes.append(len(masks))
        self.seen += [m.tobytes() for m in masks]
        return self.fn(masks)


def glove(masks):  # players 0, 1 hold left gloves, player 2 a right glove
    return np.minimum(masks[:, :2].sum(1), masks[:, 2:].sum(1)).astype(float)


def voting(weights, quota):
    w = np.asarray(weights, dtype=float)
    return lambda masks: (masks @ w >= quota).astype(float)


def table_game(num_players, seed):
    """A random game: every coalition gets an independent value."""
    table = np.random.default_rng(seed).normal(size=2**num_players)
    powers = 1 << np.arange(num_players)
    return lambda masks: table[masks.astype(np.int64) @ powers]


def saturating(num_players, rate=1.5):
    return lambda masks: 1.0 - np.exp(-rate * masks.sum(1))


W5 = [0.3, -1.2, 2.0, 0.0, 0.7]
J5 = np.random.default_rng(3).normal(size=(5, 5))
KNOWN = [
    ("additive", additive(W5, constant=4.0), 5, np.array(W5)),
    ("pairwise", pairwise(W5, J5), 5, np.array(W5) + 0.5 * (np.triu(J5, 1) + np.triu(J5, 1).T).sum(1)),
    ("glove", glove, 3, np.array([1 / 6, 1 / 6, 2 / 3])),
    ("voting-51", voting([50, 49, 1], 51), 3, np.array([4 / 6, 1 / 6, 1 / 6])),
    ("voting-5", voting([3, 2, 1, 1], 5), 4, np.array([7 / 12, 3 / 12, 1 / 12, 1 / 12])),  # hand-counted pivots
]


@pytest.mark.parametrize("name,game,n,expected", KNOWN, ids=[k[0] for k in KNOWN])
def test_exact_known_games(name, game, n, expected):
    estimate = exact_shapley(game, n, batch_size=3)
    np.testing.assert_allclose(estimate.mean, expected, atol=1e-12)
    np.testing.assert_array_equal(estimate.stderr, np.zeros(n))
    assert estimate.num_evals == 2**n
    np.testing.assert_array_equal(estimate.num_samples, np.full(n, 2 ** (n - 1)))
    assert estimate.value_full == pytest.approx(game(np.ones((1, n), bool))[0])
    assert estimate.value_empty == pytest.approx(game(np.zeros((1, n), bool))[0])


@pytest.mark.parametrize("name,game,n,expected", KNOWN[:2], ids=["additive", "pairwise"])
def test_permutation_exact_on_additive_and_pairwise_in_expectation(name, game, n, expected):
    # additive: every walk is exact; pairwise (quadratic): an antithetic pair is exact
    estimate = permutation_shapley(game, n, 3, np.random.default_rng(0), antithetic=True)
    np.testing.assert_allclose(estimate.mean, expected, atol=1e-10)


def test_permutation_on_voting_game_converges():
    game = voting([3, 2, 1, 1], 5)
    estimate = permutation_shapley(game, 4, 400, np.random.default_rng(1))
    expected = np.array([7 / 12, 3 / 12, 1 / 12, 1 / 12])
    assert np.all(np.abs(estimate.mean - expected) < 4 * estimate.stderr + 1e-9)
    np.testing.assert_allclose(estimate.mean, expected, atol=0.05)


@pytest.mark.parametrize("game,n", [(table_game(6, 0), 6), (glove, 3), (pairwise(W5, J5), 5)])
def test_efficiency(game, n):
    empty_full = game(np.stack([np.zeros(n, bool), np.ones(n, bool)]))
    total = empty_full[1] - empty_full[0]
    assert exact_shapley(game, n).mean.sum() == pytest.approx(total)
    for seed in range(5):  # one untruncated walk, and one antithetic pair, each sum to v(N) - v(∅)
        single = permutation_shapley(game, n, 1, np.random.default_rng(seed), antithetic=False)
        pair = permutation_shapley(game, n, 1, np.random.default_rng(seed), antithetic=True)
        assert single.mean.sum() == pytest.approx(total)
        assert pair.mean.sum() == pytest.approx(total)


def test_symmetry_and_null_player():
    def game(masks):  # players 0 and 1 symmetric, player 3 null
        return glove(masks[:, :3]) + 0.0 * masks[:, 3]

    exact = exact_shapley(game, 4)
    assert exact.mean[0] == pytest.approx(exact.mean[1])
    assert exact.mean[3] == 0.0
    sampled = permutation_shapley(game, 4, 7, np.random.default_rng(4), truncation=0.1)
    assert sampled.mean[3] == 0.0 and sampled.stderr[3] == 0.0


def test_monte_carlo_error_shrinks_towards_exact():
    errors = {}
    for num_permutations in (2, 20, 200):
        per_seed = []
        for seed in range(4):
            game = table_game(6, seed)
            exact = exact_shapley(game, 6).mean
            sampled = permutation_shapley(game, 6, num_permutations, np.random.default_rng(100 + seed))
            per_seed.append(np.abs(sampled.mean - exact).mean())
        errors[num_permutations] = np.mean(per_seed)
    assert errors[200] < errors[20] < errors[2]
    assert errors[200] < 0.1


def test_stderr_tracks_the_error():
    game = table_game(6, 9)
    exact = exact_shapley(game, 6).mean
    sampled = permutation_shapley(game, 6, 300, np.random.default_rng(5))
    z = (sampled.mean - exact) / sampled.stderr
    assert np.all(sampled.stderr > 0) and np.all(np.abs(z) < 4.5)


def test_antithetic_lowers_variance():
    rng = np.random.default_rng(7)
    w, J = rng.uniform(0.5, 1.5, size=8), 0.05 * rng.normal(size=(8, 8))
    base = pairwise(w, J)

    def game(masks):  # additive plus weak pairwise terms plus a smooth saturation (not quadratic)
        return base(masks) + 2.0 * np.exp(-0.3 * (masks @ w))

    exact = exact_shapley(game, 8).mean

    def mse(antithetic, num_permutations):
        return np.mean([np.mean((permutation_shapley(game, 8, num_permutations, np.random.default_rng(s),
                                                     antithetic=antithetic).mean - exact) ** 2)
                        for s in range(20)])

    # same number of walks (8) each way; measured ratio about 0.2
    assert mse(True, 4) < 0.5 * mse(False, 8)


@pytest.mark.parametrize("truncation", [0.0, 0.2])
def test_batch_size_invariance(truncation):
    results = []
    for batch_size in (1, 7, 64):
        game = CountingGame(table_game(7, 1))
        estimate = permutation_shapley(game, 7, 6, np.random.default_rng(11), truncation=truncation,
                                       batch_size=batch_size)
        assert max(game.batch_sizes[1:]) <= batch_size
        results.append((estimate, game.calls))
    first = results[0][0]
    for estimate, _ in results[1:]:
        np.testing.assert_array_equal(estimate.mean, first.mean)
        np.testing.assert_array_equal(estimate.stderr, first.stderr)
        assert estimate.num_evals == first.num_evals
        assert estimate.evals_saved_by_truncation == first.evals_saved_by_truncation
    assert results[0][1] > results[2][1]  # fewer value_fn calls with bigger batches


def test_same_seed_same_result_different_seed_different():
    game = table_game(6, 2)
    a = permutation_shapley(game, 6, 5, np.random.default_rng(42))
    b = permutation_shapley(game, 6, 5, np.random.default_rng(42))
    c = permutation_shapley(game, 6, 5, np.random.default_rng(43))
    assert a.to_dict() == b.to_dict()
    assert not np.allclose(a.mean, c.mean)


def test_each_coalition_evaluated_once_and_counted():
    game = CountingGame(table_game(5, 3))
    estimate = permutation_shapley(game, 5, 30, np.random.default_rng(0), batch_size=4)
    assert len(game.seen) == len(set(game.seen)) == estimate.num_evals
    assert estimate.num_evals <= 2**5  # the cache caps evaluations at the number of coalitions
    assert estimate.evals_saved_by_truncation == 0
    np.testing.assert_array_equal(estimate.num_samples, np.full(5, 60))


def test_truncation_saves_evaluations_and_stays_close():
    n, truncation = 10, 0.05
    game = saturating(n)
    exact = np.full(n, game(np.ones((1, n), bool))[0] / n)  # symmetric players
    plain = permutation_shapley(game, n, 6, np.random.default_rng(8))
    truncated = permutation_shapley(game, n, 6, np.random.default_rng(8), truncation=truncation)
    assert plain.evals_saved_by_truncation == 0
    assert truncated.evals_saved_by_truncation > 0
    assert truncated.num_evals + truncated.evals_saved_by_truncation == plain.num_evals
    tol = truncation * (truncated.value_full - truncated.value_empty)
    assert abs(truncated.mean.sum() - exact.sum()) <= tol  # every walk ends within tol of v(N)
    # monotone game: a walk's dropped tail marginals are >= 0 and sum to <= tol, so per player
    assert np.abs(truncated.mean - plain.mean).max() <= tol
    assert np.abs(truncated.mean - exact).mean() <= np.abs(plain.mean - exact).mean() + tol


def test_removal_walk_truncates_relative_to_empty():
    # v rises only once the last players join: removal walks get back to v(∅) quickly and stop
    n = 8

    def game(masks):
        return np.exp(3.0 * masks.sum(1)) / np.exp(3.0 * n)

    add_only = permutation_shapley(game, n, 4, np.random.default_rng(0), antithetic=False, truncation=0.05)
    both = permutation_shapley(game, n, 4, np.random.default_rng(0), antithetic=True, truncation=0.05)
    assert add_only.evals_saved_by_truncation == 0
    assert both.evals_saved_by_truncation > 0


def test_to_dict_is_plain_and_round_trips_values():
    estimate = permutation_shapley(glove, 3, 2, np.random.default_rng(0))
    data = estimate.to_dict()
    assert set(data) == {"mean", "stderr", "num_evals", "num_samples", "evals_saved_by_truncation",
                         "value_full", "value_empty"}
    assert isinstance(data["mean"][0], float) and isinstance(data["num_evals"], int)
    np.testing.assert_array_equal(np.array(data["mean"]), estimate.mean)
    assert isinstance(estimate, ShapleyEstimate)


def test_single_sampling_unit_has_nan_stderr():
    estimate = permutation_shapley(glove, 3, 1, np.random.default_rng(0))
    assert np.all(np.isnan(estimate.stderr))


def test_mask_helpers():
    mask = mask_from_players([4, 0, 2], 6)
    np.testing.assert_array_equal(mask, [True, False, True, False, True, False])
    assert players_from_mask(mask) == (0, 2, 4)
    with pytest.raises(ValueError, match="player=6"):
        mask_from_players([6], 6)


def test_input_validation():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="num_players=21"):
        exact_shapley(glove, 21)
    with pytest.raises(ValueError, match="num_permutations=0"):
        permutation_shapley(glove, 3, 0, rng)
    with pytest.raises(ValueError, match="truncation=1.0"):
        permutation_shapley(glove, 3, 2, rng, truncation=1.0)
    with pytest.raises(ValueError, match="batch_size=0"):
        permutation_shapley(glove, 3, 2, rng, batch_size=0)
    with pytest.raises(ValueError, match="value_fn returned"):
        permutation_shapley(lambda masks: np.zeros(1), 3, 2, rng)


def test_exact_warns_for_many_players():
    with pytest.warns(UserWarning, match="13 players"):
        estimate = exact_shapley(additive(np.arange(13)), 13, batch_size=4096)
    np.testing.assert_allclose(estimate.mean, np.arange(13), atol=1e-9)
