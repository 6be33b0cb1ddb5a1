"""The CPU row kernels of the fused cell against the plain PyTorch expressions they replace, and the cell's
bookkeeping changes (gathered block-diagonal weights, collected running-statistics updates)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from shapnas.networks import row_kernels
from shapnas.networks.cells import SearchCell
from shapnas.networks.ops import RunningStats, batch_norm_affine, depthwise_rows, linear_rows, pool_rows
from shapnas.networks.row_kernels import (
    avg_pool3,
    max_pool3,
    rows_depthwise,
    rows_linear,
    rows_moments,
    use_row_kernels,
)

SPATIAL = (2, 9, 7)  # (B, H, W): N = 126 rows
ROWS = 2 * 9 * 7


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rows(channels: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(ROWS, channels, generator=_gen(seed), dtype=dtype, requires_grad=True)


def test_use_row_kernels_only_for_large_float32_cpu_rows(monkeypatch):
    x = torch.zeros(ROWS, 4)
    assert not use_row_kernels(x, SPATIAL)  # fewer than MIN_ROWS
    monkeypatch.setattr(row_kernels, "MIN_ROWS", 1)
    assert use_row_kernels(x, SPATIAL)
    assert not use_row_kernels(x, None)
    assert not use_row_kernels(x.double(), SPATIAL)


def test_rows_linear_gradcheck_and_value():
    x, weight, bias = _rows(5, 0), torch.randn(3, 5, dtype=torch.float64, requires_grad=True), \
        torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(rows_linear(x, weight, SPATIAL, bias), x @ weight.t() + bias)
    assert torch.autograd.gradcheck(lambda a, w, b: rows_linear(a, w, SPATIAL, b), (x, weight, bias))


def test_rows_linear_on_column_slices():
    x = _rows(6, 1)
    weight = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w: rows_linear(a[:, 3:], w, SPATIAL), (x, weight))


def test_rows_moments_gradcheck_and_value():
    x = _rows(4, 2)
    mean, gram = rows_moments(x, SPATIAL)
    assert torch.allclose(mean, x.mean(0)) and torch.allclose(gram, x.t() @ x / ROWS)
    assert torch.autograd.gradcheck(lambda a: rows_moments(a, SPATIAL), (x,))


@pytest.mark.parametrize("channels, multiplier, size, dilation", [(2, 4, 3, 1), (2, 3, 5, 2), (3, 1, 5, 1), (4, 1, 3, 2)])
def test_rows_depthwise_matches_conv2d(channels, multiplier, size, dilation):
    x = _rows(channels, 3)
    weight = torch.randn(channels * multiplier, 1, size, size, generator=_gen(4), dtype=torch.float64,
                         requires_grad=True)
    image = x.reshape(*SPATIAL, channels).permute(0, 3, 1, 2)
    padding = dilation * (size - 1) // 2
    expected = F.conv2d(image, weight, padding=padding, dilation=dilation, groups=channels)
    got = rows_depthwise(x, weight, SPATIAL, dilation)
    assert torch.allclose(got, expected.permute(0, 2, 3, 1).reshape(ROWS, -1))
    assert torch.autograd.gradcheck(lambda a, w: rows_depthwise(a, w, SPATIAL, dilation), (x, weight))


def test_max_pool3_values_and_gradient_equal_max_pool2d_with_ties():
    image = torch.randint(0, 4, (2, 3, 6, 5), generator=_gen(5)).double().requires_grad_(True)  # many ties
    grad = torch.randn(2, 3, 6, 5, generator=_gen(6), dtype=torch.float64)
    mine, theirs = max_pool3(image), F.max_pool2d(image, 3, stride=1, padding=1)
    assert torch.equal(mine, theirs)
    (g_mine,), (g_theirs,) = torch.autograd.grad(mine, image, grad), torch.autograd.grad(theirs, image, grad)
    assert torch.allclose(g_mine, g_theirs, rtol=0, atol=1e-12)  # same maxima; only the summation order differs


def test_avg_pool3_matches_avg_pool2d_and_gradcheck():
    image = torch.randn(2, 3, 6, 5, generator=_gen(7), dtype=torch.float64, requires_grad=True)
    expected = F.avg_pool2d(image, 3, stride=1, padding=1, count_include_pad=False)
    assert torch.allclose(avg_pool3(image), expected)
    assert torch.autograd.gradcheck(avg_pool3, (image,))


def test_row_functions_route_through_the_kernels_with_the_same_results(monkeypatch):
    """linear_rows, depthwise_rows, pool_rows and batch_norm_affine with and without the kernels (float32)."""
    x = torch.randn(ROWS, 4, generator=_gen(8)).requires_grad_(True)
    weight = torch.randn(3, 4, generator=_gen(9))
    kernel = torch.randn(8, 1, 5, 5, generator=_gen(10))

    def run() -> list[torch.Tensor]:
        outs = [linear_rows(x, weight, None, SPATIAL), depthwise_rows(x, SPATIAL, kernel, 2, 4),
                pool_rows(x, SPATIAL, "max_pool_3x3"), pool_rows(x, SPATIAL, "avg_pool_3x3"),
                *batch_norm_affine(x, weight, torch.zeros(3), torch.ones(3), None, True, SPATIAL)]
        total = sum((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum() for out in outs)
        return [*outs, *torch.autograd.grad(total, x)]
    plain = run()
    monkeypatch.setattr(row_kernels, "MIN_ROWS", 1)
    fast = run()
    for a, b in zip(plain, fast):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)


def test_running_stats_collected_equal_immediate_updates():
    x = torch.randn(50, 3, generator=_gen(11))
    weight = torch.randn(4, 3, generator=_gen(12))
    buffers = [(torch.randn(2, 4, generator=_gen(13)), torch.rand(2, 4, generator=_gen(14))) for _ in range(2)]
    index = torch.tensor([4, 5, 6, 7])
    stats = RunningStats()
    batch_norm_affine(x, weight, *buffers[0], index, True, None, stats)
    batch_norm_affine(x[:, :2], weight[:, :2], *buffers[0], torch.tensor([0, 1, 2, 3]), True, None, stats)
    batch_norm_affine(x, weight, *buffers[1], index, True)  # immediately
    batch_norm_affine(x[:, :2], weight[:, :2], *buffers[1], torch.tensor([0, 1, 2, 3]), True)
    untouched = buffers[0][0].clone()
    assert torch.equal(untouched, buffers[0][0])  # nothing written before apply
    stats.apply()
    assert torch.equal(buffers[0][0], buffers[1][0]) and torch.equal(buffers[0][1], buffers[1][1])


@pytest.mark.parametrize("kernels", [False, True])
def test_search_cell_state_dict_and_outputs_are_layout_independent(monkeypatch, kernels):
    """The same cell output and gradients whatever the device-side layout of the skip (channels-last or not)."""
    if kernels:
        monkeypatch.setattr(row_kernels, "MIN_ROWS", 1)
    cell = SearchCell(6, 8, 4, generator=_gen(15)).train()
    x = torch.randn(2, 6, 10, 10, generator=_gen(16))
    op_weights = torch.softmax(torch.randn(14, 8, generator=_gen(17)), 1)
    edge_weights, active = torch.rand(14, generator=_gen(18)), torch.ones(14, 8, dtype=torch.bool)
    outs = []
    for layout in (torch.contiguous_format, torch.channels_last):
        state = {k: v.clone() for k, v in cell.state_dict().items()}
        out = cell(x.contiguous(memory_format=layout), op_weights, edge_weights, active)
        assert out.is_contiguous(memory_format=layout)
        outs.append(out)
        cell.load_state_dict(state)
    assert torch.allclose(outs[0], outs[1], atol=1e-6)
