"""The fused evaluation of a search cell's mixed ops: all edges batched, batch norms folded into matrices.

A naive PC-DARTS supernet (one :class:`shapnas.networks.cells.MixedOp` per edge) costs 16–19 backbone training steps
per step on CPU; :class:`FusedEdges` computes the same function (tested against the
readable MixedOps in ``tests/test_ops_cells.py``) in about 5 (``benchmarks/cell_cost.py``, tiny backbone,
64 px, one core). Nonlinear work runs once per input (a source state, or s0 and s1 together for what they
share); everything linear composes into a few matrix products on pixel rows, built from the row kernels of
:mod:`shapnas.networks.ops` (on CPU, large rows go through :mod:`shapnas.networks.row_kernels`). Each batch
norm is folded into its pointwise weight by one autograd node (:func:`shapnas.networks.ops.folded_batch_norm`).
Inactive ops are never computed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shapnas.networks.fused_plan import JOINT, GroupPlan, Plan, SourcePlan, TypePlan, build_plan
from shapnas.networks.genotype import edge_list, num_edges
from shapnas.networks.ops import (
    PARAMETRIC,
    POOLS,
    PRIMITIVES,
    RunningStats,
    depthwise_rows,
    folded_batch_norm,
    init_uniform_,
    linear_rows,
    pool_rows,
)

__all__ = ["FusedEdges"]

_MAX_PLANS = 64  # cached index plans (one per pattern of active ops and edges)


def _block_diagonal(weight: torch.Tensor, plan: TypePlan) -> torch.Tensor:
    """The (E, c, c) per-edge 1×1 weights of the plan's units as one (width, width) block-diagonal matrix, rows
    ((k, o), j), columns ((k, i), j): a single gather of the weights into a zero matrix."""
    flat = weight.reshape(-1)
    return flat.new_zeros(plan.width ** 2).index_put((plan.block_at,), flat[plan.block_from]).view(plan.width,
                                                                                                   plan.width)


class FusedEdges(nn.Module):
    """All mixed ops of a search cell, batched; the same function as per-edge PC-DARTS MixedOps.

    Works on pixel rows (N = B·H·W, channels). Nonlinear work runs once per source state: its pools and,
    per parametric op type, one depthwise convolution (channel multiplier n) for all n active edges
    leaving the state; in the first group, the pools and types that s0 and s1 share (a type on as many
    edges of each) run once on both slices side by side (:func:`shapnas.networks.fused_plan.build_plan`). Everything else in the cell is linear: the pointwise convs after BN folding
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
        self._plans: dict[tuple, Plan] = {}

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

    def _plan(self, eff: torch.Tensor, edge_on: torch.Tensor | None, device: torch.device) -> Plan:
        """The cached index plan of ops ``eff`` (E, P) and edges ``edge_on`` (E,) (None: all) on ``device``."""
        eff_np = eff.cpu().numpy()
        on_np = np.ones(len(eff_np), dtype=bool) if edge_on is None else edge_on.cpu().numpy()
        key = (eff_np.tobytes(), on_np.tobytes(), str(device))
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= _MAX_PLANS:
                self._plans.pop(next(iter(self._plans)))
            plan = build_plan(eff_np, on_np, self.channels, self.k, self.num_nodes, device)
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
        eff = active.clone()  # (E, P) bool, on the CPU during training (no device read per step)
        eff[:, 0] = False  # 'none' adds zero: never computed
        edge_on = None  # every edge
        if not torch.is_grad_enabled():  # nothing to differentiate: skip zero-weight ops and edges
            eff = eff.to(op_weights.device) & (op_weights != 0)
            edge_on = edge_weights != 0
        plan = self._plan(eff, edge_on, rows.device)
        stats = RunningStats() if self.training else None  # running-statistics updates, applied at the end
        values = torch.cat([(op_weights * edge_weights[:, None]).flatten(), edge_weights])  # (E·P + E,)
        links = values.new_zeros(len(edge_weights) * channels * channels)
        links = links.index_put((plan.links_flat,), values[plan.links_index]).view(-1, channels, channels)
        links = [links[[e for e, _ in incoming]] for incoming in self._incoming]  # per node (m, C, C)
        project = project_weight.view(-1, nodes, channels).transpose(0, 1)  # (nodes, C_in, C)
        slices = torch.cat([pre_weight[:part], pre_weight[channels:channels + part]])  # x1 of s0, s1
        x1 = linear_rows(rows, slices, torch.cat([pre_shift[:part], pre_shift[channels:channels + part]]), spatial)
        inputs = dict(enumerate(x1.split(part, dim=1)))  # (N, C/K) slices entering s0's and s1's ops
        inputs[JOINT] = x1  # (N, 2·C/K): the pools and types s0 and s1 share run once on both
        out = None  # (N, C/K·(nodes to come) + C_in): their slices and the output, accumulated
        for group, gplan in enumerate(plan.groups):
            if group:
                inputs[group + 1], out = out.split([part, out.shape[1] - part], dim=1)  # one backward (a cat)
            pieces, maps = [], []
            for source in gplan.sources:
                self._features(inputs[source.src], source, spatial, pieces, maps, stats)
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
            contribution = linear_rows(torch.cat(pieces, dim=1), mixing[:, :-1], mixing[:, -1], spatial)
            out = contribution if out is None else contribution.add_(out)
        if stats is not None:
            stats.apply()
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

    def _direct(self, plan: GroupPlan, values: torch.Tensor, pieces: list[torch.Tensor],
                maps: list) -> dict[int, torch.Tensor]:
        """Per computed edge of the group: the (C, features + 1) map from the group's raw features (and a
        constant) to its weighted, shuffled op outputs (BNs and last pointwise convs folded in)."""
        channels = self.channels
        rows = plan.shape[0]
        if not pieces:
            return {e: values.new_zeros(channels, 1) for e in plan.edges}
        coefficients = values.new_zeros(rows * plan.shape[1])
        coefficients = coefficients.index_put((plan.flat,), values[plan.index]).view(plan.shape)
        # all pieces' maps as one block-diagonal (features, features) matrix, the shifts as one more column
        mapping = torch.block_diag(*(torch.diag(weight) if weight.dim() == 1 else weight for weight, _ in maps))
        shifts = torch.cat([shift for _, shift in maps])[:, None]  # (features, 1)
        folded = coefficients @ torch.cat([mapping, shifts], dim=1)  # (edges·C, features + 1)
        return {e: folded[t * channels:(t + 1) * channels] for t, e in enumerate(plan.edges)}

    def _features(self, x1: torch.Tensor, source: SourcePlan, spatial: tuple[int, int, int],
                  pieces: list[torch.Tensor], maps: list, stats: RunningStats | None) -> None:
        """Append the raw features of one input (a source's C/K-channel slice ``x1`` (N, C/K), or s0's and s1's
        side by side (N, 2·C/K)), each with the map (A, shift) that turns it into op outputs
        ``piece @ A.T + shift`` (A 1-D: a scale)."""
        for name in source.pools:
            pooled = pool_rows(x1, spatial, name)
            scale, shift = folded_batch_norm(pooled, None, self.pool_mean, self.pool_var, source.pool_stats[name],
                                             self.training, spatial, stats)
            pieces.append(pooled)
            maps.append((scale, shift))
        if source.types:
            relu_x1 = F.relu(x1)
            for plan in source.types:
                pre, weight, shift = self._param_op(relu_x1, spatial, plan, stats)
                pieces.append(pre)
                maps.append((weight, shift))

    def _param_op(self, relu_x1: torch.Tensor, spatial: tuple[int, int, int], plan: TypePlan,
                  stats: RunningStats | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One op type on its edges: (N, c) -> (pre (N, width), A, shift), op outputs ``pre @ A.T + shift``."""
        size, dilation, repeats = PARAMETRIC[plan.name]
        pre, groups = relu_x1, plan.in_channels  # first depthwise conv: channel multiplier n, channel ((k, o), j)
        weight = shift = None  # the folded BN(pw) of the stage before, read by a second stage
        for i, (dw, pw, stage) in enumerate(self._stages()[:repeats]):
            if i:  # BN(pw1) feeds a ReLU: materialise it; the second depthwise conv is plain
                pre, groups = F.relu(linear_rows(pre, weight, shift, spatial)), plan.width
            kernel = dw[plan.name].reshape(-1, size, size)[plan.kernels].unsqueeze(1)  # (width, 1, k, k)
            pre = depthwise_rows(pre, spatial, kernel, dilation if i == 0 else 1, groups)  # (N, width)
            weight, shift = folded_batch_norm(pre, _block_diagonal(pw[plan.name], plan),
                                              getattr(self, f"{stage}_mean_{plan.name}"),
                                              getattr(self, f"{stage}_var_{plan.name}"), plan.stats, self.training,
                                              spatial, stats)  # BN(pw(pre)) = pre @ weight.T + shift
        return pre, weight, shift

    def copy_edge_to(self, op: nn.Module, edge: int) -> nn.Module:
        """Copy edge ``edge``'s weights and BN statistics into a reference mixed op.

        Args:
            op: a :class:`shapnas.networks.cells.MixedOp` of width C and ratio K (its ``ops`` in :data:`PRIMITIVES` order).
            edge: the edge index.

        Returns:
            ``op``, in this module's training mode.
        """
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
