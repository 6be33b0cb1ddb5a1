"""Implantable cells: the PC-DARTS search cell (partial channels, edge normalisation) and the discrete cell.

``MixedOp`` is the per-edge PC-DARTS mixed op (Xu et al., ICLR 2020, ``model_search.py``), kept as the
readable reference. ``SearchCell`` computes the same function (tested against it) batched by source state,
with the batch norms folded into matrix products (``FusedEdges``): a training step of a naive supernet
costs 16–19 backbone steps on CPU (``stack.md`` §8), this one about 6–8 (``benchmarks/cell_cost.py``).
Inactive ops are never computed.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shapnas.genotype import Genotype, edge_list, num_edges
from shapnas.ops import (OPS, PARAMETRIC, POOLS, PRIMITIVES, ReLUConvBN, batch_norm_affine, depthwise_rows,
                         input_mask, linear_rows, pool_rows, search_op, with_decoder)

__all__ = ["channel_shuffle", "MixedOp", "FusedEdges", "SearchCell", "DiscreteCell", "init_uniform_"]

_SKIP = PRIMITIVES.index("skip_connect")
_MAX_PLANS = 64


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle (PC-DARTS ``channel_shuffle``): (B, C, H, W) -> (B, C, H, W).

    Channel ``g·(C/groups) + j`` moves to position ``j·groups + g``.
    """
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width).transpose(1, 2)
    return x.reshape(batch, channels, height, width)


def init_uniform_(tensor: torch.Tensor, fan_in: int, generator: torch.Generator | None) -> None:
    """PyTorch's default conv init, U(−1/√fan_in, 1/√fan_in), drawn from ``generator``."""
    bound = 1.0 / fan_in ** 0.5
    with torch.no_grad():
        tensor.uniform_(-bound, bound, generator=generator)


class MixedOp(nn.Module):
    """PC-DARTS partial-channel mixed op of one edge (reference implementation).

    The first ``channels // k`` channels go through the weighted sum of the ops, the others bypass it;
    the two parts are concatenated and channel-shuffled with ``k`` groups. With ``k = 1`` this is the
    DARTS mixed op.

    Args:
        channels: C, divisible by ``k``.
        k: K, the partial-channel ratio.
    """

    def __init__(self, channels: int, k: int) -> None:
        super().__init__()
        if channels % k:
            raise ValueError(f"MixedOp: channels={channels} not divisible by k={k}")
        self.k = k
        self.ops = nn.ModuleList(search_op(name, channels // k) for name in PRIMITIVES)

    def forward(self, x: torch.Tensor, op_weights: torch.Tensor, active_ops: Sequence[int]) -> torch.Tensor:
        """Mixed op on ``x`` (B, C, H, W).

        Args:
            x: input (B, C, H, W).
            op_weights: (P,) mixing weights.
            active_ops: indices of the ops to compute (never ``none``, index 0, which adds zero);
                ops not listed are not executed.

        Returns:
            (B, C, H, W).
        """
        part = x.shape[1] // self.k
        x1, x2 = x[:, :part], x[:, part:]  # (B, C/K, H, W), (B, C - C/K, H, W)
        mixed = torch.zeros_like(x1)
        for op in active_ops:
            if op == 0:
                raise ValueError("MixedOp: 'none' (index 0) is never computed; leave it out of active_ops")
            mixed = mixed + op_weights[op] * self.ops[op](x1)
        return channel_shuffle(torch.cat([mixed, x2], dim=1), self.k)


class _TypePlan(NamedTuple):
    name: str  # parametric op
    on: torch.Tensor  # (n,) edges computing it, in order j
    stats: torch.Tensor  # (C/K·n,) positions (edge·C/K + o) of channel (o, j) in the BN buffers
    eye: torch.Tensor  # (n, n)


class _SourcePlan(NamedTuple):
    src: int  # 0 (s0), 1 (s1) or j + 2 (node j)
    pools: list[str]  # active pools on its computed outgoing edges
    types: list[_TypePlan]  # active parametric op types on them


class _GroupPlan(NamedTuple):
    sources: list[_SourcePlan]  # (s0, s1) for group 0, node g-1 for group g
    edges: list[int]  # computed edges leaving them; edge t owns rows t·C .. t·C + C - 1 of the coefficients
    shape: tuple[int, int]  # coefficients (len(edges)·C, feature columns)
    flat: torch.Tensor  # flat positions of the non-zero coefficients
    index: torch.Tensor  # their source in [op_weights·edge_weights (E·P), edge_weights (E)]


class _Plan(NamedTuple):
    groups: list[_GroupPlan]
    links_flat: torch.Tensor  # non-zeros of the (E, C, C) identity/bypass maps
    links_index: torch.Tensor


def _shuffled(channels: int, k: int) -> np.ndarray:
    """Destination of channel q under ``channel_shuffle(·, k)``: ``(q mod C/K)·K + q div C/K``."""
    q = np.arange(channels)
    return (q % (channels // k)) * k + q // (channels // k)


def _build_plan(eff: np.ndarray, edge_on: np.ndarray, channels: int, k: int, num_nodes: int,
                device: torch.device) -> _Plan:
    """Index bookkeeping for one pattern of computed ops (``eff`` (E, P) bool) and edges (``edge_on``).

    The features of a group stack, per source, each active pool of its C/K slice and, per active
    parametric type, the depthwise outputs of its n active edges before their last pointwise conv
    (C/K·n columns, channel (o, j) at ``o·n + j``). Coefficient row ``t·C + r`` is channel r of edge t's
    mixed op (weighted, shuffled); the identity (``skip_connect``) and bypass parts of each mixed op are
    the (C, C) "links" maps.
    """
    part, num_ops, edges = channels // k, len(PRIMITIVES), edge_list(num_nodes)
    shuffled, q = _shuffled(channels, k), np.arange(channels)
    flat, index = [], []
    for e in np.flatnonzero(edge_on):
        keep = (q >= part) | bool(eff[e, _SKIP])  # identity on x1 needs skip_connect; bypass always
        flat.append(e * channels * channels + shuffled[keep] * channels + q[keep])
        index.append(np.where(q[keep] >= part, len(edges) * num_ops + e, e * num_ops + _SKIP))
    groups = []
    for group in range(num_nodes):
        srcs = [0, 1] if group == 0 else [group + 1]
        out = [e for src in srcs for e, (_, s) in enumerate(edges) if s == src and edge_on[e]]
        target = {e: t for t, e in enumerate(out)}
        rows, cols, values, col, sources = [], [], [], 0, []
        for src in srcs:
            mine = [e for e in out if edges[e][1] == src]
            pools = [name for name in POOLS if eff[mine, PRIMITIVES.index(name)].any()]
            for name in pools:
                op = PRIMITIVES.index(name)
                for e in (e for e in mine if eff[e, op]):
                    rows.append(target[e] * channels + shuffled[:part])
                    cols.append(col + np.arange(part))
                    values.append(np.full(part, e * num_ops + op))
                col += part
            types = []
            for name in PARAMETRIC:
                op = PRIMITIVES.index(name)
                on = [e for e in mine if eff[e, op]]
                if not on:
                    continue
                n, o = len(on), np.arange(part)
                for j, e in enumerate(on):
                    rows.append(target[e] * channels + shuffled[o])
                    cols.append(col + o * n + j)
                    values.append(np.full(part, e * num_ops + op))
                col += part * n
                stats = (np.asarray(on)[None, :] * part + o[:, None]).reshape(-1)  # channel (o, j)
                types.append(_TypePlan(name, torch.tensor(on, device=device), torch.from_numpy(stats).to(device),
                                       torch.eye(n, device=device)))
            sources.append(_SourcePlan(src, pools, types))
        positions = (np.concatenate(rows) * col + np.concatenate(cols)) if rows else np.zeros(0, dtype=np.int64)
        groups.append(_GroupPlan(sources, out, (len(out) * channels, col), torch.from_numpy(positions).to(device),
                                 torch.from_numpy(np.concatenate(values) if values else positions).to(device)))
    links = (np.concatenate(flat), np.concatenate(index)) if flat else (np.zeros(0, np.int64),) * 2
    return _Plan(groups, torch.from_numpy(links[0]).to(device), torch.from_numpy(links[1]).to(device))


def _block_diagonal(weight: torch.Tensor, eye: torch.Tensor) -> torch.Tensor:
    """(n, c_out, c_in) per-edge 1×1 weights -> (c_out·n, c_in·n), rows (o, j), columns (i, j)."""
    n, c_out, c_in = weight.shape
    return torch.einsum("poi,pq->oqip", weight, eye).reshape(c_out * n, c_in * n)


class FusedEdges(nn.Module):
    """All mixed ops of a search cell, batched; the same function as per-edge PC-DARTS MixedOps.

    Works on pixel rows (N = B·H·W, channels). Nonlinear work runs once per source state: its pools and,
    per parametric op type, one depthwise convolution (channel multiplier n) for all n active edges
    leaving the state. Everything else in the cell is linear: the pointwise convs after BN folding
    (statistics from Gram matrices, :func:`batch_moments`), the weighted sums over ops and edges,
    channel shuffles, bypass and identity channels, the node sums, the 1×1 preprocessing and projection.
    These compose into small matrices, so per group of sources one matrix product adds its features'
    contribution to the only tensors still needed: the C/K-channel slices of later nodes (inputs of
    their ops) and the cell output. No C-channel node is ever materialised.

    Parameters per parametric type (stacked over edges): ``dw1[name]`` (E, C/K, k, k), ``pw1[name]``
    (E, C/K, C/K) as (out, in), and for ``sep_conv_*`` the second pair ``dw2``, ``pw2``. BN statistics
    are buffers ``bn1_mean_<name>`` (E, C/K) etc. A pool's BN sees the same input, hence the same batch
    statistics, on every edge leaving a state, so its running statistics are kept once per (source,
    pool): ``pool_mean`` (S, 2, C/K); they equal PC-DARTS's per-edge ones as long as all active ops run
    in each training step.

    Args:
        channels: C. k: K. num_nodes: intermediate nodes.
    """

    def __init__(self, channels: int, k: int, num_nodes: int) -> None:
        super().__init__()
        self.channels, self.k, self.num_nodes, self.part = channels, k, num_nodes, channels // k
        num, part = num_edges(num_nodes), channels // k
        self.dw1, self.pw1 = nn.ParameterDict(), nn.ParameterDict()
        self.dw2, self.pw2 = nn.ParameterDict(), nn.ParameterDict()
        for name, (size, _, repeats) in PARAMETRIC.items():
            for dw, pw, stage in self._stages()[:repeats]:
                dw[name] = nn.Parameter(torch.empty(num, part, size, size))
                pw[name] = nn.Parameter(torch.empty(num, part, part))
                self.register_buffer(f"{stage}_mean_{name}", torch.zeros(num, part))
                self.register_buffer(f"{stage}_var_{name}", torch.ones(num, part))
        self.register_buffer("pool_mean", torch.zeros(num_nodes + 1, len(POOLS), part))
        self.register_buffer("pool_var", torch.ones(num_nodes + 1, len(POOLS), part))
        self._incoming = [[(e, s) for e, (n, s) in enumerate(edge_list(num_nodes)) if n == node]
                          for node in range(num_nodes)]  # sorted by source
        self._plans: dict[tuple, _Plan] = {}

    def _stages(self) -> list[tuple[nn.ParameterDict, nn.ParameterDict, str]]:
        return [(self.dw1, self.pw1, "bn1"), (self.dw2, self.pw2, "bn2")]

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """PyTorch's default conv init of every depthwise and pointwise weight, drawn from ``generator``."""
        for params in (self.dw1, self.dw2):
            for weight in params.values():
                init_uniform_(weight, weight.shape[-1] * weight.shape[-2], generator)
        for params in (self.pw1, self.pw2):
            for weight in params.values():
                init_uniform_(weight, self.part, generator)

    def _plan(self, eff: torch.Tensor, edge_on: torch.Tensor, device: torch.device) -> _Plan:
        eff_np, on_np = eff.cpu().numpy(), edge_on.cpu().numpy()
        key = (eff_np.tobytes(), on_np.tobytes(), str(device))
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= _MAX_PLANS:
                self._plans.pop(next(iter(self._plans)))
            plan = _build_plan(eff_np, on_np, self.channels, self.k, self.num_nodes, device)
            self._plans[key] = plan
        return plan

    def forward(self, rows: torch.Tensor, spatial: tuple[int, int, int], pre_weight: torch.Tensor,
                pre_shift: torch.Tensor, project_weight: torch.Tensor, project_bias: torch.Tensor,
                op_weights: torch.Tensor, edge_weights: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """The cell output from its ReLU'd input rows.

        Args:
            rows: ReLU of the skip as pixel rows (N, C_in); ``spatial`` = (B, H, W), N = B·H·W.
            pre_weight: (2C, C_in) preprocessing conv with its BN folded in; ``pre_shift`` (2C,):
                ``s0`` is rows ``[:C]``, ``s1`` rows ``[C:]``.
            project_weight: (C_in, num_nodes·C) output projection; ``project_bias`` (C_in,).
            op_weights: (E, P). edge_weights: (E,). active: (E, P) bool, ops that may be computed.

        Returns:
            (N, C_in).
        """
        channels, part, nodes = self.channels, self.part, self.num_nodes
        eff = active.clone()
        eff[:, 0] = False  # 'none' adds zero: never computed
        edge_on = torch.ones_like(edge_weights, dtype=torch.bool)
        if not torch.is_grad_enabled():  # nothing to differentiate: skip zero-weight ops and edges
            eff &= op_weights != 0
            edge_on = edge_weights != 0
        plan = self._plan(eff, edge_on, rows.device)
        values = torch.cat([(op_weights * edge_weights[:, None]).flatten(), edge_weights])  # (E·P + E,)
        links = values.new_zeros(len(edge_weights) * channels * channels)
        links = links.index_put((plan.links_flat,), values[plan.links_index]).view(-1, channels, channels)
        links = [links[[e for e, _ in incoming]] for incoming in self._incoming]  # per node (m, C, C)
        project = project_weight.view(-1, nodes, channels).transpose(0, 1)  # (nodes, C_in, C)
        slices = torch.cat([pre_weight[:part], pre_weight[channels:channels + part]])  # x1 of s0, s1
        x1 = linear_rows(rows, slices, torch.cat([pre_shift[:part], pre_shift[channels:channels + part]]))
        inputs = {0: x1[:, :part], 1: x1[:, part:]}  # (N, C/K) slices entering each source's ops
        out = None  # (N, C/K·(nodes to come) + C_in): their slices and the output, accumulated
        for group, gplan in enumerate(plan.groups):
            if group:
                inputs[group + 1], out = out[:, :part], out[:, part:]
            pieces, maps = [], []
            for source in gplan.sources:
                self._features(inputs[source.src], source, spatial, pieces, maps)
            if not pieces and group:
                continue
            direct = self._direct(gplan, values, pieces, maps)  # edge -> (C, features + 1)
            base = {}
            if group == 0:  # the input rows enter through the preprocessing
                width = gplan.shape[1]
                for src in (0, 1):
                    block = slice(src * channels, (src + 1) * channels)
                    base[src] = torch.cat([pre_weight[block], pre_weight.new_zeros(channels, width),
                                           pre_shift[block, None]], dim=1)
                direct = {e: F.pad(d, (rows.shape[1], 0)) for e, d in direct.items()}
                pieces.insert(0, rows)
            columns = sum(piece.shape[1] for piece in pieces) + 1
            composed = self._propagate(links, base, direct, group, columns)  # node -> (C, columns + 1)
            output = sum(project[j] @ composed[j] for j in composed)  # (C_in, columns + 1)
            if group == 0:
                output = torch.cat([output[:, :-1], (output[:, -1] + project_bias)[:, None]], dim=1)
            mixing = torch.cat([composed[j][:part] for j in range(group, nodes - 1)] + [output])
            contribution = linear_rows(torch.cat(pieces, dim=1), mixing[:, :-1], mixing[:, -1])
            out = contribution if out is None else contribution.add_(out)
        return out

    def _propagate(self, links: list[torch.Tensor], base: dict[int, torch.Tensor], direct: dict[int, torch.Tensor],
                   start: int, columns: int) -> dict[int, torch.Tensor]:
        """Linear maps from one group's columns to every node from ``start`` on.

        ``node_j = Σ_{e=(src→j)} links_e · state_src + direct_e``, where the states of s0, s1 are ``base``
        (if given) and those of earlier nodes are the maps just computed.
        """
        known, composed = dict(base), {}
        for node in range(start, self.num_nodes):
            incoming = self._incoming[node]
            first = 0 if base else start + 2  # incoming[i] comes from source i
            terms = [direct[e] for e, _ in incoming if e in direct]
            if first < len(incoming):
                stacked = torch.stack([known[s] for _, s in incoming[first:]])  # (m, C, columns + 1)
                terms.append(torch.bmm(links[node][first:], stacked).sum(0))
            total = terms[0] if terms else links[node].new_zeros(self.channels, columns)
            for term in terms[1:]:
                total = total + term
            composed[node] = known[node + 2] = total
        return composed

    def _direct(self, plan: _GroupPlan, values: torch.Tensor, pieces: list[torch.Tensor],
                maps: list) -> dict[int, torch.Tensor]:
        """Per computed edge of the group: the (C, features + 1) map from the group's raw features (and a
        constant) to its weighted, shuffled op outputs (BNs and last pointwise convs folded in)."""
        channels = self.channels
        rows = plan.shape[0]
        if not pieces:
            return {e: values.new_zeros(channels, 1) for e in plan.edges}
        coefficients = values.new_zeros(rows * plan.shape[1])
        coefficients = coefficients.index_put((plan.flat,), values[plan.index]).view(plan.shape)
        blocks, bias, col = [], 0, 0
        for piece, (weight, shift) in zip(pieces, maps):
            block = coefficients[:, col:col + piece.shape[1]]
            col += piece.shape[1]
            blocks.append(block * weight if weight.dim() == 1 else block @ weight)
            bias = bias + block @ shift
        folded = torch.cat(blocks + [bias[:, None]], dim=1)  # (edges·C, features + 1)
        return {e: folded[t * channels:(t + 1) * channels] for t, e in enumerate(plan.edges)}

    def _features(self, x1: torch.Tensor, source: _SourcePlan, spatial: tuple[int, int, int],
                  pieces: list[torch.Tensor], maps: list) -> None:
        """Append the raw features of one source, computed from its C/K-channel slice ``x1`` (N, C/K), each
        with the map (A, shift) that turns it into op outputs ``piece @ A.T + shift`` (A 1-D: a scale)."""
        for name in source.pools:
            pooled = pool_rows(x1, spatial, name)
            slot = POOLS.index(name)
            scale, shift = batch_norm_affine(pooled, None, self.pool_mean[source.src, slot],
                                             self.pool_var[source.src, slot], None, self.training)
            pieces.append(pooled)
            maps.append((scale, shift))
        if source.types:
            relu_x1 = F.relu(x1)
            for plan in source.types:
                pre, weight, shift = self._param_op(relu_x1, spatial, plan)
                pieces.append(pre)
                maps.append((weight, shift))

    def _param_op(self, relu_x1: torch.Tensor, spatial: tuple[int, int, int],
                  plan: _TypePlan) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One op type on its n edges: (N, c) -> (pre (N, c·n), A, shift), op outputs ``pre @ A.T + shift``."""
        size, dilation, repeats = PARAMETRIC[plan.name]
        part, n = self.part, len(plan.on)
        pre, groups = relu_x1, part  # first depthwise conv: channel multiplier n, output channel (ch, j)
        for i, (dw, pw, stage) in enumerate(self._stages()[:repeats]):
            if i:  # BN(pw1) feeds a ReLU: materialise it; the second depthwise conv is plain, channel (o, j)
                pre, groups = F.relu(linear_rows(pre, weight, shift)), part * n
            kernel = dw[plan.name].index_select(0, plan.on).transpose(0, 1).reshape(part * n, 1, size, size)
            pre = depthwise_rows(pre, spatial, kernel, dilation if i == 0 else 1, groups)  # (N, c·n)
            weight = _block_diagonal(pw[plan.name].index_select(0, plan.on), plan.eye)
            scale, shift = batch_norm_affine(pre, weight, getattr(self, f"{stage}_mean_{plan.name}"),
                                             getattr(self, f"{stage}_var_{plan.name}"), plan.stats, self.training)
            weight = scale[:, None] * weight
        return pre, weight, shift

    def mixed_op(self, edge: int) -> MixedOp:
        """A :class:`MixedOp` holding a copy of edge ``edge``'s weights and BN statistics."""
        op = MixedOp(self.channels, self.k).to(self.pool_mean.device)
        src = edge_list(self.num_nodes)[edge][1]
        with torch.no_grad():
            for slot, name in enumerate(POOLS):
                bn = op.ops[PRIMITIVES.index(name)][1]
                bn.running_mean.copy_(self.pool_mean[src, slot])
                bn.running_var.copy_(self.pool_var[src, slot])
            for name, (_, _, repeats) in PARAMETRIC.items():
                module = op.ops[PRIMITIVES.index(name)].op
                blocks = [module] if repeats == 1 else [module[0], module[1]]
                for block, (dw, pw, stage) in zip(blocks, self._stages()):
                    block[1].weight.copy_(dw[name][edge].unsqueeze(1))
                    block[2].weight.copy_(pw[name][edge][:, :, None, None])
                    block[3].running_mean.copy_(getattr(self, f"{stage}_mean_{name}")[edge])
                    block[3].running_var.copy_(getattr(self, f"{stage}_var_{name}")[edge])
        return op.train(self.training)


class SearchCell(nn.Module):
    """PC-DARTS search cell implanted on a skip: 2 input states, ``num_nodes`` nodes, 14 edges for 4.

    ``s0 = pre0(e)`` and ``s1 = pre1(e)`` are two ReLU-Conv1×1-BN of the skip ``e`` (one conv with 2C
    outputs; a reconstruction that keeps the DARTS layout, see :mod:`shapnas.genotype`), or, with
    ``decoder_channels``, ``s1 = pre1(d)`` of the decoder feature ``d`` at the skip's level (the conv's
    weight is masked block-diagonal, so ``s0`` sees only the skip and ``s1`` only the decoder); node ``i``
    sums ``edge_weights[e] · mixed_e(state)`` over its ``2 + i`` inputs; the output is a 1×1 conv of the
    concatenated nodes back to the skip's channels. Computed by :class:`FusedEdges`; ``mixed_op(e)``
    exports edge ``e`` as a reference :class:`MixedOp`.

    Args:
        in_channels: the skip's channels.
        channels: C, the cell width, divisible by ``k``.
        k: K, partial-channel ratio (PC-DARTS: 4).
        num_nodes: intermediate nodes. Defaults to 4.
        generator: draws the initial weights (PyTorch's default init); None uses the global RNG.
        decoder_channels: channels of the decoder input (0: both states come from the skip). Defaults to 0.
        zero_output: initialise the output projection to zero (the cell then outputs exactly 0, the
            residual ``e + cell(e)`` is the backbone's skip at implant time). Defaults to False.
    """

    def __init__(self, in_channels: int, channels: int, k: int, num_nodes: int = 4,
                 generator: torch.Generator | None = None, decoder_channels: int = 0,
                 zero_output: bool = False) -> None:
        super().__init__()
        if channels % k or channels < k:
            raise ValueError(f"SearchCell: channels={channels} must be a positive multiple of k={k}")
        self.in_channels, self.channels, self.k, self.num_nodes = in_channels, channels, k, num_nodes
        self.decoder_channels = int(decoder_channels)
        self.num_edges = num_edges(num_nodes)
        self.preprocess = ReLUConvBN(in_channels + self.decoder_channels, 2 * channels)  # s0 = [:C], s1 = [C:]
        self.register_buffer("input_mask", input_mask(in_channels, self.decoder_channels, channels), persistent=False)
        self.edges = FusedEdges(channels, k, num_nodes)
        self.project = nn.Conv2d(num_nodes * channels, in_channels, 1)
        init_uniform_(self.preprocess.op[1].weight, in_channels, generator)
        init_uniform_(self.project.weight, num_nodes * channels, generator)
        init_uniform_(self.project.bias, num_nodes * channels, generator)
        if zero_output:
            nn.init.zeros_(self.project.weight)
            nn.init.zeros_(self.project.bias)
        self.edges.reset_parameters(generator)

    def forward(self, x: torch.Tensor, op_weights: torch.Tensor, edge_weights: torch.Tensor,
                active: torch.Tensor, decoder: torch.Tensor | None = None) -> torch.Tensor:
        """Cell on a skip tensor (and the decoder feature at its level).

        Ops that are inactive are not computed. Under ``torch.no_grad`` ops and edges of zero weight are
        skipped too; with gradients enabled they are computed so that gradients w.r.t. α, β stay exact.

        Args:
            x: skip tensor (B, in_channels, H, W).
            op_weights: (E, P) mixing weights of the ops.
            edge_weights: (E,) normalised edge weights.
            active: (E, P) bool, the ops that may be computed.
            decoder: (B, decoder_channels, H, W), required iff the cell was built with decoder channels.

        Returns:
            (B, in_channels, H, W).
        """
        batch, _, height, width = x.shape
        x = with_decoder(x, decoder, self.decoder_channels)  # (B, C_in + C_dec, H, W)
        rows = F.relu(x).permute(0, 2, 3, 1).reshape(-1, x.shape[1])  # (N, C_in + C_dec), N = B·H·W
        conv, norm = self.preprocess.op[1], self.preprocess.op[2]
        weight = conv.weight[:, :, 0, 0] * self.input_mask  # (2C, C_in + C_dec)
        scale, shift = batch_norm_affine(rows, weight, norm.running_mean, norm.running_var, None, self.training)
        out = self.edges(rows, (batch, height, width), scale[:, None] * weight, shift, self.project.weight[:, :, 0, 0],
                         self.project.bias, op_weights, edge_weights, active)  # (N, C_in)
        return out.view(batch, height, width, -1).permute(0, 3, 1, 2).contiguous()  # (B, C_in, H, W)

    def mixed_op(self, edge: int) -> MixedOp:
        """A reference :class:`MixedOp` holding a copy of edge ``edge``'s weights and BN statistics."""
        return self.edges.mixed_op(edge)


class DiscreteCell(nn.Module):
    """The discrete cell of a genotype: one full-width op per kept edge (no partial channels).

    Same wiring, inputs and output shape as :class:`SearchCell`; BNs are affine as in the DARTS
    evaluation network.

    Args:
        in_channels: the skip's channels.
        channels: C, the cell width.
        genotype: the :class:`~shapnas.genotype.Genotype`.
        generator: draws the conv weights (PyTorch's default init); None uses the global RNG.
        decoder_channels: channels of the decoder input (0: both states from the skip). Defaults to 0.
        zero_output: zero-initialised output projection. Defaults to False.
    """

    def __init__(self, in_channels: int, channels: int, genotype: Genotype,
                 generator: torch.Generator | None = None, decoder_channels: int = 0,
                 zero_output: bool = False) -> None:
        super().__init__()
        self.channels, self.genotype, self.decoder_channels = channels, genotype, int(decoder_channels)
        self.preprocess = ReLUConvBN(in_channels + self.decoder_channels, 2 * channels, affine=True)
        self.register_buffer("input_mask", input_mask(in_channels, self.decoder_channels, channels), persistent=False)
        self.ops = nn.ModuleList(OPS[op](channels, affine=True) for _, _, op in genotype.edges)
        self.project = nn.Conv2d(genotype.num_nodes * channels, in_channels, 1)
        if generator is not None:
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    fan_in = module.weight[0].numel()
                    init_uniform_(module.weight, fan_in, generator)
                    if module.bias is not None:
                        init_uniform_(module.bias, fan_in, generator)
        if zero_output:
            nn.init.zeros_(self.project.weight)
            nn.init.zeros_(self.project.bias)

    def forward(self, x: torch.Tensor, decoder: torch.Tensor | None = None) -> torch.Tensor:
        x = with_decoder(x, decoder, self.decoder_channels)  # (B, C_in + C_dec, H, W)
        _, conv, norm = self.preprocess.op
        pre = norm(F.conv2d(F.relu(x), conv.weight * self.input_mask[:, :, None, None]))  # (B, 2C, H, W)
        states = [pre[:, : self.channels], pre[:, self.channels:]]
        for node in range(self.genotype.num_nodes):
            states.append(sum(op(states[src]) for (n, src, _), op in zip(self.genotype.edges, self.ops) if n == node))
        return self.project(torch.cat(states[2:], dim=1))  # (B, in_channels, H, W)

