"""Aumann–Shapley (diagonal integrated gradients) against exact Shapley values: Owen's theorem on known games."""

from __future__ import annotations

import math

import numpy as np
import pytest
from games import additive, pairwise  # tests/games.py

from shapnas.shapley.aumann import (
    aumann_shapley,
    coalition_samples,
    completeness_gap,
    multilinear_extension,
    owen_gradients,
    quadrature,
)
from shapnas.shapley.monte_carlo import exact_shapley


def glove(left, right):
    """Players 0..left-1 hold left gloves, the next ``right`` players right gloves; value = pairs."""
    return lambda masks: np.minimum(masks[:, :left].sum(1), masks[:, left:left + right].sum(1)).astype(float)


def majority(num_players):
    return lambda masks: (masks.sum(1) > num_players / 2).astype(float)


def weighted_voting(weights, quota):
    w = np.asarray(weights, dtype=float)
    return lambda masks: (masks @ w >= quota).astype(float)


W6 = [0.3, -1.2, 2.0, 0.0, 0.7, -0.4]
J6 = np.random.default_rng(3).normal(size=(6, 6))


def _phi(game, n, points, rule="midpoint"):
    return aumann_shapley(multilinear_extension(game, n), n, points, rule, value_fn=game)


def test_quadrature_rules():
    t, w = quadrature(1)
    assert t.tolist() == [0.5] and w.tolist() == [1.0]
    t, w = quadrature(4, "midpoint")
    assert np.allclose(t, [0.125, 0.375, 0.625, 0.875]) and w.sum() == pytest.approx(1.0)
    t, w = quadrature(3, "gauss")
    assert np.all((t > 0) & (t < 1)) and w.sum() == pytest.approx(1.0)
    # Gauss–Legendre with K points integrates t^(2K-1) exactly on [0, 1]; the midpoint rule does not
    assert w @ t**5 == pytest.approx(1 / 6, abs=1e-12)
    tm, wm = quadrature(3, "midpoint")
    assert abs(wm @ tm**5 - 1 / 6) > 1e-3


def test_multilinear_extension_matches_the_game_at_vertices():
    game = pairwise(W6, J6)
    f = multilinear_extension(game, 6)
    vertices = np.random.default_rng(0).random((10, 6)) < 0.5
    values, _ = f(vertices.astype(float))
    assert np.allclose(values, game(vertices))


def test_multilinear_gradient_matches_finite_differences():
    game = glove(2, 3)
    f = multilinear_extension(game, 5)
    x = np.random.default_rng(1).random((3, 5))
    _, grads = f(x)
    eps = 1e-6
    for i in range(5):
        step = np.zeros(5)
        step[i] = eps
        numeric = (f(x + step)[0] - f(x - step)[0]) / (2 * eps)
        assert np.allclose(grads[:, i], numeric, atol=1e-6)


@pytest.mark.parametrize("game", [additive(W6, constant=0.3), pairwise(W6, J6)], ids=["additive", "pairwise"])
def test_one_midpoint_is_exact_on_additive_and_pairwise_games(game):
    exact = exact_shapley(game, 6).mean
    estimate = _phi(game, 6, 1)
    assert np.allclose(estimate.mean, exact, atol=1e-12)
    assert estimate.completeness_gap < 1e-12
    assert estimate.passes == 1 and estimate.num_evals == 2


@pytest.mark.parametrize("name,game,n", [("glove", glove(2, 3), 5), ("majority", majority(5), 5),
                                         ("voting", weighted_voting([4, 2, 1, 1, 1, 1, 3], 7), 7)])
def test_gauss_legendre_with_half_n_points_is_exact_on_general_games(name, game, n):
    exact = exact_shapley(game, n).mean
    k = math.ceil(n / 2)
    assert np.allclose(_phi(game, n, k, "gauss").mean, exact, atol=1e-10)
    # one point fewer is not exact on these games: the test can fail
    assert not np.allclose(_phi(game, n, k - 1, "gauss").mean, exact, atol=1e-6)


@pytest.mark.parametrize("name,game,n", [("glove", glove(2, 3), 5), ("majority", majority(7), 7)])
def test_midpoint_rule_converges_on_general_games(name, game, n):
    exact = exact_shapley(game, n).mean
    errors = [np.abs(_phi(game, n, k).mean - exact).max() for k in (1, 2, 4, 8, 16)]
    assert errors[0] > 1e-3, "one midpoint is not exact beyond pairwise interactions"
    assert all(b < a for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 1e-2 * errors[0]


def test_completeness_holds_for_any_rule_on_the_multilinear_extension():
    # the diagonal integrand of Σφ is d f(t·1)/dt, a polynomial; exact integration gives v(N) − v(∅)
    game = majority(7)
    assert _phi(game, 7, 4, "gauss").completeness_gap < 1e-10
    assert _phi(game, 7, 1).completeness_gap > 1e-3


def test_completeness_gap_definition():
    assert completeness_gap(1.0, 3.0, 1.0) == pytest.approx(0.5)
    assert completeness_gap(0.0, 1.0, 1.0) == 0.0
    assert completeness_gap(0.1, 1.0, 1.0) == math.inf


def test_value_and_grad_path_costs_two_more_passes():
    game = additive(W6)
    estimate = aumann_shapley(multilinear_extension(game, 6), 6, 2)
    assert estimate.passes == 4 and estimate.num_evals == 0
    assert estimate.value_full == pytest.approx(sum(W6)) and estimate.value_empty == pytest.approx(0.0)
    record = estimate.to_dict()
    assert set(record) >= {"mean", "completeness_gap", "passes", "num_evals", "ms"}


def test_input_validation():
    with pytest.raises(ValueError, match="num_points=0"):
        quadrature(0)
    with pytest.raises(ValueError, match="rule='simpson'"):
        quadrature(2, "simpson")
    with pytest.raises(ValueError, match="num_players=0"):
        aumann_shapley(lambda m: (np.zeros(len(m)), m), 0)
    with pytest.raises(ValueError, match="expected"):
        aumann_shapley(lambda m: (np.zeros(len(m)), np.zeros((len(m), 2))), 3)
    with pytest.raises(ValueError, match="num_players=17"):
        multilinear_extension(additive(np.ones(17)), 17)


def _owen(game, n, points, samples, seed=0):
    return owen_gradients(multilinear_extension(game, n), n, points, samples, generator=np.random.default_rng(seed),
                          value_fn=game)


def test_coalition_samples_are_bernoulli_at_each_point_and_antithetic():
    masks, owner = coalition_samples(200, 4, 50, np.random.default_rng(0))
    assert masks.shape == (200, 200) and set(np.unique(masks)) <= {0.0, 1.0}
    assert owner.tolist() == [k for k in range(4) for _ in range(50)]
    points, _ = quadrature(4)
    for k, t in enumerate(points):
        assert masks[owner == k].mean() == pytest.approx(t, abs=0.02)  # 10,000 draws per point
    assert np.array_equal(masks[owner == 0], 1.0 - masks[owner == 3]), "1/8 and 7/8: complements"
    assert np.array_equal(masks[owner == 1], 1.0 - masks[owner == 2])
    middle, _ = coalition_samples(5, 1, 4, np.random.default_rng(0))
    assert np.array_equal(middle[:2], 1.0 - middle[2:]), "K odd: the middle point pairs its own coalitions"
    again, _ = coalition_samples(200, 4, 50, np.random.default_rng(0))
    assert np.array_equal(masks, again), "the generator is the only randomness"


@pytest.mark.parametrize("points,samples", [(1, 2), (2, 1), (4, 3)])
@pytest.mark.parametrize("game", [additive(W6, constant=0.3), pairwise(W6, J6)], ids=["additive", "pairwise"])
def test_owen_gradients_are_exact_on_additive_and_pairwise_games_with_complements(game, points, samples):
    exact = exact_shapley(game, 6).mean
    estimate = _owen(game, 6, points, samples)
    assert np.allclose(estimate.mean, exact, atol=1e-12)
    assert estimate.passes == points * samples and estimate.num_evals == 2


def test_owen_gradients_without_a_complement_are_noisy_on_pairwise_games():
    # one coalition at t = ½ and no complement: the pairwise terms are sampled, not cancelled (the test can fail)
    game = pairwise(W6, J6)
    assert not np.allclose(_owen(game, 6, 1, 1).mean, exact_shapley(game, 6).mean, atol=1e-3)
    assert np.allclose(_owen(additive(W6), 6, 1, 1).mean, W6, atol=1e-12), "additive: exact with one coalition"


@pytest.mark.parametrize("name,game,n", [("glove", glove(2, 3), 5), ("majority", majority(7), 7)])
def test_owen_gradients_converge_on_general_games(name, game, n):
    exact = exact_shapley(game, n).mean

    def error(points, samples):  # mean over three generator seeds of the largest error
        return np.mean([np.abs(_owen(game, n, points, samples, seed).mean - exact).max() for seed in range(3)])

    coarse, fine = error(4, 2), error(16, 512)
    assert coarse > 0.05, "a few coalitions are not exact beyond pairwise interactions"
    assert fine < 0.015 and fine < 0.2 * coarse


def test_owen_gradients_input_validation():
    with pytest.raises(ValueError, match="samples=0"):
        owen_gradients(lambda m: (np.zeros(len(m)), m), 3, 1, 0, generator=np.random.default_rng(0))
    with pytest.raises(ValueError, match="num_players=0"):
        owen_gradients(lambda m: (np.zeros(len(m)), m), 0, generator=np.random.default_rng(0))
    estimate = owen_gradients(multilinear_extension(additive(W6), 6), 6, 2, 2, generator=np.random.default_rng(0))
    assert estimate.passes == 4 + 2, "without value_fn the two endpoints cost two passes"
