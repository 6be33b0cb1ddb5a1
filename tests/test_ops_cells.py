"""Ops, the PC-DARTS mixed op, and the fused search cell against a per-edge reference built from MixedOps."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shapnas.networks.cells import DiscreteCell, MixedOp, SearchCell, channel_shuffle
from shapnas.networks.genotype import Genotype, edge_list
from shapnas.networks.ops import OPS, PRIMITIVES, batch_moments, batch_norm_affine, pool_rows

E, P = 14, len(PRIMITIVES)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("channels, groups", [(8, 4), (12, 3), (6, 1), (5, 5)])
def test_channel_shuffle_is_the_shufflenet_permutation(channels, groups):
    x = torch.arange(channels, dtype=torch.float32).view(1, channels, 1, 1).expand(2, channels, 3, 3)
    y = channel_shuffle(x, groups)
    part = channels // groups
    expected = [g * part + j for j in range(part) for g in range(groups)]  # position j·groups + g
    assert y[0, :, 0, 0].long().tolist() == expected
    assert sorted(expected) == list(range(channels))
    assert torch.equal(channel_shuffle(y, part), x)  # the inverse permutation


@pytest.mark.parametrize("name", PRIMITIVES)
def test_ops_keep_shape(name):
    x = torch.randn(2, 4, 9, 7, generator=_gen())
    assert OPS[name](4)(x).shape == x.shape
    assert OPS[name](4, affine=True)(x).shape == x.shape


@pytest.mark.parametrize("op", range(1, P))
def test_one_hot_mixed_op_equals_its_op(op):
    mixed = MixedOp(8, 1)
    x = torch.randn(2, 8, 10, 10, generator=_gen(op))
    weights = F.one_hot(torch.tensor(op), P).float()
    assert torch.allclose(mixed(x, weights, [op]), mixed.ops[op](x), atol=1e-6)


def test_mixed_op_k1_equals_darts_mixed_op():
    mixed = MixedOp(6, 1)
    x = torch.randn(2, 6, 8, 8, generator=_gen(1))
    weights = torch.softmax(torch.randn(P, generator=_gen(2)), 0)
    darts = sum(w * op(x) for w, op in zip(weights, mixed.ops))  # DARTS: every op, 'none' included
    assert torch.allclose(mixed(x, weights, range(1, P)), darts, atol=1e-6)


def test_partial_channel_mixed_op_bypasses_and_shuffles():
    mixed = MixedOp(8, 4)
    x = torch.randn(2, 8, 6, 6, generator=_gen(3))
    weights = torch.rand(P, generator=_gen(4))
    y = mixed(x, weights, [3])  # skip_connect only: the slice is scaled, the rest passes unchanged
    expected = channel_shuffle(torch.cat([weights[3] * x[:, :2], x[:, 2:]], 1), 4)
    assert torch.allclose(y, expected)
    with pytest.raises(ValueError, match="none"):
        mixed(x, weights, [0, 3])


def reference_cell(cell: SearchCell, x, op_weights, edge_weights, active):
    """The search cell written with one MixedOp per edge (weights copied from the fused cell)."""
    pre = cell.preprocess(x)
    channels = cell.channels
    states = [pre[:, :channels], pre[:, channels:]]
    ops = [cell.mixed_op(e) for e in range(cell.num_edges)]
    for node in range(cell.num_nodes):
        total = 0
        for e, (n, src) in enumerate(edge_list(cell.num_nodes)):
            if n == node:
                computed = [o for o in range(1, P) if active[e, o]]
                total = total + edge_weights[e] * ops[e](states[src], op_weights[e], computed)
        states.append(total)
    return cell.project(torch.cat(states[2:], 1)), ops


def _inputs(seed, in_channels=6, size=12, num=E):
    g = _gen(seed)
    x = torch.randn(2, in_channels, size, size, generator=g)
    op_weights = torch.softmax(torch.randn(num, P, generator=g), 1)
    edge_weights = torch.rand(num, generator=g)
    active = torch.rand(num, P, generator=g) > 0.3
    return x, op_weights, edge_weights, active


@pytest.mark.parametrize("channels, k, num_nodes", [(8, 4, 4), (8, 1, 4), (12, 3, 4), (4, 4, 4), (8, 4, 2), (8, 2, 5)])
def test_search_cell_equals_per_edge_reference(channels, k, num_nodes):
    cell = SearchCell(6, channels, k, num_nodes, generator=_gen(10))
    x, op_weights, edge_weights, active = _inputs(channels + k, num=cell.num_edges)
    cell.train()
    reference, _ = reference_cell(cell, x, op_weights, edge_weights, active)  # BN batch statistics
    assert torch.allclose(cell(x, op_weights, edge_weights, active), reference, atol=1e-4)
    cell.eval()  # running statistics (updated once by the fused training pass above)
    reference, _ = reference_cell(cell, x, op_weights, edge_weights, active)
    assert torch.allclose(cell(x, op_weights, edge_weights, active), reference, atol=1e-4)


def test_search_cell_running_statistics_match_reference():
    cell = SearchCell(6, 8, 4, generator=_gen(11)).train()
    x, op_weights, edge_weights, active = _inputs(5)
    active[:] = True
    ops = [cell.mixed_op(e) for e in range(E)]  # copies before the update, in training mode
    pre = copy.deepcopy(cell.preprocess)(x)
    cell(x, op_weights, edge_weights, active)
    for e, (_, src) in enumerate(edge_list(4)):
        state = pre[:, :8] if src == 0 else pre[:, 8:] if src == 1 else None
        if state is None:
            continue
        ops[e](state, op_weights[e], range(1, P))
        for op in (1, 2, 4, 6):  # pools (per-source BN), sep_conv_3x3 (two BNs), dil_conv_3x3
            fused = cell.mixed_op(e).ops[op]
            for mine, theirs in zip(fused.modules(), ops[e].ops[op].modules()):
                if isinstance(mine, nn.BatchNorm2d):
                    assert torch.allclose(mine.running_mean, theirs.running_mean, atol=1e-5)
                    assert torch.allclose(mine.running_var, theirs.running_var, atol=1e-4)


def test_search_cell_gradients_match_reference():
    cell = SearchCell(6, 8, 4, generator=_gen(12)).train()
    x, op_weights, edge_weights, active = _inputs(6)
    target = torch.randn(2, 6, 12, 12, generator=_gen(7))
    grads = []
    for fused in (True, False):
        w, b, xi = (t.clone().requires_grad_() for t in (op_weights, edge_weights, x))
        out = cell(xi, w, b, active) if fused else reference_cell(cell, xi, w, b, active)[0]
        ((out - target) ** 2).mean().backward()
        grads.append((w.grad, b.grad, xi.grad))
    for mine, theirs in zip(*grads):
        assert torch.allclose(mine, theirs, atol=1e-5, rtol=1e-3)


@pytest.mark.parametrize("grad", [True, False])
def test_pruned_cell_equals_unpruned_with_zeroed_weights(grad):
    cell = SearchCell(6, 8, 4, generator=_gen(13)).train()
    x, op_weights, edge_weights, _ = _inputs(8)
    keep = torch.rand(E, P, generator=_gen(9)) > 0.5
    zeroed = op_weights * keep
    with torch.set_grad_enabled(grad):
        full = cell(x, zeroed, edge_weights, torch.ones(E, P, dtype=torch.bool))
        pruned = cell(x, zeroed, edge_weights, keep)
    assert torch.allclose(full, pruned, atol=1e-5)


def test_inactive_ops_are_not_computed():
    cell = SearchCell(6, 8, 4, generator=_gen(14)).train()
    x, op_weights, edge_weights, _ = _inputs(10)
    active = torch.zeros(E, P, dtype=torch.bool)
    active[:, 0] = active[:, 3] = True  # skip_connect everywhere
    active[5, 4] = True  # sep_conv_3x3 on edge 5 only
    cell(x, op_weights, edge_weights, active).sum().backward()
    edges = cell.edges
    for name in ("sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"):
        assert edges.dw1[name].grad is None and edges.pw1[name].grad is None
    grad = edges.dw1["sep_conv_3x3"].grad.abs().sum((1, 2, 3))
    assert grad[5] > 0 and grad.sum() == grad[5]


def test_no_grad_skips_zero_weights_with_the_same_result():
    cell = SearchCell(6, 8, 4, generator=_gen(15)).eval()
    x, op_weights, edge_weights, active = _inputs(11)
    op_weights[:, 4:] = 0  # every parametric op absent from the coalition
    edge_weights[3] = 0
    with torch.no_grad():
        skipped = cell(x, op_weights, edge_weights, active)
    computed = cell(x, op_weights, edge_weights, active)  # grad enabled: all active ops run
    assert torch.allclose(skipped, computed, atol=1e-5)


def test_discrete_cell_shape_and_ops():
    genotype = Genotype(edges=((0, 0, "sep_conv_3x3"), (0, 1, "skip_connect"), (1, 0, "max_pool_3x3"),
                               (1, 2, "dil_conv_5x5"), (2, 1, "avg_pool_3x3"), (2, 3, "sep_conv_5x5"),
                               (3, 0, "dil_conv_3x3"), (3, 4, "skip_connect")))
    cell = DiscreteCell(6, 8, genotype, generator=_gen(16))
    x = torch.randn(2, 6, 10, 10, generator=_gen(17))
    assert cell(x).shape == x.shape and len(cell.ops) == 8
    twin = DiscreteCell(6, 8, genotype, generator=_gen(16))
    assert torch.equal(twin(x), cell(x))


def test_batch_norm_folding_matches_batchnorm2d():
    g = _gen(18)
    rows = torch.randn(300, 5, generator=g) * 3 + 1  # (N, C_in) with a non-zero mean
    weight = torch.randn(4, 5, generator=g)
    y = rows @ weight.t()
    mean, var = batch_moments(rows, weight)
    assert torch.allclose(mean, y.mean(0), atol=1e-4) and torch.allclose(var, y.var(0, unbiased=False), rtol=1e-4)
    bn = nn.BatchNorm2d(4, affine=False)
    running_mean, running_var = torch.zeros(4), torch.ones(4)
    image = y.t().reshape(1, 4, 300, 1)
    for training in (True, False):
        bn.train(training)
        scale, shift = batch_norm_affine(rows, weight, running_mean, running_var, None, training)
        expected = bn(image)[0, :, :, 0].t()
        assert torch.allclose(y * scale + shift, expected, atol=1e-4)
        assert torch.allclose(running_mean, bn.running_mean) and torch.allclose(running_var, bn.running_var)


def test_moments_backward_is_exact():
    rows = torch.randn(40, 3, dtype=torch.float64, generator=_gen(19), requires_grad=True)
    weight = torch.randn(2, 3, dtype=torch.float64, generator=_gen(20))
    assert torch.autograd.gradcheck(lambda r: batch_moments(r, weight), (rows,))


@pytest.mark.parametrize("channels", [2, 8])
def test_fast_no_grad_pools_match_native(channels):
    rows = torch.randn(2 * 9 * 7, channels, generator=_gen(21))
    spatial = (2, 9, 7)
    image = rows.view(2, 9, 7, channels).permute(0, 3, 1, 2)
    with torch.no_grad():
        fast_max = pool_rows(rows, spatial, "max_pool_3x3")
        fast_avg = pool_rows(rows, spatial, "avg_pool_3x3")
    native_max = F.max_pool2d(image, 3, 1, 1).permute(0, 2, 3, 1).reshape(-1, channels)
    native_avg = F.avg_pool2d(image, 3, 1, 1, count_include_pad=False).permute(0, 2, 3, 1).reshape(-1, channels)
    assert torch.equal(fast_max, native_max)
    assert torch.allclose(fast_avg, native_avg, atol=1e-6)
    grad_rows = rows.clone().requires_grad_()
    assert torch.allclose(pool_rows(grad_rows, spatial, "avg_pool_3x3"), native_avg, atol=1e-6)


def test_no_grad_with_a_whole_node_switched_off():
    cell = SearchCell(6, 8, 4, generator=_gen(22)).eval()
    x, op_weights, edge_weights, active = _inputs(12)
    edge_weights[[2, 3, 4]] = 0  # every edge into node 1
    edge_weights[8] = 0  # n1 -> n2
    reference, _ = reference_cell(cell, x, op_weights, edge_weights, active)
    with torch.no_grad():
        assert torch.allclose(cell(x, op_weights, edge_weights, active), reference, atol=1e-5)
