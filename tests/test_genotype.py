"""Edge layout (DARTS order, two input states), the Genotype record and the PC-DARTS derivation rule."""

from __future__ import annotations

import json

import pytest
import torch

from shapnas.networks.genotype import Genotype, derive_genotype, edge_index, edge_list, num_edges
from shapnas.networks.ops import PRIMITIVES

OP = {name: i for i, name in enumerate(PRIMITIVES)}


@pytest.mark.parametrize("num_nodes", [1, 2, 3, 4, 5])
def test_edge_index_matches_brute_force(num_nodes):
    expected, counter = {}, 0
    for node in range(num_nodes):  # DARTS: node by node, inputs s0, s1, n0 .. n(node-1)
        for src in range(node + 2):
            expected[(node, src)] = counter
            counter += 1
    assert num_edges(num_nodes) == counter
    assert {(n, s): edge_index(n, s) for n, s in expected} == expected
    assert edge_list(num_nodes) == sorted(expected, key=expected.get)


def test_fourteen_edges_for_four_nodes():
    assert num_edges(4) == 14
    assert edge_index(0, 0) == 0 and edge_index(1, 0) == 2 and edge_index(3, 4) == 13


@pytest.mark.parametrize("node, src", [(0, 2), (2, 4), (-1, 0), (1, -1)])
def test_edge_index_rejects_missing_edges(node, src):
    with pytest.raises(ValueError, match="node"):
        edge_index(node, src)


GENOTYPE = Genotype(edges=(
    (0, 0, "sep_conv_3x3"), (0, 1, "skip_connect"),
    (1, 1, "dil_conv_3x3"), (1, 2, "max_pool_3x3"),
    (2, 1, "sep_conv_3x3"), (2, 2, "dil_conv_5x5"),
    (3, 3, "avg_pool_3x3"), (3, 4, "sep_conv_5x5"),
))


def test_genotype_round_trips_and_prints():
    assert Genotype.from_dict(GENOTYPE.to_dict()) == GENOTYPE
    assert Genotype.from_json(GENOTYPE.to_json()) == GENOTYPE
    assert json.loads(GENOTYPE.to_json())["edges"][0] == [0, 0, "sep_conv_3x3"]
    lines = str(GENOTYPE).splitlines()
    assert lines[2] == "node 2 <- sep_conv_3x3(s1), dil_conv_5x5(n0)"
    assert len(lines) == 4
    assert (3, 4, "sep_conv_5x5") in GENOTYPE.triples() and len(GENOTYPE.triples()) == 8


def test_genotype_edges_are_canonically_sorted():
    shuffled = Genotype(edges=tuple(reversed(GENOTYPE.edges)))
    assert shuffled == GENOTYPE and shuffled.edges == GENOTYPE.edges


@pytest.mark.parametrize("edges, message", [
    (GENOTYPE.edges[:-1], "node 3 has inputs"),
    (GENOTYPE.edges[:-1] + ((3, 3, "sep_conv_5x5"),), "2 distinct"),
    (GENOTYPE.edges[:-1] + ((3, 5, "sep_conv_5x5"),), "outside"),
    (GENOTYPE.edges[:-1] + ((3, 4, "none"),), "non-'none'"),
    (GENOTYPE.edges[:-1] + ((3, 4, "conv_7x7"),), "non-'none'"),
])
def test_genotype_validation(edges, message):
    with pytest.raises(ValueError, match=message):
        Genotype(edges=edges)


def _probs(best: dict[int, tuple[str, float]], num: int = 14) -> torch.Tensor:
    """Per edge: 'none' gets 0.5 (must be ignored), the best op the given value, others smaller."""
    probs = torch.full((num, len(PRIMITIVES)), 0.01)
    probs[:, 0] = 0.5
    for edge, (name, value) in best.items():
        probs[edge, OP[name]] = value
    return probs


def test_derive_genotype_pcdarts_rule():
    best = {e: ("avg_pool_3x3", 0.02) for e in range(14)}
    best.update({
        0: ("sep_conv_3x3", 0.30), 1: ("dil_conv_5x5", 0.20),  # node 0: both edges
        2: ("skip_connect", 0.10), 3: ("sep_conv_5x5", 0.40), 4: ("max_pool_3x3", 0.35),  # node 1
        5: ("dil_conv_3x3", 0.30), 6: ("sep_conv_3x3", 0.30), 7: ("skip_connect", 0.25), 8: ("sep_conv_5x5", 0.3),
        9: ("sep_conv_3x3", 0.5), 13: ("dil_conv_3x3", 0.5),
    })
    edge_probs = torch.full((14,), 0.5)
    edge_probs[2:5] = 1 / 3
    edge_probs[5:9] = torch.tensor([0.2, 0.2, 0.4, 0.2])  # node 2: edge 7 wins through beta; 5 and 6 tie
    edge_probs[9:14] = torch.tensor([0.3, 0.1, 0.1, 0.1, 0.4])
    genotype = derive_genotype(_probs(best), edge_probs)
    assert genotype.edges == (
        (0, 0, "sep_conv_3x3"), (0, 1, "dil_conv_5x5"),
        (1, 1, "sep_conv_5x5"), (1, 2, "max_pool_3x3"),
        (2, 0, "dil_conv_3x3"), (2, 2, "skip_connect"),  # tie 0.06 = 0.06 between edges 5 and 6: lower index
        (3, 0, "sep_conv_3x3"), (3, 4, "dil_conv_3x3"),
    )


def test_derive_genotype_op_ties_and_inactive_ops():
    probs = _probs({e: ("sep_conv_3x3", 0.2) for e in range(14)})
    probs[:, OP["dil_conv_3x3"]] = 0.2  # tie with sep_conv_3x3: the lower op index wins
    probs[0, OP["sep_conv_3x3"]] = 0.0  # pruned on edge 0: dil_conv_3x3 remains
    probs[0, OP["dil_conv_3x3"]] = 0.0
    probs[0, OP["max_pool_3x3"]] = 0.9
    genotype = derive_genotype(probs, torch.ones(14))
    assert (0, 0, "max_pool_3x3") in genotype.triples()
    assert all(op in ("sep_conv_3x3", "max_pool_3x3") for _, _, op in genotype.edges)


def test_derive_genotype_checks_shapes():
    with pytest.raises(ValueError, match="expected"):
        derive_genotype(torch.zeros(10, 8), torch.zeros(10))
