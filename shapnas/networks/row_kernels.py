"""CPU kernels of the fused search cell's row algebra, with hand-written backward passes.

The fused cell (:mod:`shapnas.networks.fused_edges`) handles feature maps as pixel rows (N = B·H·W, C) with
few channels (C/K = 2 on a tiny backbone's full-resolution skip). On one CPU core, measured on such rows:

- MKL's product of a skinny (N, C) matrix with a C×C' one is 2–4× slower than oneDNN's 1×1 convolution of
  the same rows seen as a channels-last image (and its Gram matrix than oneDNN's 1×1 weight gradient);
- oneDNN's depthwise convolution is fast forward, but its input gradient with a channel multiplier or a
  dilation falls back to a slow generic kernel; that gradient is itself a depthwise convolution (the flipped
  kernel), which runs on the fast forward kernel;
- ``max_pool2d`` with the indices its backward needs is ~10× slower than two 1-D passes of ``torch.maximum``;
  its gradient is recovered from those passes (first maximum in scan order, as ``max_pool2d`` picks).

Each Function here computes what its plain PyTorch expression computes, up to float round-off (the order of
the sums differs; tested in ``tests/test_ops_cells.py``). They are used on CPU for float32 rows of at least
:data:`MIN_ROWS` pixels; below that the fixed cost of a oneDNN call outweighs its speed and the plain
expressions run, as they do on every other device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["MIN_ROWS", "use_row_kernels", "rows_image", "image_rows", "rows_linear", "rows_moments",
           "rows_depthwise", "max_pool3", "avg_pool3", "box_sum3", "avg_pool3_count"]

MIN_ROWS = 16384
"""Pixel rows from which the oneDNN routes pay (measured on one core: slower at 4096 rows, faster at 16384)."""

_conv_backward = torch.ops.aten.convolution_backward


def use_row_kernels(x: torch.Tensor, spatial: tuple[int, int, int] | None) -> bool:
    """Whether the CPU row kernels apply: float32 rows on CPU, a known (B, H, W), at least :data:`MIN_ROWS` rows.

    Args:
        x: (N, C) pixel rows.
        spatial: (B, H, W) with B·H·W = N, or None.

    Returns:
        True to use this module's Functions.
    """
    return (spatial is not None and x.device.type == "cpu" and x.dtype == torch.float32
            and x.shape[0] >= MIN_ROWS and torch.backends.mkldnn.is_available())


def rows_image(x: torch.Tensor, spatial: tuple[int, int, int]) -> torch.Tensor:
    """(N, C) pixel rows (any row stride) as a (B, C, H, W) image with channels-last strides (a view if possible)."""
    return x.reshape(*spatial, x.shape[1]).permute(0, 3, 1, 2)


def image_rows(image: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) channels-last image -> (N, C) pixel rows (a view when the image is channels-last)."""
    return image.permute(0, 2, 3, 1).reshape(-1, image.shape[1])


def _pointwise(x: torch.Tensor, spatial: tuple[int, int, int], weight: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` of rows (N, C) with a (C', C) weight, as a oneDNN 1×1 convolution -> (N, C')."""
    return image_rows(F.conv2d(rows_image(x, spatial), weight[:, :, None, None], bias))


def _pointwise_weight_grad(grad: torch.Tensor, x: torch.Tensor, spatial: tuple[int, int, int]) -> torch.Tensor:
    """``grad.T @ x`` (C', C) of rows grad (N, C') and x (N, C): oneDNN's 1×1 convolution weight gradient."""
    dummy = x.new_empty(grad.shape[1], x.shape[1], 1, 1)
    weight = _conv_backward(rows_image(grad, spatial), rows_image(x, spatial), dummy, None, [1, 1], [0, 0], [1, 1],
                            False, [0, 0], 1, [False, True, False])[1]
    return weight.view(grad.shape[1], x.shape[1])


class _RowsLinear(torch.autograd.Function):
    """``x @ weight.T + bias`` on pixel rows through oneDNN, both passes."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                spatial: tuple[int, int, int]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.spatial = spatial
        return _pointwise(x, spatial, weight, bias).detach()  # (N, C'); not a view, so callers may add in place

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = _pointwise(grad, ctx.spatial, weight.t()) if ctx.needs_input_grad[0] else None  # (N, C)
        grad_w = _pointwise_weight_grad(grad, x, ctx.spatial) if ctx.needs_input_grad[1] else None  # (C', C)
        grad_b = grad.sum(0) if ctx.needs_input_grad[2] else None  # (C',)
        return grad_x, grad_w, grad_b, None


def rows_linear(x: torch.Tensor, weight: torch.Tensor, spatial: tuple[int, int, int],
                bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` of pixel rows (N, C) with a (C', C) weight, forward and backward through oneDNN.

    Args:
        x: (N, C) rows of a (B, H, W) map (any row stride).
        weight: (C', C).
        spatial: (B, H, W).
        bias: (C',) or None.

    Returns:
        (N, C'), contiguous.
    """
    return _RowsLinear.apply(x, weight, bias, spatial)


class _RowsMoments(torch.autograd.Function):
    """(mean, Gram/N) of pixel rows; the Gram matrix and the backward's product through oneDNN."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, spatial: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.save_for_backward(x)
        ctx.spatial = spatial
        num = x.shape[0]
        return x.sum(0) / num, _pointwise_weight_grad(x, x, spatial) / num  # (C,), (C, C)

    @staticmethod
    def backward(ctx, grad_mean: torch.Tensor | None, grad_gram: torch.Tensor | None):
        (x,) = ctx.saved_tensors
        num = x.shape[0]
        row = (grad_mean if grad_mean is not None else x.new_zeros(x.shape[1])) / num
        if grad_gram is None:
            return row.expand_as(x).clone(), None
        symmetric = (grad_gram + grad_gram.t()) / num  # (C, C)
        return _pointwise(x, ctx.spatial, symmetric, row), None  # x @ S + row, the row as the bias


def rows_moments(x: torch.Tensor, spatial: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (C,) and Gram matrix / N (C, C) of pixel rows (N, C), differentiable, through oneDNN."""
    return _RowsMoments.apply(x, spatial)


def _group_sum_matrix(channels: int, multiplier: int, like: torch.Tensor) -> torch.Tensor:
    """(C, C·m) 0/1 matrix summing each run of m consecutive columns (faster than ``view(N, C, m).sum(-1)``)."""
    eye = torch.eye(channels, dtype=like.dtype, device=like.device)
    return eye.repeat_interleave(multiplier, dim=1)


class _RowsDepthwise(torch.autograd.Function):
    """Depthwise k×k convolution (channel multiplier m, dilation d, "same" padding) of pixel rows; the input
    gradient runs as the forward convolution of the flipped kernel."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, spatial: tuple[int, int, int],
                dilation: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.spatial, ctx.dilation = spatial, dilation
        padding = dilation * (weight.shape[-1] - 1) // 2
        image = F.conv2d(rows_image(x, spatial), weight, padding=padding, dilation=dilation, groups=x.shape[1])
        return image_rows(image).detach()  # (N, C·m), not a view

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        spatial, dilation = ctx.spatial, ctx.dilation
        padding = dilation * (weight.shape[-1] - 1) // 2
        grad_image = rows_image(grad, spatial)  # (B, C·m, H, W)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            back = F.conv2d(grad_image, weight.flip(-1, -2), padding=padding, dilation=dilation, groups=weight.shape[0])
            grad_x = image_rows(back)  # (N, C·m): output channel j reads input j // m
            multiplier = weight.shape[0] // x.shape[1]
            if multiplier > 1:  # sum each input channel's m outputs: a 1×1 product with a 0/1 matrix
                grad_x = _pointwise(grad_x, spatial, _group_sum_matrix(x.shape[1], multiplier, grad_x))  # (N, C)
        if ctx.needs_input_grad[1]:
            grad_w = _conv_backward(grad_image, rows_image(x, spatial), weight, None, [1, 1], [padding, padding],
                                    [dilation, dilation], False, [0, 0], x.shape[1], [False, True, False])[1]
        return grad_x, grad_w, None, None


def rows_depthwise(x: torch.Tensor, weight: torch.Tensor, spatial: tuple[int, int, int], dilation: int) -> torch.Tensor:
    """Depthwise convolution of pixel rows (N, C) with a (C·m, 1, k, k) weight (output channel j reads input
    j // m), stride 1, padding ``dilation·(k−1)/2``; returns (N, C·m), contiguous."""
    return _RowsDepthwise.apply(x, weight, spatial, dilation)


def _first_of_three(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                    best: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masks of the first of (a, b, c) equal to their maximum ``best`` (exactly one is True per element)."""
    first = a == best
    second = (b == best) & ~first
    return first, second, ~(first | second)


class _MaxPool3(torch.autograd.Function):
    """3×3 max pool, stride 1, padding 1, as two 1-D passes; the gradient goes to the first maximum of each
    window in row-major scan order, the element ``max_pool2d`` picks."""

    @staticmethod
    def forward(ctx, image: torch.Tensor) -> torch.Tensor:
        padded = F.pad(image, (1, 1, 1, 1), value=float("-inf"))  # (B, C, H+2, W+2)
        rows = torch.maximum(torch.maximum(padded[..., :-2], padded[..., 1:-1]), padded[..., 2:])  # (B, C, H+2, W)
        out = torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])  # (B, C, H, W)
        ctx.save_for_backward(padded, rows, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        padded, rows, out = ctx.saved_tensors
        # window rows: the first of the three row maxima that equals the window's maximum
        picks = _first_of_three(rows[..., :-2, :], rows[..., 1:-1, :], rows[..., 2:, :], out)
        grad_rows = grad.new_zeros(rows.shape)  # (B, C, H+2, W)
        for offset, pick in enumerate(picks):
            grad_rows[..., offset:offset + grad.shape[-2], :] += torch.where(pick, grad, 0.0)
        # within the row: the first of its three elements that equals the row maximum
        picks = _first_of_three(padded[..., :-2], padded[..., 1:-1], padded[..., 2:], rows)
        grad_padded = grad.new_zeros(padded.shape)  # (B, C, H+2, W+2)
        for offset, pick in enumerate(picks):
            grad_padded[..., offset:offset + grad.shape[-1]] += torch.where(pick, grad_rows, 0.0)
        return grad_padded[..., 1:-1, 1:-1]


def max_pool3(image: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(image, 3, stride=1, padding=1)`` of (B, C, H, W), the same values; its gradient as
    ``max_pool2d``'s up to the order in which a pixel's contributions are summed."""
    return _MaxPool3.apply(image)


def box_sum3(image: torch.Tensor) -> torch.Tensor:
    """Sum over each 3×3 window (zero padding), as two 1-D passes: (B, C, H, W) -> (B, C, H, W)."""
    padded = F.pad(image, (1, 1, 1, 1))
    rows = padded[..., :-2] + padded[..., 1:-1] + padded[..., 2:]
    return rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]


def avg_pool3_count(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(H, W) number of in-image pixels of each 3×3 window (``count_include_pad=False``); H, W > 1."""
    count_h = torch.full((height,), 3.0, dtype=like.dtype, device=like.device)
    count_w = torch.full((width,), 3.0, dtype=like.dtype, device=like.device)
    count_h[[0, -1]] -= 1
    count_w[[0, -1]] -= 1
    return count_h[:, None] * count_w[None, :]


class _AvgPool3(torch.autograd.Function):
    """3×3 average pool without padded cells; the window sum is self-adjoint, so the gradient is the window
    sum of ``grad / count``."""

    @staticmethod
    def forward(ctx, image: torch.Tensor) -> torch.Tensor:
        count = avg_pool3_count(image.shape[-2], image.shape[-1], image)  # (H, W)
        ctx.save_for_backward(count)
        return box_sum3(image) / count

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (count,) = ctx.saved_tensors
        return box_sum3(grad / count)


def avg_pool3(image: torch.Tensor) -> torch.Tensor:
    """``F.avg_pool2d(image, 3, stride=1, padding=1, count_include_pad=False)`` of (B, C, H, W) with H, W > 1,
    as window sums (equal up to float round-off), differentiable."""
    return _AvgPool3.apply(image)
