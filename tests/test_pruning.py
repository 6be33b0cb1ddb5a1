"""Pruning schedule and policies (method.md: same schedule for all policies, never the last op)."""

from __future__ import annotations

import numpy as np
import pytest

from shapnas.search.pruning import (
    AlphaPolicy,
    JSPolicy,
    PolicyContext,
    RandomPolicy,
    ShapleyPolicy,
    build_policy,
    is_pruning_epoch,
    js_divergence,
    select_ops_to_prune,
)


def test_schedule_after_warmup_every_interval():
    assert [e for e in range(10) if is_pruning_epoch(e, warmup_epochs=2, interval=1)] == list(range(2, 10))
    assert [e for e in range(10) if is_pruning_epoch(e, warmup_epochs=2, interval=3)] == [4, 7]
    assert [e for e in range(4) if is_pruning_epoch(e, warmup_epochs=0, interval=2)] == [1, 3]


def test_select_removes_lowest_and_never_the_last():
    scores = {0: {1: 0.5, 2: 0.1, 3: 0.9}, 5: {4: 0.3}, 7: {1: 0.2, 6: 0.2}}
    assert select_ops_to_prune(scores, per_round=2) == [(0, 1), (0, 2), (7, 1)]
    assert select_ops_to_prune(scores, per_round=1) == [(0, 2), (7, 1)]  # tie broken by op index


def _context(op_probs, players, seed=0, estimate=None):
    return PolicyContext(epoch=3, op_probs=op_probs, players=players, generator=np.random.default_rng(seed),
                         estimate_shapley=estimate)


def test_alpha_policy_scores_are_op_probs():
    probs = np.array([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.4, 0.1]])
    players = [(0, 1), (0, 2), (0, 3), (1, 1), (1, 3)]
    scores = AlphaPolicy().scores(_context(probs, players))
    assert scores == {0: {1: 0.2, 2: 0.3, 3: 0.4}, 1: {1: 0.25, 3: 0.1}}


def test_random_policy_uses_the_generator():
    players = [(0, 1), (0, 2), (1, 1)]
    a = RandomPolicy().scores(_context(np.zeros((2, 3)), players, seed=1))
    b = RandomPolicy().scores(_context(np.zeros((2, 3)), players, seed=1))
    c = RandomPolicy().scores(_context(np.zeros((2, 3)), players, seed=2))
    assert a == b and a != c


def test_js_policy_waits_for_a_settled_edge():
    policy = JSPolicy(window=1, threshold=0.01)
    players = [(0, 1), (0, 2), (1, 1), (1, 2)]
    first = np.array([[0.0, 0.5, 0.5], [0.0, 0.5, 0.5]])
    second = np.array([[0.0, 0.5, 0.5], [0.0, 0.9, 0.1]])  # edge 0 unchanged (settled), edge 1 moved
    policy.observe(_context(first, players))
    assert policy.scores(_context(first, players)) is None, "no window yet"
    policy.observe(_context(second, players))
    scores = policy.scores(_context(second, players))
    assert list(scores) == [0]
    assert js_divergence([0.5, 0.5], [0.5, 0.5]) == pytest.approx(0.0, abs=1e-9)
    assert js_divergence([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0, abs=1e-6)


def test_shapley_policy_momentum_and_state():
    players = [(0, 1), (0, 2), (0, 3)]
    rounds = iter([{"mean": [1.0, 2.0, 3.0], "stderr": [0, 0, 0]}, {"mean": [3.0, 2.0, 1.0], "stderr": [0, 0, 0]}])
    policy = ShapleyPolicy(momentum=0.8)
    first = policy.scores(_context(np.zeros((1, 4)), players, estimate=lambda ps, round_index=0: next(rounds)))
    assert first[0][1] < first[0][2] < first[0][3]
    second = policy.scores(_context(np.zeros((1, 4)), players, estimate=lambda ps, round_index=0: next(rounds)))
    assert second[0][1] < second[0][3], "momentum 0.8 keeps the earlier ranking after one reversed round"
    clone = build_policy("shapley", momentum=0.8)
    clone.load_state_dict(policy.state_dict())
    assert clone.smoothed == policy.smoothed and clone.rounds == 2


def test_every_registered_policy_builds_and_nothing_else():
    from shapnas.config.names import POLICY_NAMES
    from shapnas.search.pruning import POLICY_FACTORIES

    assert set(POLICY_FACTORIES) == set(POLICY_NAMES)
    for name in POLICY_NAMES:
        assert build_policy(name).name == name
    with pytest.raises(ValueError, match="expected one of"):
        build_policy("magnitude")
