"""Cross-seed stability metrics on hand-made genotypes, op distributions and value vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shapnas.experiments.stability.chance import _random_genotype, chance_levels
from shapnas.experiments.stability.metrics import (
    edge_choices,
    genotype_from_triples,
    mean_pairwise_jaccard,
    mean_pairwise_js,
    modal_op_agreement,
    rank_correlation,
    swap_inputs,
)
from shapnas.experiments.stability.report import stability_report
from shapnas.search.pruning import js_divergence

G1 = genotype_from_triples([[2, 0, "sep_conv_3x3"], [2, 1, "skip_connect"], [3, 0, "max_pool_3x3"],
                            [3, 2, "dil_conv_3x3"]])
G2 = genotype_from_triples([[2, 0, "sep_conv_3x3"], [2, 1, "avg_pool_3x3"], [3, 1, "max_pool_3x3"],
                            [3, 2, "dil_conv_3x3"]])
G_DISJOINT = genotype_from_triples([[4, 0, "sep_conv_5x5"], [4, 3, "dil_conv_5x5"]])


def test_genotype_and_choices():
    assert (2, 0, "sep_conv_3x3") in G1 and len(G1) == 4
    assert edge_choices(G1) == {(2, 0): "sep_conv_3x3", (2, 1): "skip_connect", (3, 0): "max_pool_3x3",
                                (3, 2): "dil_conv_3x3"}
    with pytest.raises(ValueError, match="edge \\(2, 0\\)"):
        edge_choices(frozenset({(2, 0, "a"), (2, 0, "b")}))


def test_identical_genotypes():
    assert mean_pairwise_jaccard([G1, G1, G1]) == 1.0
    assert modal_op_agreement([edge_choices(G1)] * 3) == 1.0


def test_disjoint_genotypes():
    assert mean_pairwise_jaccard([G1, G_DISJOINT]) == 0.0
    # every edge is kept by one of two seeds: the modal choice is shared by half of them
    assert modal_op_agreement([edge_choices(G1), edge_choices(G_DISJOINT)]) == 0.5


def test_hand_worked_jaccard_and_agreement():
    # G1 ∩ G2 = 2 triples, G1 ∪ G2 = 6
    assert mean_pairwise_jaccard([G1, G2]) == pytest.approx(2 / 6)
    # pairs (G1,G1)=1, (G1,G2)=1/3, (G1,G2)=1/3
    assert mean_pairwise_jaccard([G1, G1, G2]) == pytest.approx((1 + 2 / 6 + 2 / 6) / 3)
    # seeds G1, G1, G2; edges (2,0) 3/3, (2,1) 2/3, (3,0) 2/3 (G2 lacks it), (3,2) 3/3, (3,1) 2/3 (two lack it)
    choices = [edge_choices(g) for g in (G1, G1, G2)]
    assert modal_op_agreement(choices) == pytest.approx((1 + 2 / 3 + 2 / 3 + 1 + 2 / 3) / 5)
    # arg-max choices over every edge (no missing edges)
    assert modal_op_agreement([{0: "a", 1: "b"}, {0: "a", 1: "c"}, {0: "d", 1: "e"}]) == pytest.approx(
        (2 / 3 + 1 / 3) / 2)


def test_empty_inputs():
    assert math.isnan(mean_pairwise_jaccard([G1]))
    assert mean_pairwise_jaccard([frozenset(), frozenset()]) == 1.0
    assert math.isnan(modal_op_agreement([]))
    assert math.isnan(mean_pairwise_js([np.ones((2, 3))]))


def test_js_divergence_values_symmetry_bounds():
    p = np.array([[1.0, 0.0], [0.5, 0.5], [0.2, 0.8]])
    q = np.array([[0.0, 1.0], [0.5, 0.5], [0.6, 0.4]])
    d = js_divergence(p, q)
    assert d[0] == pytest.approx(1.0)  # disjoint supports: the maximum, 1 bit
    assert d[1] == 0.0
    m = np.array([0.4, 0.6])
    by_hand = 0.5 * sum(a * math.log2(a / b) for a, b in zip(p[2], m)) + 0.5 * sum(
        a * math.log2(a / b) for a, b in zip(q[2], m))
    assert d[2] == pytest.approx(by_hand)
    np.testing.assert_allclose(js_divergence(q, p), d)
    rng = np.random.default_rng(0)
    a, b = rng.dirichlet(np.ones(8), size=14), rng.dirichlet(np.ones(8), size=14)
    values = js_divergence(a, b)
    assert np.all(values >= 0) and np.all(values <= 1)
    np.testing.assert_allclose(js_divergence(a, 3 * a), 0.0, atol=1e-12)  # rows are normalised
    with pytest.raises(ValueError, match="shape"):
        js_divergence(a, b[:3])
    with pytest.raises(ValueError, match="negative"):
        js_divergence(-a, b)


def test_mean_pairwise_js():
    rng = np.random.default_rng(1)
    a = rng.dirichlet(np.ones(8), size=14)  # (E, P)
    assert mean_pairwise_js([a, a, a]) == pytest.approx(0.0, abs=1e-12)
    one_hot_a, one_hot_b = np.eye(4)[[0, 1, 2]], np.eye(4)[[3, 3, 3]]
    assert mean_pairwise_js([one_hot_a, one_hot_b]) == pytest.approx(1.0)
    # pairs: (a,a)=0, (a,b)=1, (a,b)=1
    assert mean_pairwise_js([one_hot_a, one_hot_a, one_hot_b]) == pytest.approx(2 / 3)


def test_rank_correlation():
    x = np.array([0.3, -1.0, 2.0, 0.7, 0.1])
    assert rank_correlation([x, x, 2 * x + 1]) == pytest.approx({"kendall": 1.0, "spearman": 1.0})
    assert rank_correlation([x, -x]) == pytest.approx({"kendall": -1.0, "spearman": -1.0})
    # one swapped pair out of 10: tau = (9 - 1) / 10; rho = 1 - 6 * 2 / (5 * 24)
    y = np.array([1, 2, 3, 4, 5.0])
    z = np.array([1, 2, 3, 5, 4.0])
    assert rank_correlation([y, z]) == pytest.approx({"kendall": 0.8, "spearman": 0.9})
    as_maps = [{"a": 1.0, "b": 2.0, "c": 3.0, "x": 9.0}, {"c": 30.0, "b": 20.0, "a": 10.0}]
    assert rank_correlation(as_maps) == pytest.approx({"kendall": 1.0, "spearman": 1.0})
    assert math.isnan(rank_correlation([x])["kendall"])
    with pytest.raises(ValueError, match="lengths"):
        rank_correlation([x, x[:3]])


def record(dataset, policy, seed, genotype, dice, **extra):
    return {"dataset": dataset, "policy": policy, "seed": seed, "genotype": [list(t) for t in genotype],
            "dice_mean": dice, **extra}


def test_stability_report_groups_and_metrics():
    probs = np.eye(8)[[1, 2, 3]].tolist()  # (E=3, P=8)
    records = [
        record("acdc", "shapley", 1, G1, 0.80, op_probs=probs, shapley_values=[0.1, 0.5, 0.3]),
        record("acdc", "shapley", 0, G1, 0.84, op_probs=probs, shapley_values=[0.2, 0.6, 0.4]),
        record("acdc", "none", 0, G1, 0.70),
        record("acdc", "none", 1, G_DISJOINT, 0.74),
        record("acdc", "none", 2, G2, 0.72),
        record("brats", "none", 0, G2, 0.5),
    ]
    report = stability_report(records)
    assert [(r["dataset"], r["policy"]) for r in report] == [("acdc", "none"), ("acdc", "shapley"),
                                                              ("brats", "none")]
    shap = report[1]
    assert shap["num_seeds"] == 2 and shap["seeds"] == [0, 1] and shap["backbone"] is None
    assert shap["jaccard"] == 1.0 and shap["modal_agreement"] == 1.0 and shap["argmax_agreement"] == 1.0
    assert shap["js"] == pytest.approx(0.0)
    assert shap["kendall"] == pytest.approx(1.0) and shap["spearman"] == pytest.approx(1.0)
    assert shap["dice_mean"] == pytest.approx(0.82)
    assert shap["dice_std"] == pytest.approx(np.std([0.80, 0.84], ddof=1))
    none = report[0]
    assert none["num_seeds"] == 3
    assert none["jaccard"] == pytest.approx((0 + 2 / 6 + 0) / 3)
    assert math.isnan(none["js"]) and math.isnan(none["kendall"]) and math.isnan(none["argmax_agreement"])
    single = report[2]
    assert single["num_seeds"] == 1 and math.isnan(single["jaccard"]) and math.isnan(single["dice_std"])
    assert single["modal_agreement"] == 1.0 and single["dice_mean"] == 0.5


def test_stability_report_backbones_and_validation():
    records = [record("acdc", "none", 0, G1, 0.7, backbone="basic_unet"),
               record("acdc", "none", 0, G2, 0.6, backbone="attention_unet")]
    report = stability_report(records)
    assert [r["backbone"] for r in report] == ["attention_unet", "basic_unet"]
    with pytest.raises(ValueError, match="repeats seeds"):
        stability_report([record("acdc", "none", 0, G1, 0.7), record("acdc", "none", 0, G2, 0.6)])
    with pytest.raises(ValueError, match="genotype"):
        stability_report([{"dataset": "acdc", "policy": "none", "seed": 0}])


CELL = genotype_from_triples([[0, 0, "sep_conv_3x3"], [0, 1, "skip_connect"], [1, 0, "max_pool_3x3"],
                              [1, 2, "dil_conv_3x3"], [2, 1, "avg_pool_3x3"], [2, 3, "sep_conv_5x5"],
                              [3, 0, "dil_conv_5x5"], [3, 4, "sep_conv_3x3"]])
OPS = ["max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
       "dil_conv_5x5"]


def test_input_swapped_cells_count_as_equal_only_when_inputs_are_equivalent():
    twin = swap_inputs(CELL)
    assert twin != CELL and swap_inputs(twin) == CELL
    choices = [edge_choices(CELL), edge_choices(twin), edge_choices(CELL)]
    assert mean_pairwise_jaccard([CELL, twin], equivalent_inputs=True) == 1.0
    assert mean_pairwise_jaccard([CELL, twin]) < 0.5
    assert modal_op_agreement(choices, equivalent_inputs=True) == 1.0
    assert modal_op_agreement(choices) < 1.0


def test_chance_levels_are_the_95th_percentile_of_random_cells():
    chance = chance_levels(CELL, 3, OPS, num_edges_argmax=14, equivalent_inputs=True, seed=0)
    assert 0 < chance["chance_jaccard_p95"] < 0.5
    assert 1 / 3 < chance["chance_modal_agreement_p95"] < 1
    assert 1 / 3 < chance["chance_argmax_agreement_p95"] < 1
    assert chance == chance_levels(CELL, 3, OPS, num_edges_argmax=14, equivalent_inputs=True, seed=0)
    # fresh random cells of the same shape exceed the p95 in about 5 % of draws (same metric, same equivalence)
    rng = np.random.default_rng(123)
    shape = {0: 2, 1: 2, 2: 2, 3: 2}
    above = 0
    for _ in range(400):
        cells = [_random_genotype(shape, OPS, rng) for _ in range(3)]
        above += mean_pairwise_jaccard(cells, equivalent_inputs=True) > chance["chance_jaccard_p95"]
    assert 0.005 < above / 400 < 0.1
    assert math.isnan(chance_levels(CELL, 1, OPS)["chance_jaccard_p95"])


def test_report_carries_chance_levels_and_argmax_over_non_none_ops():
    probs = np.full((14, 8), 0.1)
    probs[:, 0] = 0.3  # "none" (column 0) is the largest everywhere: it must not be the argmax
    probs[:, 4] = 0.2
    records = [record("acdc", "none", s, CELL, 0.8, op_probs=probs.tolist()) for s in range(3)]
    records += [record("acdc", "shapley", s, g, 0.8, equivalent_inputs=False)
                for s, g in enumerate([CELL, swap_inputs(CELL), CELL])]
    none, shap = stability_report(records)
    assert none["argmax_agreement"] == 1.0 and none["equivalent_inputs"] is True
    assert none["modal_agreement"] == 1.0 > none["chance_modal_agreement_p95"]
    assert none["jaccard"] == 1.0 > none["chance_jaccard_p95"]
    assert shap["equivalent_inputs"] is False and shap["jaccard"] < 1.0
    assert math.isnan(shap["chance_argmax_agreement_p95"])  # no op probabilities


def test_inputs_are_equivalent_unless_s1_is_the_decoder_feature():
    from shapnas.runs.records import equivalent_inputs

    assert equivalent_inputs({}) and equivalent_inputs({"decoder_input": False, "policy": "none"})
    assert not equivalent_inputs({"decoder_input": True})
