"""Figures of the search: α/β heat maps over epochs, cell graphs, time per epoch, the retrofit diagram.

Pure functions from records (``history.jsonl`` lines, CONTRACTS.md) to matplotlib ``Figure``s. Edge layout
and names follow ``shapnas.networks.genotype`` (DARTS layout, two input states s0, s1 made from the skip tensor e).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from shapnas.networks.genotype import edge_list, source_name
from shapnas.networks.ops import PRIMITIVES

__all__ = [
    "edge_labels",
    "pick_epochs",
    "nice_bound",
    "alpha_deviation",
    "plot_arch_heatmaps",
    "plot_edge_weights",
    "plot_cell_graph",
    "separate_labels",
    "plot_epoch_times",
    "plot_retrofit_diagram",
    "SIGNAL_FIELDS",
    "search_signal_text",
]

# what the search writes into its metrics.json about how much it moved (the search-signal issue)
SIGNAL_FIELDS = ("alpha_spread", "alpha_max_prob", "alpha_uniform", "cell_weight_change", "loss_first", "loss_last")

ALPHA_SCALE_FLOOR = 0.02  # the α colour scale spans at least ±0.02 (16 % of 1/8): tiny deviations stay pale
OP_SHORT = {"none": "none", "max_pool_3x3": "max3", "avg_pool_3x3": "avg3", "skip_connect": "skip",
            "sep_conv_3x3": "sep3", "sep_conv_5x5": "sep5", "dil_conv_3x3": "dil3", "dil_conv_5x5": "dil5"}


def edge_labels(num_edges: int) -> list[str]:
    """``n<i>←<src>`` for each edge index of a cell with ``num_edges`` edges (DARTS order)."""
    num_nodes = 0
    while len(edge_list(num_nodes)) < num_edges:
        num_nodes += 1
    if len(edge_list(num_nodes)) != num_edges:
        raise ValueError(f"{num_edges} edges match no DARTS cell (2+3+...); expected 2, 5, 9, 14, ...")
    return [f"n{node}←{source_name(src)}" for node, src in edge_list(num_nodes)]


def pick_epochs(history: Sequence[dict[str, Any]], count: int = 4) -> list[int]:
    """Up to ``count`` positions in ``history`` spread evenly from the first to the last record."""
    if not history:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, len(history) - 1, min(count, len(history)))})


def nice_bound(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k at or above ``value`` (> 0): a colour-scale bound a reader can state."""
    value = max(float(value), 1e-6)
    exponent = np.floor(np.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * 10 ** exponent >= value * (1 - 1e-9):
            return float(step * 10 ** exponent)
    return float(10 ** (exponent + 1))  # pragma: no cover (the loop always returns)


def alpha_deviation(record: dict[str, Any]) -> np.ndarray:
    """Op probabilities minus the uniform share of each edge's active ops; pruned ops NaN.

    Args:
        record: a search history record (``op_probs`` (E, P), optional ``active`` (E, P)).

    Returns:
        (E, P) deviations: 0 is "no preference", e.g. 1/8 = 0.125 subtracted while all eight ops are active.
    """
    probs = np.asarray(record["op_probs"], dtype=float)  # (E, P)
    active = np.broadcast_to(np.asarray(record.get("active", True), dtype=bool), probs.shape)
    uniform = 1.0 / np.maximum(active.sum(axis=1, keepdims=True), 1)  # (E, 1)
    return np.where(active, probs - uniform, np.nan)


def plot_arch_heatmaps(history: Sequence[dict[str, Any]], primitives: Sequence[str] = PRIMITIVES,
                       count: int = 3) -> Figure:
    """Op distributions (softmax α, mean over levels) per edge at a few epochs, as the deviation from the
    uniform share of the edge's active ops, on one symmetric colour scale stated in the title; pruned ops ×.

    An auto-scaled colour map would stretch a spread of 0.003 around 1/8 over the whole palette and make noise
    look like structure; here white is "uniform", the bound is at least :data:`ALPHA_SCALE_FLOOR` and it is
    printed with the largest deviation.

    Args:
        history: search history records (``op_probs`` (E, P), ``active`` (E, P), ``epoch``, ``phase``).
        primitives: column names of ``op_probs``.
        count: how many epochs to show (first, last and evenly between).

    Returns:
        One heat-map panel per chosen epoch (rows: edges, columns: ops).
    """
    chosen = [history[i] for i in pick_epochs(history, count)]
    if not chosen:
        raise ValueError("history is empty; expected at least one search epoch record")
    num_edges = len(chosen[0]["op_probs"])
    shown = [alpha_deviation(r) for r in chosen]  # (E, P) each, pruned ops NaN
    spread = float(np.nanmax(np.abs(shown))) if np.isfinite(shown).any() else 0.0
    bound = max(nice_bound(spread), ALPHA_SCALE_FLOOR)
    fig = Figure(figsize=(min(2.1 * len(chosen) + 1.6, 9.0), 0.27 * num_edges + 2.0), layout="constrained")
    axes = fig.subplots(1, len(chosen), sharey=True, squeeze=False)
    image = None
    for ax, record, deviation in zip(axes[0], chosen, shown):
        image = ax.imshow(deviation, vmin=-bound, vmax=bound, cmap="RdBu_r", aspect="auto")
        rows, cols = np.nonzero(np.isnan(deviation))
        ax.scatter(cols, rows, marker="x", color="0.45", s=16, linewidths=0.9)
        ax.set_title(f"epoch {record['epoch']} ({record.get('phase', '')})")
        ax.set_xticks(range(len(primitives)), [OP_SHORT.get(p, p) for p in primitives], rotation=90)
        ax.set_yticks(range(num_edges), edge_labels(num_edges))
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.85, label="probability − uniform share")
    fig.suptitle(f"op probability − uniform share (1/{len(primitives)} = {1 / len(primitives):.3f} with every op "
                 f"active)\ncolour scale ±{bound:g} (at least ±{ALPHA_SCALE_FLOOR:g}); largest |deviation| here "
                 f"{spread:.2g}; × = pruned")
    return fig


def plot_edge_weights(history: Sequence[dict[str, Any]]) -> Figure:
    """Normalised edge weights (softmax β over each node's inputs) of every edge over the epochs.

    Args:
        history: search history records with ``edge_probs`` (E,) and ``epoch``.

    Returns:
        A heat map: rows edges, columns epochs; a continuous colour bar, or two colours with a legend when
        every weight is exactly 0 or 1.
    """
    if not history:
        raise ValueError("history is empty; expected at least one search epoch record")
    weights = np.asarray([r["edge_probs"] for r in history], dtype=float).T  # (E, epochs)
    size = (max(4.0, 0.35 * weights.shape[1] + 2.5), 0.28 * weights.shape[0] + 1.4)
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.subplots()
    binary = bool(np.isin(weights, (0.0, 1.0)).all())  # only 0 and 1: two colours, not a continuous scale
    if binary:
        from matplotlib.colors import ListedColormap
        from matplotlib.patches import Patch

        ax.imshow(weights, cmap=ListedColormap(["#f0f0f0", "#3b0f70"]), aspect="auto", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.legend(handles=[Patch(color="#3b0f70", label="1 (edge kept whole)"), Patch(color="#f0f0f0", label="0")],
                  loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="edge weight", title_fontsize=8)
    else:
        image = ax.imshow(weights, cmap="magma", aspect="auto", vmin=0, vmax=1)
        fig.colorbar(image, ax=ax, label="edge weight (softmax β)")
    ax.set_xticks(range(len(history)), [str(r["epoch"]) for r in history])
    ax.set_yticks(range(weights.shape[0]), edge_labels(weights.shape[0]))
    ax.set_xlabel("epoch")
    return fig


def _node_positions(num_nodes: int) -> dict[int, tuple[float, float]]:
    """Positions: the skip tensor e (key -2), sources s0, s1 (0, 1), nodes (2..) in a zig-zag, the output (-1)."""
    positions = {-2: (-1.7, 0.0), 0: (0.0, 0.5), 1: (0.0, -0.5)}
    for j in range(num_nodes):
        positions[j + 2] = (1.2 + 1.1 * j, 0.9 * (-1) ** j * 0.6)
    positions[-1] = (1.2 + 1.1 * num_nodes + 0.4, 0.0)
    return positions


def plot_cell_graph(edges: Sequence[Sequence[Any]] | None, num_nodes: int = 4, title: str | None = None) -> Figure:
    """Draw a cell as a DAG: inputs s0, s1 (from the skip tensor e), intermediate nodes, concatenated output.

    Args:
        edges: a genotype's ``[node, src, op]`` triples; ``None`` draws the search space (every edge a mixed op).
        num_nodes: intermediate nodes. Defaults to 4.
        title: figure title; a default names the case.

    Returns:
        The figure.
    """
    full = edges is None
    triples = [(n, s, "mixed op") for n, s in edge_list(num_nodes)] if full else [tuple(e) for e in edges]
    positions = _node_positions(num_nodes)
    fig = Figure(figsize=(7.5, 3.6), layout="constrained")
    ax = fig.subplots()
    colours = matplotlib.colormaps["tab10"]
    ops = sorted({op for _, _, op in triples})
    labels: list[tuple[tuple[float, float], tuple[float, float], Any]] = []
    for node, src, op in triples:
        start, end = positions[int(src)], positions[int(node) + 2]
        colour = "0.6" if full else colours(ops.index(op) % 10)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10, color=colour,
                                     lw=1.0 if full else 1.8, connectionstyle="arc3,rad=0.12", shrinkA=14, shrinkB=14))
        if not full:
            text = ax.text(*_along(start, end, LABEL_FRACTIONS[0]), OP_SHORT.get(op, op), fontsize=8.5, color=colour,
                           ha="center", va="center",
                           bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})
            labels.append((start, end, text))
    for j in range(num_nodes):
        ax.add_patch(FancyArrowPatch(positions[j + 2], positions[-1], arrowstyle="-|>", mutation_scale=8,
                                     color="0.8", lw=0.8, ls="--", shrinkA=14, shrinkB=18))
    for src in (0, 1):
        ax.add_patch(FancyArrowPatch(positions[-2], positions[src], arrowstyle="-|>", mutation_scale=8, color="0.5",
                                     lw=0.8, shrinkA=14, shrinkB=14))
    ax.text(-0.8, 0.0, "ReLU-Conv1×1-BN\n(pre0, pre1)", fontsize=6.5, ha="center", va="center", color="0.35")
    names = {-2: "e", 0: "s0", 1: "s1", -1: "concat\n→ 1×1\n= cell(e)"} | {j + 2: f"n{j}" for j in range(num_nodes)}
    nodes = []
    for key, (x, y) in positions.items():
        face = "#dbe9f6" if key in (-2, 0, 1) else ("#f6e3c8" if key == -1 else "#e8f3e0")
        nodes.append(ax.text(x, y, names[key], ha="center", va="center", fontsize=9,
                bbox={"boxstyle": "circle,pad=0.35" if key != -1 else "round,pad=0.4", "fc": face, "ec": "0.3"}))
    ax.set_xlim(-2.1, positions[-1][0] + 0.8)
    ax.set_ylim(-1.1, 1.1)
    ax.axis("off")
    default = (f"search space: {len(triples)} edges, each a mixed op over {len(PRIMITIVES)} candidates"
               if full else "derived cell (2 inputs per node)")
    ax.set_title(title or default, fontsize=10)
    separate_labels(fig, labels, nodes)
    return fig


# where along an edge its label may sit (share of the way from source to target), in order of preference:
# 70 % first (the inputs of one node arrive from different directions), then further back or forward
LABEL_FRACTIONS = (0.7, 0.5, 0.82, 0.38, 0.6, 0.28)


def _along(start: tuple[float, float], end: tuple[float, float], fraction: float) -> tuple[float, float]:
    return start[0] + fraction * (end[0] - start[0]), start[1] + fraction * (end[1] - start[1])


def _label_extent(text: Any, renderer: Any) -> Any:
    """The drawn extent of a text with its box (the white label or the node circle)."""
    patch = text.get_bbox_patch()
    if patch is None:
        return text.get_window_extent(renderer)
    text.update_bbox_position_size(renderer)
    return patch.get_window_extent(renderer)


def separate_labels(fig: Figure, labels: Sequence[tuple[tuple[float, float], tuple[float, float], Any]],
                    obstacles: Sequence[Any] = ()) -> None:
    """Move each edge label along its edge to the first place (:data:`LABEL_FRACTIONS`) where its drawn box
    overlaps neither the ``obstacles`` (the nodes) nor a label placed before it (the place with the least
    overlap when none is free).

    Args:
        fig: the figure (laid out here to measure the text boxes).
        labels: (edge start, edge end, text artist) per edge, in drawing order.
        obstacles: text artists the labels must not cover (the node circles).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not labels:
        return
    renderer = (fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)).get_renderer()
    fig.draw_without_rendering()
    placed = [_label_extent(text, renderer) for text in obstacles]

    def overlap(box: Any) -> float:
        return sum(max(0.0, min(box.x1, o.x1) - max(box.x0, o.x0)) * max(0.0, min(box.y1, o.y1) - max(box.y0, o.y0))
                   for o in placed)

    for start, end, text in labels:
        best = None
        for fraction in LABEL_FRACTIONS:
            text.set_position(_along(start, end, fraction))
            cost = overlap(_label_extent(text, renderer))
            if best is None or cost < best[0]:
                best = (cost, fraction)
            if cost == 0:
                break
        text.set_position(_along(start, end, best[1]))
        placed.append(_label_extent(text, renderer))


def plot_epoch_times(history: Sequence[dict[str, Any]]) -> Figure:
    """Wall-clock per search epoch, split into training, Shapley rounds and evaluation.

    Args:
        history: search history records (``time_train_s``, ``time_shapley_s``, ``time_eval_s``, ``epoch``).

    Returns:
        Stacked bars per epoch, the number of active ops on a second axis.
    """
    if not history:
        raise ValueError("history is empty; expected at least one search epoch record")
    epochs = [r["epoch"] for r in history]
    bottom = np.zeros(len(history))
    fig = Figure(figsize=(6.0, 3.2), layout="constrained")
    ax = fig.subplots()
    parts = (("time_train_s", "training", "#4c72b0"), ("time_shapley_s", "Shapley rounds", "#dd8452"),
             ("time_eval_s", "evaluation", "#8c8c8c"))
    for key, label, colour in parts:
        values = np.asarray([r.get(key) or 0.0 for r in history], dtype=float)
        ax.bar(epochs, values, bottom=bottom, label=label, color=colour)
        bottom += values
    ax.set_xlabel("epoch")
    ax.set_ylabel("seconds")
    ax.set_xticks(epochs)
    twin = ax.twinx()
    twin.plot(epochs, [r.get("num_active_ops", np.nan) for r in history], "k.-", label="active ops")
    twin.set_ylabel("active non-none ops")
    twin.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    fig.legend(handles=handles, fontsize=8, loc="outside upper center", ncols=len(handles), frameon=False)
    return fig


def _box(ax: Axes, x: float, y: float, w: float, h: float, text: str, face: str) -> None:
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02", fc=face, ec="0.3"))
    ax.text(x, y, text, ha="center", va="center", fontsize=8)


def plot_retrofit_diagram(num_levels: int = 4) -> Figure:
    """The retrofit: a frozen U-Net whose skip tensors e pass through an implanted cell, ``e + cell(e)``.

    Args:
        num_levels: skip connections (BasicUNet 2D: 4). Defaults to 4.

    Returns:
        The schematic figure (method chapter).
    """
    fig = Figure(figsize=(8.0, 4.2), layout="constrained")
    ax = fig.subplots()
    step = 0.9
    for level in range(num_levels + 1):
        y = -level * step
        x_enc, x_dec = 0.8 + 0.35 * level, 7.2 - 0.35 * level
        if level < num_levels:
            _box(ax, x_enc, y, 1.0, 0.45, f"encoder {level}", "#dbe9f6")
            _box(ax, x_dec, y, 1.0, 0.45, f"decoder {level}", "#dbe9f6")
            ax.annotate("", (x_enc + 0.35, y - step + 0.23), (x_enc, y - 0.23),
                        arrowprops={"arrowstyle": "-|>", "color": "0.4"})
            ax.annotate("", (x_dec, y - 0.23), (x_dec - 0.35, y - step + 0.23),
                        arrowprops={"arrowstyle": "-|>", "color": "0.4"})
            ax.annotate("", (3.4, y), (x_enc + 0.5, y), arrowprops={"arrowstyle": "-|>", "color": "0.3"})
            ax.text((x_enc + 0.5 + 3.4) / 2, y + 0.12, "e", fontsize=8, ha="center")
            _box(ax, 4.0, y, 1.2, 0.45, "IAC cell\n(searched)", "#e8f3e0")
            ax.annotate("", (x_dec - 0.5, y), (4.6, y), arrowprops={"arrowstyle": "-|>", "color": "#2c7a2c"})
            ax.text((4.6 + x_dec - 0.5) / 2, y + 0.12, "e + cell(e)", fontsize=7, ha="center", color="#2c7a2c")
        else:
            _box(ax, 4.0, y, x_dec - x_enc + 0.4, 0.45, "bottleneck", "#dbe9f6")
    ax.text(0.1, 0.65, "image", fontsize=9)
    ax.text(7.3, 0.65, "segmentation", fontsize=9)
    ax.text(4.0, -num_levels * step - 0.65, "encoder and decoder frozen (pre-trained); the cell's output projection is 0 at implant, "
            "so the retrofitted net starts as the backbone", ha="center", fontsize=8, style="italic")
    ax.set_xlim(-0.2, 8.2)
    ax.set_ylim(-num_levels * step - 0.9, 0.9)
    ax.axis("off")
    return fig


def search_signal_text(metrics: dict[str, Any]) -> str:
    """One paragraph on how far a search moved, from its ``metrics.json`` (:data:`SIGNAL_FIELDS`).

    Args:
        metrics: the search's ``metrics.json`` body.

    Returns:
        The sentence, or one saying that the fields are not available (an older search).
    """
    missing = [f for f in SIGNAL_FIELDS if metrics.get(f) is None]
    if missing:
        return (f"How far the search moved: not available (this search's `metrics.json` lacks "
                f"{', '.join(f'`{f}`' for f in missing)}).")
    value = {f: float(metrics[f]) for f in SIGNAL_FIELDS}
    return (f"How far the search moved: on an average edge the active operations' probabilities span "
            f"{value['alpha_spread']:.3f} (max − min; 0 would be uniform), and the operations the cell keeps have "
            f"probability {value['alpha_max_prob']:.3f} on average against the uniform {value['alpha_uniform']:.3f}. "
            f"The cell weights changed by {100 * value['cell_weight_change']:.1f} % (relative L2) and the search's "
            f"training loss went from {value['loss_first']:.3f} to {value['loss_last']:.3f}.")
