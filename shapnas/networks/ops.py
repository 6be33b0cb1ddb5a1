"""Candidate operations of the implanted cells (the PC-DARTS set, stride 1) and batched building blocks.

``OPS`` follows ``cnn/operations.py`` of PC-DARTS (Xu et al., ICLR 2020; ``yuhuixu1993/PC-DARTS``), itself
from DARTS (Liu et al., ICLR 2019); the column order of every α tensor is :data:`PRIMITIVES`. The
``*_rows`` functions and the batch-norm folding are what the fused search cell (:mod:`shapnas.networks.fused_edges`)
is made of.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PRIMITIVES", "OPS", "PARAMETRIC", "POOLS", "ReLUConvBN", "SepConv", "DilConv", "Zero", "Identity",
    "search_op", "linear_rows", "depthwise_rows", "pool_rows", "batch_moments", "batch_norm_affine",
    "BN_MOMENTUM", "BN_EPS", "input_mask", "with_decoder", "init_uniform_",
]

BN_MOMENTUM, BN_EPS = 0.1, 1e-5  # nn.BatchNorm2d defaults

PRIMITIVES: tuple[str, ...] = (
    "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
)
"""The 8 PC-DARTS primitives in PC-DARTS order (column ``j`` of α is ``PRIMITIVES[j]``)."""

POOLS: tuple[str, ...] = ("max_pool_3x3", "avg_pool_3x3")
PARAMETRIC: dict[str, tuple[int, int, int]] = {
    # name: (kernel size, dilation, depthwise-pointwise repeats); padding keeps H, W
    "sep_conv_3x3": (3, 1, 2),
    "sep_conv_5x5": (5, 1, 2),
    "dil_conv_3x3": (3, 2, 1),
    "dil_conv_5x5": (5, 2, 1),
}


class ReLUConvBN(nn.Module):
    """ReLU → Conv(k×k, no bias) → BatchNorm (DARTS ``ReLUConvBN``; the cells' 1×1 preprocessing).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel, padded to keep H, W. Defaults to 1.
        affine: learnable BN scale/shift (False in the search, as PC-DARTS). Defaults to False.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, affine: bool = False) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)  # (B, out, H, W)


class DilConv(nn.Module):
    """ReLU → depthwise dilated k×k → pointwise 1×1 → BN (DARTS ``DilConv``, stride 1).

    Args:
        channels: input = output channels.
        kernel_size: 3 or 5.
        dilation: dilation of the depthwise conv (2 in DARTS); padding ``dilation·(k−1)/2``.
        affine: learnable BN. Defaults to False.
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int, affine: bool = False) -> None:
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, kernel_size, padding=padding, dilation=dilation, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class SepConv(nn.Module):
    """Two stacked ``DilConv`` with dilation 1 (DARTS ``SepConv``, stride 1).

    Args:
        channels: input = output channels.
        kernel_size: 3 or 5.
        affine: learnable BN. Defaults to False.
    """

    def __init__(self, channels: int, kernel_size: int, affine: bool = False) -> None:
        super().__init__()
        self.op = nn.Sequential(DilConv(channels, kernel_size, 1, affine).op,
                                DilConv(channels, kernel_size, 1, affine).op)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Zero(nn.Module):
    """The ``none`` op: zeros of the input's shape (only used by reference code; cells never run it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class Identity(nn.Module):
    """The ``skip_connect`` op at stride 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


OPS: dict[str, Callable[..., nn.Module]] = {
    "none": lambda channels, affine=False: Zero(),
    "max_pool_3x3": lambda channels, affine=False: nn.MaxPool2d(3, stride=1, padding=1),
    "avg_pool_3x3": lambda channels, affine=False: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
    "skip_connect": lambda channels, affine=False: Identity(),
    "sep_conv_3x3": lambda channels, affine=False: SepConv(channels, 3, affine),
    "sep_conv_5x5": lambda channels, affine=False: SepConv(channels, 5, affine),
    "dil_conv_3x3": lambda channels, affine=False: DilConv(channels, 3, 2, affine),
    "dil_conv_5x5": lambda channels, affine=False: DilConv(channels, 5, 2, affine),
}
"""name → factory ``OPS[name](channels, affine=False)`` of a stride-1 op mapping (B, C, H, W) to (B, C, H, W)."""


def search_op(name: str, channels: int) -> nn.Module:
    """An op as a PC-DARTS ``MixedOp`` holds it: BN with ``affine=False``, pools followed by a BN.

    Args:
        name: one of :data:`PRIMITIVES`.
        channels: its channels (the partial-channel slice C/K).

    Returns:
        The module.
    """
    if name not in OPS:
        raise ValueError(f"op {name!r}; expected one of {', '.join(PRIMITIVES)}")
    op = OPS[name](channels, affine=False)
    if name in POOLS:
        op = nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
    return op


# Batched building blocks of the fused search cell. Feature maps are handled as pixel rows (N = B·H·W, C),
# channels innermost: 1×1 convolutions are then plain matrix products and oneDNN runs the depthwise
# convolutions channels-last.

_POOL_NCHW_BELOW = 4  # channels-first pooling is faster for fewer channels (measured, 2-core CPU)


def depthwise_rows(x: torch.Tensor, spatial: tuple[int, int, int], weight: torch.Tensor, dilation: int,
                   groups: int) -> torch.Tensor:
    """Grouped k×k convolution ("same" padding, stride 1) of pixel rows.

    Args:
        x: (N, C_in) pixel rows of a (B, H, W) map (any row stride).
        spatial: (B, H, W).
        weight: (C_out, C_in / groups, k, k); ``groups = C_in`` with ``C_out = m·C_in`` is a depthwise
            convolution with channel multiplier m (output channel ``j`` reads input ``j // m``).
        dilation: dilation of the kernel.
        groups: convolution groups.

    Returns:
        (N, C_out), contiguous.
    """
    padding = dilation * (weight.shape[-1] - 1) // 2
    image = x.reshape(*spatial, x.shape[1]).permute(0, 3, 1, 2)  # (B, C_in, H, W), channels-last strides
    y = F.conv2d(image, weight, padding=padding, dilation=dilation, groups=groups)
    return y.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


def linear_rows(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` on pixel rows (N, C_in) -> (N, C_out); ``mm`` then an in-place add, which is
    several times faster on CPU than ``addmm`` with a broadcast bias for few channels."""
    y = x @ weight.t()
    return y if bias is None else y.add_(bias)


def _max_pool_separable(image: torch.Tensor) -> torch.Tensor:
    """3×3 stride-1 max pool as two 1-D passes of ``torch.maximum`` (identical values, >10× faster than
    ``F.max_pool2d`` on CPU, but without the indices that its backward needs)."""
    padded = F.pad(image, (1, 1, 1, 1), value=float("-inf"))
    rows = torch.maximum(torch.maximum(padded[..., :-2], padded[..., 1:-1]), padded[..., 2:])
    return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])


def _avg_pool_separable(image: torch.Tensor) -> torch.Tensor:
    """3×3 stride-1 average pool without padded cells (``count_include_pad=False``) as two 1-D box sums
    (equal to ``F.avg_pool2d`` up to float rounding, about 3× faster on CPU without gradients)."""
    height, width = image.shape[-2:]
    padded = F.pad(image, (1, 1, 1, 1))
    rows = padded[..., :-2] + padded[..., 1:-1] + padded[..., 2:]
    box = rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]
    count_h = torch.full((height,), 3.0, dtype=image.dtype, device=image.device)
    count_w = torch.full((width,), 3.0, dtype=image.dtype, device=image.device)
    count_h[[0, -1]] -= 1
    count_w[[0, -1]] -= 1
    return box / (count_h[:, None] * count_w[None, :])


def pool_rows(x: torch.Tensor, spatial: tuple[int, int, int], name: str) -> torch.Tensor:
    """``max_pool_3x3`` or ``avg_pool_3x3`` (stride 1, as PC-DARTS) of pixel rows (N, C) -> (N, C)."""
    image = x.reshape(*spatial, x.shape[1]).permute(0, 3, 1, 2)
    if x.shape[1] < _POOL_NCHW_BELOW:
        image = image.contiguous()
    fast = not (torch.is_grad_enabled() and x.requires_grad) and min(spatial[1:]) > 1
    if name == "max_pool_3x3":
        image = _max_pool_separable(image) if fast else F.max_pool2d(image, 3, stride=1, padding=1)
    else:
        image = _avg_pool_separable(image) if fast else \
            F.avg_pool2d(image, 3, stride=1, padding=1, count_include_pad=False)
    return image.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


class _Moments(torch.autograd.Function):
    """(mean, Gram/N) of rows, with a backward that is a single ``addmm``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        ctx.save_for_backward(x)
        num = x.shape[0]
        return x.sum(0) / num, x.t() @ x / num

    @staticmethod
    def backward(ctx, grad_mean: torch.Tensor | None, grad_gram: torch.Tensor | None) -> torch.Tensor:  # noqa: D102
        (x,) = ctx.saved_tensors
        num = x.shape[0]
        row = (grad_mean if grad_mean is not None else x.new_zeros(x.shape[1])) / num
        if grad_gram is None:
            return row.expand_as(x).clone()
        return (x @ ((grad_gram + grad_gram.t()) / num)).add_(row)  # faster than addmm with a broadcast row


def batch_moments(x: torch.Tensor, weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch mean and (biased) variance per channel of ``y = x @ weight.T`` without forming ``y``.

    ``mean_y = W mean_x`` and ``E[y²] = diag(W G Wᵀ)`` with the Gram matrix ``G = xᵀx / N``: one small
    matrix product instead of passes over ``y``. This is how the fused cell folds its batch norms into
    the linear maps that follow them (statistics as ``nn.BatchNorm2d`` in training mode).

    Args:
        x: (N, C_in) pixel rows.
        weight: (C_out, C_in), or None for ``y = x``.

    Returns:
        (mean (C_out,), variance (C_out,)).
    """
    mean, gram = _Moments.apply(x)  # (C_in,), (C_in, C_in)
    if weight is None:
        return mean, (gram.diagonal() - mean * mean).clamp_min(0)
    mean_y = weight @ mean
    return mean_y, (((weight @ gram) * weight).sum(1) - mean_y * mean_y).clamp_min(0)


def batch_norm_affine(x: torch.Tensor, weight: torch.Tensor | None, running_mean: torch.Tensor,
                      running_var: torch.Tensor, index: torch.Tensor | None,
                      training: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch norm without affine parameters on ``y = x @ weight.T``, as ``BN(y) = scale·y + shift``.

    In training mode the statistics are the batch's (:func:`batch_moments`) and the running statistics
    are updated as ``nn.BatchNorm2d`` does (momentum 0.1, unbiased variance); in eval mode the running
    statistics are used.

    Args:
        x: (N, C_in) rows are pixels.
        weight: (C_out, C_in) or None (``y = x``).
        running_mean: running means; ``running_mean.view(-1)[index]`` are this BN's (all if ``index`` is None).
        running_var: running variances, same layout.
        index: (C_out,) positions in the flattened running buffers, or None.
        training: batch statistics (and update) or running statistics.

    Returns:
        (scale (C_out,), shift (C_out,)).
    """
    flat_mean, flat_var = running_mean.view(-1), running_var.view(-1)
    if training:
        mean, var = batch_moments(x, weight)
        with torch.no_grad():
            num = x.shape[0]
            old_mean = flat_mean if index is None else flat_mean[index]
            old_var = flat_var if index is None else flat_var[index]
            new_mean = (1 - BN_MOMENTUM) * old_mean + BN_MOMENTUM * mean
            new_var = (1 - BN_MOMENTUM) * old_var + BN_MOMENTUM * var * (num / max(num - 1, 1))
            if index is None:
                flat_mean.copy_(new_mean)
                flat_var.copy_(new_var)
            else:
                flat_mean.index_copy_(0, index, new_mean)
                flat_var.index_copy_(0, index, new_var)
    else:
        mean = flat_mean if index is None else flat_mean[index]
        var = flat_var if index is None else flat_var[index]
    scale = torch.rsqrt(var + BN_EPS)
    return scale, -mean * scale


def input_mask(in_channels: int, decoder_channels: int, channels: int) -> torch.Tensor:
    """(2C, C_in + C_dec) mask of the preprocessing conv: all ones without a decoder input; with one,
    block-diagonal, so that ``s0`` (rows ``[:C]``) reads the skip and ``s1`` (rows ``[C:]``) the decoder."""
    mask = torch.ones(2 * channels, in_channels + decoder_channels)
    if decoder_channels:
        mask[:channels, in_channels:] = 0
        mask[channels:, :in_channels] = 0
    return mask


def with_decoder(x: torch.Tensor, decoder: torch.Tensor | None, decoder_channels: int) -> torch.Tensor:
    """The cell's input: the skip, or skip and decoder feature concatenated (B, C_in + C_dec, H, W)."""
    if not decoder_channels:
        if decoder is not None:
            raise ValueError("a decoder feature was given to a cell built without decoder channels")
        return x
    if decoder is None or decoder.shape[1] != decoder_channels or decoder.shape[2:] != x.shape[2:]:
        got = None if decoder is None else tuple(decoder.shape)
        raise ValueError(f"decoder feature {got}; expected (B, {decoder_channels}, {x.shape[2]}, {x.shape[3]})")
    return torch.cat([x, decoder], dim=1)


def init_uniform_(tensor: torch.Tensor, fan_in: int, generator: torch.Generator | None) -> None:
    """PyTorch's default conv init, U(−1/√fan_in, 1/√fan_in), drawn from ``generator``."""
    bound = 1.0 / fan_in ** 0.5
    with torch.no_grad():
        tensor.uniform_(-bound, bound, generator=generator)
