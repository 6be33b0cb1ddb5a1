"""The supernet game's estimators: float keep-masks, mask-only gradients, exact sub-games, round records."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from shapnas.config.stage_configs import SearchConfig
from shapnas.networks.backbones import adapt, build_backbone
from shapnas.networks.retrofit import build_supernet
from shapnas.shapley.aumann import aumann_shapley, owen_gradients
from shapnas.shapley.monte_carlo import exact_shapley
from shapnas.shapley.supernet_game import (
    SupernetGame,
    coalition_mask,
    disjoint_value_batches,
    estimate_supernet_shapley,
    float_coalition,
    foreground_rich_batch,
    ops_contribution,
    round_options,
)

# players of a small sub-game: three ops on an edge into the first node and on an edge into the last node
SUB_GAME = [(0, 1), (0, 4), (0, 6), (13, 3), (13, 5), (13, 7)]


@pytest.fixture(scope="module")
def supernet():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_backbone("basic_unet", 1, 3, "tiny")[0].eval()
    model = build_supernet(adapt(net), generator=torch.Generator().manual_seed(0),
                           residual="gate").freeze_backbone().eval()  # a scalar gate to open the cells
    model = model.double()  # float64: finite differences of values that move by ~1e-5
    with torch.no_grad():
        model.gates.fill_(2.0)  # open the cells so that the players matter
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(4, 1, 32, 32, generator=gen, dtype=torch.float64)
    labels = (torch.rand(4, 1, 32, 32, generator=gen) * 3).long()
    return model, images, labels


def test_float_coalition_equals_bool_coalition_at_vertices():
    active = torch.ones(14, 8, dtype=torch.bool)
    active[2, 3] = False
    players = [(0, 1), (0, 2), (5, 7), (13, 4)]
    present = np.array([True, False, False, True])
    expected = coalition_mask(active, players, present).float()
    got = float_coalition(active, players, torch.tensor(present, dtype=torch.float32))
    assert torch.equal(got, expected)
    masks = torch.tensor([0.25, 0.5, 0.75, 1.0], requires_grad=True)
    (grad,) = torch.autograd.grad(float_coalition(active, players, masks)[0, 1], masks)
    assert grad.tolist() == [1.0, 0.0, 0.0, 0.0]


def test_value_and_grad_matches_the_set_game_and_finite_differences(supernet):
    model, images, labels = supernet
    game = SupernetGame(model, images, labels, SUB_GAME, value="dicece")  # float64 end to end (soft Dice casts)
    vertices = np.array([[1, 0, 1, 0, 1, 1], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=bool)
    values, _ = game.value_and_grad(vertices.astype(float))
    assert np.allclose(values, game(vertices), rtol=0, atol=1e-12)
    point = np.full((1, 6), 0.5)
    _, grads = game.value_and_grad(point)
    eps = 0.05
    for i in (0, 4):
        step = np.zeros((1, 6))
        step[0, i] = eps
        numeric = (game.value_and_grad(point + step)[0] - game.value_and_grad(point - step)[0]) / (2 * eps)
        assert grads[0, i] == pytest.approx(float(numeric[0]), rel=0.02)
    assert np.abs(grads).max() > 0


def test_mask_gradients_leave_parameters_untouched(supernet):
    model, images, labels = supernet
    flags = [p.requires_grad for p in model.parameters()]
    game = SupernetGame(model, images, labels, SUB_GAME)
    game.value_and_grad(np.full((2, 6), 0.5))
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert game.num_passes == 2 and game.num_evals == 0


def test_ig_agrees_with_exact_shapley_on_a_supernet_sub_game(supernet):
    """Stated error: on this 6-player sub-game (two edges, three ops each; soft Dice) one or two midpoints are
    within 6 % of the exact values' range (measured 3.9 % and 3.1 %), rank them alike (Spearman ≥ 0.9), and
    miss completeness by under 10 % (measured 2.4 % and 6.7 %). The value is not multilinear in the masks,
    so the Aumann–Shapley value itself differs from the Shapley value here (K = 4: 1.9 %, K = 8: 2.2 %)."""
    model, images, labels = supernet
    game = SupernetGame(model, images, labels, SUB_GAME)
    exact = exact_shapley(game, len(SUB_GAME))
    value_range = exact.mean.max() - exact.mean.min()
    assert value_range > 0
    for points in (1, 2):
        ig = aumann_shapley(game.value_and_grad, len(SUB_GAME), points, value_fn=game)
        assert np.abs(ig.mean - exact.mean).max() <= 0.06 * value_range, (points, ig.mean, exact.mean)
        assert spearmanr(ig.mean, exact.mean).statistic >= 0.9
        assert ig.completeness_gap < 0.10
    # control: the bound is not trivially met; a shuffled answer fails it
    shuffled = exact.mean[np.random.default_rng(0).permutation(6)]
    assert np.abs(shuffled - exact.mean).max() > 0.06 * value_range


def test_owen_agrees_with_exact_shapley_on_a_supernet_sub_game(supernet):
    """Stated error: on the same 6-player sub-game Owen sampling with gradients (K = 4 points, R = 4 coalitions
    each, three generator seeds) is within 3 % of the exact values' range (measured 0.5 %, 0.9 %, 0.9 %; the
    Aumann–Shapley diagonal 1.9 % with K = 4) and ranks them alike (Spearman ≥ 0.9; measured 1.0, 0.94, 1.0);
    its error is sampling noise plus the linearisation of each player's own mask."""
    model, images, labels = supernet
    game = SupernetGame(model, images, labels, SUB_GAME)
    exact = exact_shapley(game, len(SUB_GAME))
    value_range = exact.mean.max() - exact.mean.min()
    for seed in range(3):
        owen = owen_gradients(game.value_and_grad, len(SUB_GAME), 4, 4, generator=np.random.default_rng(seed),
                              value_fn=game)
        assert np.abs(owen.mean - exact.mean).max() <= 0.03 * value_range, (seed, owen.mean, exact.mean)
        assert spearmanr(owen.mean, exact.mean).statistic >= 0.9
        assert owen.passes == 16


@pytest.mark.parametrize("estimator", ["ig", "owen", "mc"])
def test_round_record(supernet, estimator):
    model, images, labels = supernet
    model.train()
    record = estimate_supernet_shapley(model, images, labels, SUB_GAME, num_permutations=2, truncation=0.0,
                                       generator=np.random.default_rng(0), estimator=estimator, points=2)
    assert model.training, "the previous mode is restored"
    model.eval()
    assert record["estimator"] == estimator and len(record["mean"]) == len(SUB_GAME)
    assert {"completeness_gap", "passes", "num_evals", "ms", "value_full", "value_empty"} <= set(record)
    if estimator == "ig":
        assert record["passes"] == 2 and record["num_evals"] == 2 and record["stderr"] == [0.0] * 6
    elif estimator == "owen":
        assert record["passes"] == 2 * 4 and record["num_evals"] == 2, "K = 2 points, R = 4 coalitions each"
    else:
        assert record["passes"] == 0 and record["num_evals"] > 2
        assert record["completeness_gap"] < 1e-6, "untruncated walks sum to v(N) − v(∅)"
    with pytest.raises(ValueError, match="estimator='exact'"):
        estimate_supernet_shapley(model, images, labels, SUB_GAME, num_permutations=1, truncation=0.0,
                                  generator=np.random.default_rng(0), estimator="exact")


def test_ops_contribution_is_what_a_round_sums_to(supernet):
    model, images, labels = supernet
    model.train()
    players = model.arch[0].players()
    contribution = ops_contribution(model, images, labels)
    assert model.training, "the previous mode is restored"
    record = estimate_supernet_shapley(model, images, labels, players, num_permutations=1, truncation=0.0,
                                       generator=np.random.default_rng(0), estimator="mc")
    model.eval()
    assert contribution == pytest.approx(record["value_full"] - record["value_empty"], abs=1e-12)
    assert sum(record["mean"]) == pytest.approx(contribution, abs=1e-9)
    assert abs(contribution) > 1e-6, "the open gate makes the ops matter"
    closed = build_supernet(adapt(build_backbone("basic_unet", 1, 3, "tiny")[0]),
                            generator=torch.Generator().manual_seed(0)).double()
    assert ops_contribution(closed, images, labels) == 0.0, "a zero projection at implant: the ops add nothing"


def test_disjoint_value_batches_are_the_richest_slices_then_the_next():
    labels = torch.zeros(6, 1, 4, 4, dtype=torch.long)
    for i, pixels in enumerate([3, 9, 1, 7, 5, 0]):  # foreground pixels per slice
        labels[i].view(-1)[:pixels] = 1
    images = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 1, 4, 4)
    (first, _), (second, _) = disjoint_value_batches(images, labels, 2)
    assert first[:, 0, 0, 0].tolist() == [1.0, 3.0]  # 9 and 7 pixels, in V's order
    assert second[:, 0, 0, 0].tolist() == [0.0, 4.0]  # 3 and 5 pixels
    assert torch.equal(first, foreground_rich_batch(images, labels, 2)[0]), "the first is the search's value batch"
    with pytest.raises(ValueError, match="V has 6 slices; two disjoint value batches need 8"):
        disjoint_value_batches(images, labels, 4)


def test_round_options_and_config_validation():
    cfg = SearchConfig()
    assert cfg.shapley_estimator == "ig"
    assert round_options(cfg, 0)["points"] == cfg.shapley_points_first
    assert round_options(cfg, 3)["points"] == cfg.shapley_points
    assert round_options(cfg.replace(shapley_estimator="mc"), 1)["estimator"] == "mc"
    assert round_options(cfg.replace(shapley_estimator="owen", shapley_samples=2), 0)["samples"] == 2
    assert cfg.prune_start == cfg.warmup_epochs and cfg.replace(prune_warmup_epochs=1).prune_start == 1
    with pytest.raises(ValueError, match="shapley_estimator='tmc'"):
        SearchConfig(shapley_estimator="tmc")
    with pytest.raises(ValueError, match="shapley_points=0"):
        SearchConfig(shapley_points=0)
    with pytest.raises(ValueError, match="shapley_samples=0"):
        SearchConfig(shapley_samples=0)
    with pytest.raises(ValueError, match="prune_warmup_epochs=12"):
        SearchConfig(prune_warmup_epochs=12)
