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

from shapnas.networks.row_kernels import (
    avg_pool3,
    max_pool3,
    rows_depthwise,
    rows_linear,
    rows_moments,
    use_row_kernels,
)

__all__ = [
    "PRIMITIVES", "OPS", "PARAMETRIC", "POOLS", "ReLUConvBN", "SepConv", "DilConv", "Zero", "Identity",
    "search_op", "linear_rows", "depthwise_rows", "pool_rows", "batch_moments", "batch_norm_affine",
    "BN_MOMENTUM", "BN_EPS", "input_mask", "with_decoder", "init_uniform_", "RunningStats",
    "folded_batch_norm",
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
    depthwise = groups == x.shape[1] and weight.shape[1] == 1
    library_fast = weight.shape[0] == groups and dilation == 1 and weight.shape[-1] == 3  # oneDNN's 3×3 backward
    if depthwise and not library_fast and use_row_kernels(x, spatial):
        return rows_depthwise(x, weight, spatial, dilation)  # oneDNN's backward is slow for these
    padding = dilation * (weight.shape[-1] - 1) // 2
    image = x.reshape(*spatial, x.shape[1]).permute(0, 3, 1, 2)  # (B, C_in, H, W), channels-last strides
    y = F.conv2d(image, weight, padding=padding, dilation=dilation, groups=groups)
    return y.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


def linear_rows(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                spatial: tuple[int, int, int] | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` on pixel rows (N, C_in) -> (N, C_out).

    With ``spatial`` (B, H, W), large float32 rows on CPU go through oneDNN's 1×1 convolution
    (:func:`shapnas.networks.row_kernels.rows_linear`, 2–4× faster than MKL on skinny rows); otherwise ``mm``.
    The bias is added in place, several times faster on CPU than ``addmm`` with a broadcast bias.

    Args:
        x: (N, C_in) rows (any row stride).
        weight: (C_out, C_in).
        bias: (C_out,) or None.
        spatial: (B, H, W) of the rows, or None.

    Returns:
        (N, C_out).
    """
    if use_row_kernels(x, spatial):
        return rows_linear(x, weight, spatial, bias)  # the bias inside the convolution
    y = x @ weight.t()
    return y if bias is None else y.add_(bias)


def pool_rows(x: torch.Tensor, spatial: tuple[int, int, int], name: str) -> torch.Tensor:
    """``max_pool_3x3`` or ``avg_pool_3x3`` (stride 1, as PC-DARTS) of pixel rows (N, C) -> (N, C).

    The average pool is always the separable window sum (:func:`shapnas.networks.row_kernels.avg_pool3`), so
    its values do not depend on whether gradients are taken; the max pool is the separable one (the same
    values as ``F.max_pool2d``) without gradients and where the CPU row kernels apply
    (:func:`shapnas.networks.row_kernels.use_row_kernels`), ``F.max_pool2d`` otherwise. 1-pixel-wide maps
    use the library pools.
    """
    image = x.reshape(*spatial, x.shape[1]).permute(0, 3, 1, 2)
    if x.shape[1] < _POOL_NCHW_BELOW:
        image = image.contiguous()
    separable = min(spatial[1:]) > 1
    if name == "max_pool_3x3":
        fast = separable and (not (torch.is_grad_enabled() and x.requires_grad) or use_row_kernels(x, spatial))
        image = max_pool3(image) if fast else F.max_pool2d(image, 3, stride=1, padding=1)
    else:
        image = avg_pool3(image) if separable else \
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


def batch_moments(x: torch.Tensor, weight: torch.Tensor | None = None,
                  spatial: tuple[int, int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch mean and (biased) variance per channel of ``y = x @ weight.T`` without forming ``y``.

    ``mean_y = W mean_x`` and ``E[y²] = diag(W G Wᵀ)`` with the Gram matrix ``G = xᵀx / N``: one small
    matrix product instead of passes over ``y``. This is how the fused cell folds its batch norms into
    the linear maps that follow them (statistics as ``nn.BatchNorm2d`` in training mode).

    Args:
        x: (N, C_in) pixel rows.
        weight: (C_out, C_in), or None for ``y = x``.
        spatial: (B, H, W) of the rows, or None; with it, large rows on CPU use oneDNN
            (:func:`shapnas.networks.row_kernels.rows_moments`).

    Returns:
        (mean (C_out,), variance (C_out,)).
    """
    mean, gram = rows_moments(x, spatial) if use_row_kernels(x, spatial) else _Moments.apply(x)  # (C_in,), (C_in, C_in)
    if weight is None:
        return mean, (gram.diagonal() - mean * mean).clamp_min(0)
    mean_y = weight @ mean
    return mean_y, (((weight @ gram) * weight).sum(1) - mean_y * mean_y).clamp_min(0)


class RunningStats:
    """Running-statistics updates of several batch norms, collected during a forward pass and applied together.

    Each buffer gets one ``index``/``index_copy_`` pair for all the batch norms that write to it, instead of
    one per batch norm; the values are those of the separate updates (the same elementwise formula), as long
    as no buffer position is written twice (true within one fused cell).
    """

    def __init__(self) -> None:
        self._pending: dict[int, tuple[torch.Tensor, torch.Tensor, int, list]] = {}

    def add(self, running_mean: torch.Tensor, running_var: torch.Tensor, index: torch.Tensor | None,
            mean: torch.Tensor, var: torch.Tensor, num: int) -> None:
        """Queue ``running ← (1 − m)·running + m·batch`` at ``index`` of the flattened buffers (all if None).

        Args:
            running_mean: running means (any shape; its flattened positions are indexed).
            running_var: running variances, same layout.
            index: (C,) positions, or None for the whole buffer.
            mean: (C,) batch means. var: (C,) biased batch variances.
            num: rows the statistics were taken on (for the unbiased variance).
        """
        flat_mean, flat_var = running_mean.view(-1), running_var.view(-1)
        if index is None:
            index = torch.arange(flat_mean.numel(), device=flat_mean.device)
        key = flat_mean.data_ptr()
        if key in self._pending and self._pending[key][2] != num:
            self.apply()  # one unbiasing factor per buffer and batch
        entry = self._pending.setdefault(key, (flat_mean, flat_var, num, []))
        entry[3].append((index, mean.detach(), var.detach()))

    @torch.no_grad()
    def apply(self) -> None:
        """Apply the queued updates (nn.BatchNorm2d's momentum and unbiased variance) and forget them."""
        for flat_mean, flat_var, num, items in self._pending.values():
            index, mean, var = (torch.cat(parts) for parts in zip(*items))
            new_mean = (1 - BN_MOMENTUM) * flat_mean[index] + BN_MOMENTUM * mean
            new_var = (1 - BN_MOMENTUM) * flat_var[index] + BN_MOMENTUM * var * (num / max(num - 1, 1))
            flat_mean.index_copy_(0, index, new_mean)
            flat_var.index_copy_(0, index, new_var)
        self._pending.clear()


def batch_norm_affine(x: torch.Tensor, weight: torch.Tensor | None, running_mean: torch.Tensor,
                      running_var: torch.Tensor, index: torch.Tensor | None,
                      training: bool, spatial: tuple[int, int, int] | None = None,
                      stats: RunningStats | None = None) -> tuple[torch.Tensor, torch.Tensor]:
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
        spatial: (B, H, W) of the rows, or None (see :func:`batch_moments`).
        stats: collects the running-statistics update instead of applying it now (the caller applies it).

    Returns:
        (scale (C_out,), shift (C_out,)).
    """
    flat_mean, flat_var = running_mean.view(-1), running_var.view(-1)
    if training and stats is not None:
        mean, var = batch_moments(x, weight, spatial)
        stats.add(running_mean, running_var, index, mean, var, x.shape[0])
    elif training:
        mean, var = batch_moments(x, weight, spatial)
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


def _moments(x: torch.Tensor, spatial: tuple[int, int, int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (C,) and Gram matrix / N (C, C) of rows (N, C), no autograd (oneDNN for large CPU rows)."""
    if use_row_kernels(x, spatial):
        return rows_moments(x, spatial)
    num = x.shape[0]
    return x.sum(0) / num, x.t() @ x / num


def _moments_input_grad(x: torch.Tensor, spatial: tuple[int, int, int] | None, grad_mean: torch.Tensor,
                        grad_gram: torch.Tensor) -> torch.Tensor:
    """The gradient (N, C) of rows x reaching them through their mean and Gram matrix / N."""
    num = x.shape[0]
    symmetric, row = (grad_gram + grad_gram.t()) / num, grad_mean / num  # (C, C), (C,)
    if use_row_kernels(x, spatial):
        return linear_rows(x, symmetric, row, spatial)
    return (x @ symmetric).add_(row)


class _FoldedBatchNorm(torch.autograd.Function):
    """A training-mode batch norm (no affine) on ``y = x @ W.T`` folded into ``(s·W, −s·E[y])``, as one node.

    Forward: ``μ = W·mean(x)``, ``E[y²] = diag(W G Wᵀ)`` with ``G = xᵀx / N``, ``v = max(E[y²] − μ², 0)``,
    ``s = (v + ε)^−½``; outputs ``A = s[:, None]·W`` (or ``s`` when W is None: ``y = x``), ``b = −μ·s`` and the
    detached (μ, v) for the running statistics. Backward: the chain rule through those formulas, written
    out (a few small matrix products and one pass over the rows), instead of one autograd node per operation.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor | None,
                spatial: tuple[int, int, int] | None):
        mean, gram = _moments(x, spatial)  # (C,), (C, C)
        if weight is None:
            mu, second = mean, gram.diagonal()
        else:
            mu, second = weight @ mean, ((weight @ gram) * weight).sum(1)  # (M,), (M,)
        raw = second - mu * mu
        var = raw.clamp_min(0)
        scale = torch.rsqrt(var + BN_EPS)
        folded = scale if weight is None else scale[:, None] * weight
        ctx.save_for_backward(x, weight, mean, gram, mu, raw, scale)
        ctx.spatial = spatial
        ctx.mark_non_differentiable(mu, var)
        return folded, -mu * scale, mu, var

    @staticmethod
    def backward(ctx, grad_folded: torch.Tensor, grad_shift: torch.Tensor, _mu: torch.Tensor,
                 _var: torch.Tensor):
        x, weight, mean, gram, mu, raw, scale = ctx.saved_tensors
        grad_scale = (grad_folded if weight is None else (grad_folded * weight).sum(1)) - grad_shift * mu  # (M,)
        grad_var = torch.where(raw >= 0, grad_scale * -0.5 * scale ** 3, 0.0)  # through rsqrt and clamp_min
        grad_mu = -grad_shift * scale - 2 * mu * grad_var
        grad_weight = None
        if weight is None:
            grad_mean, grad_gram = grad_mu, torch.diag(grad_var)
        else:
            grad_mean = weight.t() @ grad_mu  # (C,)
            grad_gram = weight.t() @ (grad_var[:, None] * weight)  # (C, C)
            if ctx.needs_input_grad[1]:
                grad_weight = (scale[:, None] * grad_folded + grad_var[:, None] * (weight @ (gram + gram.t()))
                               + grad_mu[:, None] * mean[None, :])
        grad_x = _moments_input_grad(x, ctx.spatial, grad_mean, grad_gram) if ctx.needs_input_grad[0] else None
        return grad_x, grad_weight, None


def folded_batch_norm(x: torch.Tensor, weight: torch.Tensor | None, running_mean: torch.Tensor,
                      running_var: torch.Tensor, index: torch.Tensor | None, training: bool,
                      spatial: tuple[int, int, int] | None = None,
                      stats: RunningStats | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`batch_norm_affine` with the scale folded into the weight: ``BN(x @ W.T) = x @ A.T + shift``.

    The same values as ``batch_norm_affine`` followed by ``scale[:, None] * weight`` (up to float round-off);
    in training mode the whole folding is one autograd node (:class:`_FoldedBatchNorm`).

    Args:
        x: (N, C_in) pixel rows.
        weight: (C_out, C_in), or None (``y = x``; then A is the per-channel scale).
        running_mean: running means; ``running_mean.view(-1)[index]`` are this BN's (all if ``index`` is None).
        running_var: running variances, same layout.
        index: (C_out,) positions in the flattened running buffers, or None.
        training: batch statistics (and their running update) or running statistics.
        spatial: (B, H, W) of the rows, or None (large CPU rows then use oneDNN).
        stats: collects the running-statistics update (applied by the caller); None updates at once.

    Returns:
        (A (C_out, C_in), or the scale (C_out,) when ``weight`` is None; shift (C_out,)).
    """
    if not training:
        scale, shift = batch_norm_affine(x, weight, running_mean, running_var, index, False)
        return (scale if weight is None else scale[:, None] * weight), shift
    folded, shift, mean, var = _FoldedBatchNorm.apply(x, weight, spatial)
    updates = stats if stats is not None else RunningStats()
    updates.add(running_mean, running_var, index, mean, var, x.shape[0])
    if stats is None:
        updates.apply()
    return folded, shift


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
