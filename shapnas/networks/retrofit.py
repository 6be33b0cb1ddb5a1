"""A pre-trained U-Net with a cell implanted on every skip: ``skip' = e + cell(e)``, exact at implant time.

Benedykciuk et al., Sci. Rep. 2026 (IAC): the encoder and decoder stay the pre-trained, frozen ones, and a
freshly retrofitted network computes exactly what the backbone did. Two residual forms (``residual``):
``projection`` (default), the cell's output 1×1 projection initialised to zero (the "zero convolution" of
ControlNet, Zhang et al. ICCV 2023), and ``gate``, ``e + 30·γ·cell(e)`` with γ = 0 (ReZero with a raised
step). The backbone's adapter runs its decoder with each skip rewritten (``SkipAdapter.decode_with``). With
``decoder_input`` a cell also reads the decoder feature upsampled to its level (its ``s1``), so the decoder
runs level by level, each cell before the decoder block that consumes its skip (not for UNet++). The
architecture parameters follow PC-DARTS (α per edge and op, β per edge with edge normalisation) and
Shapley-NAS (a coalition zeroes the mixing weights of its absent players, without re-normalisation).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from shapnas.networks.skip_adapter import SkipAdapter
from shapnas.networks.cells import DiscreteCell, SearchCell
from shapnas.networks.genotype import Genotype, derive_genotype, num_edges
from shapnas.networks.ops import PRIMITIVES

__all__ = ["ArchitectureParameters", "RetrofitUNet", "cell_width", "build_supernet", "build_discrete",
           "retrofit_options", "check_decoder_input"]


class ArchitectureParameters(nn.Module):
    """α (E, P), β (E,) and the mask of active ops of one cell layout.

    ``none`` (column 0) stays in the softmax but is never a player and never pruned (our choice: it
    keeps PC-DARTS's op distribution, while Shapley-NAS's players are the non-``none`` ops).

    Args:
        num_nodes: intermediate nodes (E = 14 edges for 4).
        generator: draws the PC-DARTS init 1e-3·N(0, 1).
        num_ops: P, columns of α. Defaults to ``len(PRIMITIVES)``.
    """

    def __init__(self, num_nodes: int = 4, *, generator: torch.Generator, num_ops: int = len(PRIMITIVES)) -> None:
        super().__init__()
        self.num_nodes = num_nodes
        num = num_edges(num_nodes)
        self.alphas = nn.Parameter(1e-3 * torch.randn(num, num_ops, generator=generator))
        self.betas = nn.Parameter(1e-3 * torch.randn(num, generator=generator))
        self.register_buffer("active", torch.ones(num, num_ops, dtype=torch.bool))

    def op_probs(self, coalition: torch.Tensor | None = None) -> torch.Tensor:
        """Softmax of α over the active ops of each edge (inactive: exactly 0), times the coalition mask.

        Args:
            coalition: optional (E, P) bool keep-mask; absent players' weights are zeroed, the others
                are not re-normalised (Shapley-NAS).

        Returns:
            (E, P) op weights.
        """
        probs = F.softmax(self.alphas.masked_fill(~self.active, float("-inf")), dim=-1)
        if coalition is not None:
            if tuple(coalition.shape) != tuple(probs.shape):
                raise ValueError(f"coalition shape {tuple(coalition.shape)}; expected {tuple(probs.shape)}")
            probs = probs * coalition.to(device=probs.device, dtype=probs.dtype)
        return probs

    def edge_probs(self) -> torch.Tensor:
        """Softmax of β over the edges entering each node (PC-DARTS edge normalisation), (E,)."""
        return torch.cat([F.softmax(self.betas[num_edges(node):num_edges(node) + node + 2], dim=0)
                          for node in range(self.num_nodes)])

    def num_active(self, edge: int) -> int:
        """Active non-``none`` ops of ``edge``."""
        return int(self.active[edge, 1:].sum())

    def players(self) -> list[tuple[int, int]]:
        """The active non-``none`` (edge, op) pairs, edge-major then op order."""
        return [(e, o) for e, row in enumerate(self.active.tolist()) for o in range(1, len(row)) if row[o]]

    def check_prune(self, edge: int, op: int) -> None:
        """Raise ValueError if (edge, op) cannot be pruned."""
        num, num_ops = self.active.shape
        if not 0 <= edge < num or not 0 <= op < num_ops:
            raise ValueError(f"prune (edge={edge}, op={op}): outside ({num} edges, {num_ops} ops)")
        if op == 0:
            raise ValueError(f"prune (edge={edge}, op=0): 'none' is never pruned")
        if not bool(self.active[edge, op]):
            raise ValueError(f"prune (edge={edge}, op={op} {PRIMITIVES[op]}): already pruned")
        if self.num_active(edge) <= 1:
            raise ValueError(f"prune (edge={edge}, op={op} {PRIMITIVES[op]}): the last active op of the edge")

    def prune(self, edge: int, op: int) -> None:
        """Deactivate op ``op`` of ``edge``: it drops out of the softmax and is no longer computed.

        Raises:
            ValueError: for ``none``, an inactive op, or the last active non-``none`` op of the edge.
        """
        self.check_prune(edge, op)
        self.active[edge, op] = False


def cell_width(skip_channels: int, k: int, channels: int = 0) -> int:
    """Cell width C: ``channels`` if given (a multiple of ``k``), else min(skip channels, 32) rounded
    down to a multiple of ``k`` (at least ``k``)."""
    if channels:
        if channels % k:
            raise ValueError(f"cell channels={channels} not a multiple of k={k}")
        return channels
    return max(k, min(skip_channels, 32) // k * k)


class RetrofitUNet(nn.Module):
    """A frozen-able U-Net (through its :class:`SkipAdapter`) with one residual cell per skip level.

    Args:
        adapter: the backbone's adapter.
        cells: one :class:`SearchCell` or :class:`DiscreteCell` per skip level, full resolution first
            (built with the adapter's ``decoder_channels`` when ``decoder_input``).
        arch: the architecture parameters (1 shared, or 1 per level) of a supernet; None if discrete.
        genotype: the genotype of a discrete network.
        cell_channels: the ``channels`` argument the cells were built with (0: :func:`cell_width`
            per level); pass it back to :func:`build_discrete` to get the same widths.
        residual: ``projection`` (cells with a zero-initialised output projection, ``e + cell(e)``) or
            ``gate`` (``e + GATE_SCALE·γ·cell(e)``, γ = 0). Defaults to ``projection``.
        decoder_input: the cells read the decoder feature at their level as ``s1``. Defaults to False.

    Attributes:
        cell_channels: as given. cell_widths: the width C of each level's cell.
        gates: the raw gate parameters γ (``residual='gate'`` only; None otherwise); the gate of level l is
            ``GATE_SCALE · γ_l``.

    With ``gate`` the gate's gradient is a sum of the frozen decoder's small gradients with respect to the
    skip features (about 1e-3 on the phantoms), so a plain zero-initialised scalar stays near zero under
    SGD; ``GATE_SCALE`` is a learning-rate multiplier for it. With ``projection`` there is no scalar to
    open: the projection's weights get the gradient directly and, under Adam, move at the learning rate.
    """

    GATE_SCALE = 30.0

    def __init__(self, adapter: SkipAdapter, cells: Sequence[nn.Module], arch: Sequence[ArchitectureParameters] | None,
                 genotype: Genotype | None = None, cell_channels: int = 0, *, residual: str = "projection",
                 decoder_input: bool = False) -> None:
        super().__init__()
        if len(cells) != len(adapter.skip_channels):
            raise ValueError(f"{len(cells)} cells for {len(adapter.skip_channels)} skip levels")
        if residual not in ("projection", "gate"):
            raise ValueError(f"residual={residual!r}; expected 'projection' or 'gate'")
        check_decoder_input(adapter, decoder_input)
        self.adapter = adapter
        self.cells = nn.ModuleList(cells)
        self.residual, self.decoder_input = residual, bool(decoder_input)
        # g_l = 0: the backbone's output exactly
        self.gates = nn.Parameter(torch.zeros(len(cells))) if residual == "gate" else None
        self.arch = nn.ModuleList(arch) if arch is not None else None
        self.discrete_genotype = genotype
        self.cell_channels = int(cell_channels)
        self.cell_widths = [int(cell.channels) for cell in cells]
        self.backbone_frozen = False
        self._active_cache: dict[int, tuple[torch.Tensor, int, torch.Tensor]] = {}  # not state: a host copy

    def freeze_backbone(self) -> RetrofitUNet:
        """No gradients for the backbone, which also stays in eval mode from now on."""
        for param in self.adapter.parameters():
            param.requires_grad_(False)
        self.backbone_frozen = True
        self.adapter.eval()
        return self

    def train(self, mode: bool = True) -> RetrofitUNet:
        super().train(mode)
        if self.backbone_frozen:
            self.adapter.eval()
        return self

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Backbone encoder (no autograd graph when the backbone is frozen): (skips, bottom)."""
        if self.backbone_frozen:
            with torch.no_grad():
                return self.adapter.encode(x)
        return self.adapter.encode(x)

    def _mixing(self, coalition: torch.Tensor | None) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return [(arch.op_probs(coalition), arch.edge_probs(), self._host_active(arch)) for arch in self.arch]

    def _host_active(self, arch: ArchitectureParameters) -> torch.Tensor:
        """``arch.active`` on the CPU for the cells' index plans, copied from an accelerator only when the buffer
        was replaced or changed in place (its version counter), so that a training step never waits for it."""
        active = arch.active
        if active.device.type == "cpu":
            return active
        cached = self._active_cache.get(id(arch))
        if cached is None or cached[0] is not active or cached[1] != active._version:
            cached = (active, active._version, active.cpu())
            self._active_cache[id(arch)] = cached
        return cached[2]

    def decode_from(self, features: tuple[list[torch.Tensor], torch.Tensor],
                    coalition: torch.Tensor | None = None) -> torch.Tensor:
        """Cells and the backbone decoder on cached encoder features (:meth:`SkipAdapter.decode_with`: level by
        level from the deepest, or the backbone's own order).

        Args:
            features: ``encode(x)``.
            coalition: (E, P) bool keep-mask applied to every level's op weights (supernet only).

        Returns:
            Logits (B, out_channels, H, W).
        """
        skips, bottom = features
        if self.arch is None and coalition is not None:
            raise ValueError("a coalition applies to a supernet; this network is discrete")
        mixing = self._mixing(coalition) if self.arch is not None else None

        def transform(level: int, skip: torch.Tensor, up: torch.Tensor | None) -> torch.Tensor:
            return self._residual(level, skip, up, mixing)  # (B, C_l, H_l, W_l)

        return self.adapter.decode_with(skips, bottom, transform)

    def _residual(self, level: int, skip: torch.Tensor, up: torch.Tensor | None, mixing) -> torch.Tensor:
        """The new skip of ``level``: ``e + cell(e[, d])`` or ``e + g·cell(e[, d])`` (``up``: the decoder feature
        ``d``, None where the backbone has none)."""
        gate = None
        if self.gates is not None:
            gate = self.GATE_SCALE * self.gates[level]
            if not torch.is_grad_enabled() and not self.training and float(gate.detach()) == 0.0:
                return skip  # e + 0·cell(e) = e: nothing to compute
        cell = self.cells[level]
        extra = (up,) if self.decoder_input else ()
        if mixing is None:
            out = cell(skip, *extra)
        else:
            op_weights, edge_weights, active = mixing[level if len(mixing) > 1 else 0]
            out = cell(skip, op_weights, edge_weights, active, *extra)
        return skip + out if gate is None else skip + gate * out

    def forward(self, x: torch.Tensor, coalition: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, out_channels, H, W) of the retrofitted network (``coalition``: see :meth:`decode_from`)."""
        return self.decode_from(self.encode(x), coalition)

    def weight_parameters(self) -> list[nn.Parameter]:
        """Cell weights and gates, if any (the weight step's parameters)."""
        return list(self.cells.parameters()) + ([self.gates] if self.gates is not None else [])

    def arch_parameters(self) -> list[nn.Parameter]:
        """α and β of every architecture parameter set (empty for a discrete network)."""
        return [p for arch in self.arch for p in (arch.alphas, arch.betas)] if self.arch is not None else []

    def prune(self, edge: int, op: int) -> None:
        """Prune (edge, op) at every level (see :meth:`ArchitectureParameters.prune`)."""
        if self.arch is None:
            raise ValueError("prune: this network is discrete")
        for arch in self.arch:
            arch.check_prune(edge, op)
        for arch in self.arch:
            arch.prune(edge, op)

    def cell_op_probs(self) -> torch.Tensor:
        """(L, E, P) op distribution of each skip level's cell (shared α: the same for every level)."""
        if self.arch is None:
            raise ValueError("cell_op_probs: this network is discrete")
        probs = [arch.op_probs().detach() for arch in self.arch]
        return torch.stack([probs[level if len(probs) > 1 else 0] for level in range(len(self.cells))])

    def genotype(self) -> Genotype:
        """The PC-DARTS discretisation of the (level-mean) op and edge distributions; a discrete
        network's own genotype."""
        if self.arch is None:
            assert self.discrete_genotype is not None
            return self.discrete_genotype
        op_probs = torch.stack([arch.op_probs().detach() for arch in self.arch]).mean(0)
        edge_probs = torch.stack([arch.edge_probs().detach() for arch in self.arch]).mean(0)
        return derive_genotype(op_probs, edge_probs, self.arch[0].num_nodes)


def check_decoder_input(adapter: SkipAdapter, decoder_input: bool) -> None:
    """Raise a ValueError when ``decoder_input`` is asked of a backbone without a decoder feature per skip level.

    Args:
        adapter: the backbone adapter.
        decoder_input: whether the cells are to read the decoder feature at their level.
    """
    if decoder_input and not adapter.supports_decoder_input:
        name = adapter.backbone_name or type(adapter.net).__name__
        raise ValueError(f"decoder_input=True is not available for backbone {name!r}: its nested dense skips have no "
                         "decoder feature entering a skip level before the skip is read; use decoder_input=False")


def _cell_kwargs(adapter: SkipAdapter, level: int, residual: str, decoder_input: bool) -> dict:
    return {"decoder_channels": adapter.decoder_channels[level] if decoder_input else 0,
            "zero_output": residual == "projection"}


def build_supernet(adapter: SkipAdapter, *, channels: int = 0, k: int = 4, num_nodes: int = 4,
                   per_level_alpha: bool = False, generator: torch.Generator, residual: str = "projection",
                   decoder_input: bool = False) -> RetrofitUNet:
    """Implant a PC-DARTS search cell on every skip of ``adapter``'s backbone.

    Args:
        adapter: the backbone adapter (:func:`shapnas.networks.monai_adapters.adapt`).
        channels: cell width C (multiple of ``k``); 0: :func:`cell_width` per level. Defaults to 0.
        k: partial-channel ratio K. Defaults to 4.
        num_nodes: intermediate nodes. Defaults to 4.
        per_level_alpha: one α/β per level (ablation) instead of one shared. Defaults to False.
        generator: draws α, β and the cell weights (in that order).
        residual: ``projection`` or ``gate`` (:class:`RetrofitUNet`). Defaults to ``projection``.
        decoder_input: cells read the decoder feature at their level as ``s1``. Defaults to False.

    Returns:
        The supernet; it computes the backbone's function.

    Raises:
        ValueError: for ``decoder_input`` on a backbone without a decoder feature per level (UNet++).
    """
    check_decoder_input(adapter, decoder_input)
    levels = len(adapter.skip_channels)
    arch = [ArchitectureParameters(num_nodes, generator=generator) for _ in range(levels if per_level_alpha else 1)]
    cells = [SearchCell(c, cell_width(c, k, channels), k, num_nodes, generator=generator,
                        **_cell_kwargs(adapter, level, residual, decoder_input))
             for level, c in enumerate(adapter.skip_channels)]
    return RetrofitUNet(adapter, cells, arch, cell_channels=channels, residual=residual, decoder_input=decoder_input)


def build_discrete(adapter: SkipAdapter, genotype: Genotype, *, channels: int = 0, k: int = 4,
                   generator: torch.Generator | None = None, residual: str = "projection",
                   decoder_input: bool = False) -> RetrofitUNet:
    """Implant the discrete cell of ``genotype`` on every skip of ``adapter``'s backbone.

    Args:
        adapter: the backbone adapter.
        genotype: the cell.
        channels: cell width C; 0: :func:`cell_width` per level (with ``k``), as the search used.
        k: the search's K, only for the default width. Defaults to 4.
        generator: draws the cell weights (PyTorch's default init); None: the global RNG.
        residual: ``projection`` or ``gate``. Defaults to ``projection``.
        decoder_input: cells read the decoder feature at their level. Defaults to False.

    Returns:
        The retrofitted network; it computes the backbone's function.

    Raises:
        ValueError: for ``decoder_input`` on a backbone without a decoder feature per level (UNet++).
    """
    check_decoder_input(adapter, decoder_input)
    cells = [DiscreteCell(c, cell_width(c, k, channels), genotype, generator=generator,
                          **_cell_kwargs(adapter, level, residual, decoder_input))
             for level, c in enumerate(adapter.skip_channels)]
    return RetrofitUNet(adapter, cells, None, genotype, cell_channels=channels, residual=residual,
                        decoder_input=decoder_input)


def retrofit_options(config: Any) -> dict[str, Any]:
    """``residual`` and ``decoder_input`` of a config (a :class:`~shapnas.config.stage_configs.SearchConfig` or its dict);
    absent keys (configs written before these options) mean the old form: gate, skip-only cells."""
    get = config.get if isinstance(config, dict) else lambda name, default: getattr(config, name, default)
    return {"residual": get("residual", "gate"), "decoder_input": bool(get("decoder_input", False))}
