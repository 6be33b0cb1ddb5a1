"""Figures of Shapley-guided pruning: values with error bars per round, what was pruned when, cost per epoch.

Pure functions from search ``history.jsonl`` records (CONTRACTS.md: ``shapley`` = {round, players
[[edge, op]], mean, stderr, ...} or null, ``pruned`` = [[edge, op], ...], ``active`` (E, P), timings).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from shapnas.networks.ops import PRIMITIVES
from shapnas.plots.search import OP_SHORT, edge_labels

__all__ = [
    "shapley_rounds",
    "player_label",
    "has_stderr",
    "value_scale",
    "plot_shapley_rounds",
    "pruning_table",
    "pruning_table_view",
    "pruned_epochs",
    "plot_pruning_timeline",
    "plot_cost_per_epoch",
    "estimator_text",
]


def shapley_rounds(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The Shapley rounds of a search, each with its ``epoch`` and what was ``pruned`` after it."""
    return [{**r["shapley"], "epoch": r["epoch"], "pruned": r.get("pruned") or []} for r in history if r.get("shapley")]


def player_label(edge: int, op: str, num_edges: int = 14) -> str:
    """A short name for an (edge, op) player, e.g. ``n1←s0 sep3``."""
    return f"{edge_labels(num_edges)[edge]} {OP_SHORT.get(op, op)}"


def has_stderr(values: Sequence[Any] | None) -> bool:
    """Whether a round recorded standard errors (a Monte Carlo estimator): some value present and above 0.
    Deterministic estimators (``ig``, ``owen``) record none, or zeros, which are not an uncertainty."""
    return any(v is not None and float(v) > 0 for v in (values or []))


def value_scale(values: Sequence[float]) -> tuple[float, str]:
    """A factor that brings small Dice-point values (largest under 0.1) to between 1 and 10 at their largest,
    and the unit the scaled values are in (stated on the axis rather than as matplotlib's offset text).

    Returns:
        ``(1.0, "Dice points")`` when the values are large enough, else e.g. ``(1000.0, "Dice points × 10⁻³")``.
    """
    largest = max((abs(float(v)) for v in values if np.isfinite(v)), default=0.0)
    if largest == 0 or largest >= 0.1:
        return 1.0, "Dice points"
    power = int(np.ceil(-np.log10(largest)))  # the largest value, scaled, lands in [1, 10)
    superscript = str(power).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return 10.0 ** power, f"Dice points × 10⁻{superscript}"


def plot_shapley_rounds(history: Sequence[Mapping[str, Any]], max_rounds: int = 4) -> Figure:
    """Shapley value of every player, sorted, in up to ``max_rounds`` rounds, in Dice points on a stated scale,
    with error bars of ± one standard error only where the estimator recorded one.

    Args:
        history: search history records.
        max_rounds: rounds shown (first, last and evenly between).

    Returns:
        One panel per round; the players pruned after that round are red.

    Raises:
        ValueError: a history without Shapley rounds (e.g. policy ``none``).
    """
    rounds = shapley_rounds(history)
    if not rounds:
        raise ValueError("no Shapley rounds in this history; expected a search with policy 'shapley'")
    picks = sorted({int(round(i)) for i in np.linspace(0, len(rounds) - 1, min(max_rounds, len(rounds)))})
    num_edges = len(history[0]["op_probs"])
    factor, unit = value_scale([100 * v for i in picks for v in rounds[i]["mean"]])
    with_stderr = any(has_stderr(rounds[i].get("stderr")) for i in picks)
    fig = Figure(figsize=(3.4 * len(picks) + 0.6, 3.4), layout="constrained")
    axes = fig.subplots(1, len(picks), squeeze=False)
    for ax, index in zip(axes[0], picks):
        record = rounds[index]
        mean = 100 * factor * np.asarray(record["mean"], dtype=float)
        order = np.argsort(mean)
        pruned = {(int(e), str(o)) for e, o in record["pruned"]}
        players = [(int(e), str(o)) for e, o in record["players"]]
        colours = ["#c44e52" if players[i] in pruned else "#4c72b0" for i in order]
        if has_stderr(record.get("stderr")):
            stderr = 100 * factor * np.asarray([v or 0.0 for v in record["stderr"]], dtype=float)
            ax.errorbar(np.arange(len(order)), mean[order], yerr=stderr[order], fmt="none", ecolor="0.6", lw=0.8)
        ax.scatter(np.arange(len(order)), mean[order], c=colours, s=12, zorder=3)
        if len(order) <= 24:
            ax.set_xticks(range(len(order)), [player_label(*players[i], num_edges) for i in order], rotation=90,
                          fontsize=6)
        else:
            ax.set_xlabel("players, sorted by value")
        ax.axhline(0, color="0.7", lw=0.6)
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
        ax.set_title(f"round {record['round']} (epoch {record['epoch']}): {len(players)} players, "
                     f"{len(pruned)} pruned", fontsize=8)
    axes[0][0].set_ylabel(f"Shapley value ({unit})" + (" ± s.e." if with_stderr else ", no s.e. recorded"))
    return fig


def pruning_table(history: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per pruned (edge, op): the epoch, the op, and its Shapley value ± s.e. when it was pruned."""
    rows = []
    num_edges = len(history[0]["op_probs"]) if history else 14
    for record in history:
        shapley = record.get("shapley") or {}
        players = [(int(e), str(o)) for e, o in shapley.get("players", [])]
        stderr = shapley.get("stderr") or [None] * len(players)
        values = dict(zip(players, zip(shapley.get("mean", []), stderr)))
        for edge, op in record.get("pruned") or []:
            mean, stderr = values.get((int(edge), str(op)), (None, None))
            rows.append({"epoch": record["epoch"], "edge": edge_labels(num_edges)[int(edge)], "op": op,
                         "Shapley value": mean, "s.e.": stderr})
    return pd.DataFrame(rows, columns=["epoch", "edge", "op", "Shapley value", "s.e."])


def _decimals(values: pd.Series, least: int = 3, most: int = 8) -> int:
    """Decimals that show the smallest non-zero |value| with two significant digits (no e-notation)."""
    nonzero = values.abs()[values.abs() > 0].dropna()
    if nonzero.empty:
        return least
    return int(min(most, max(least, np.ceil(-np.log10(nonzero.min())) + 1)))


def pruning_table_view(history: Sequence[Mapping[str, Any]]) -> Any:
    """:func:`pruning_table` for reading: values and standard errors in Dice points (× 100, at least three
    decimals and enough for two significant digits of the smallest value, no e-notation; the s.e. column only
    where the estimator recorded one), every row shown in a scroll box (CSS class ``long-table``)."""
    table = pruning_table(history)
    if not has_stderr(table["s.e."].tolist()):  # a deterministic estimator: no uncertainty to show
        table = table.drop(columns="s.e.")
    values = [c for c in ("Shapley value", "s.e.") if c in table]
    table[values] = table[values].astype(float) * 100
    table = table.rename(columns={"Shapley value": "Shapley value (Dice points)", "s.e.": "s.e. (points)"})
    digits = _decimals(table["Shapley value (Dice points)"])
    formats = {"Shapley value (Dice points)": f"{{:+.{digits}f}}", "s.e. (points)": f"{{:.{digits}f}}"}
    return (table.style.format({k: v for k, v in formats.items() if k in table}, na_rep="–")
            .hide(axis="index").set_table_attributes('class="long-table"'))


def pruned_epochs(history: Sequence[Mapping[str, Any]], primitives: Sequence[str] = PRIMITIVES) -> np.ndarray:
    """(E, P) array: the epoch after which each op was pruned, NaN when it survived (``none`` included)."""
    num_edges = len(history[0]["op_probs"])
    epochs = np.full((num_edges, len(primitives)), np.nan)
    for record in history:
        for edge, op in record.get("pruned") or []:
            epochs[int(edge), list(primitives).index(op)] = record["epoch"]
    return epochs


def plot_pruning_timeline(history: Sequence[Mapping[str, Any]], primitives: Sequence[str] = PRIMITIVES) -> Figure:
    """Which op was pruned when: an edges × ops grid coloured by the pruning epoch; survivors marked.

    Args:
        history: search history records (``pruned``, ``active``, ``op_probs``).
        primitives: column names.

    Returns:
        The figure; the ops still active at the end (other than ``none``) carry a dot.
    """
    if not history:
        raise ValueError("history is empty; expected at least one search epoch record")
    epochs = pruned_epochs(history, primitives)
    final_active = np.asarray(history[-1].get("active", np.ones_like(epochs, dtype=bool)), dtype=bool)
    fig = Figure(figsize=(5.6, 0.3 * epochs.shape[0] + 1.6), layout="constrained")
    ax = fig.subplots()
    levels = sorted({int(v) for v in epochs[np.isfinite(epochs)]}) or [0]
    colours = matplotlib.colormaps["plasma_r"].resampled(max(len(levels), 2))(np.linspace(0, 1, max(len(levels), 2)))
    index = np.full(epochs.shape, np.nan)  # one discrete colour per pruning epoch
    for k, level in enumerate(levels):
        index[epochs == level] = k
    image = ax.imshow(index, cmap=ListedColormap(colours[:len(levels)]), vmin=-0.5, vmax=len(levels) - 0.5,
                      aspect="auto", interpolation="nearest")
    candidates = np.array([p != "none" for p in primitives])  # none is never a player
    survivors = np.argwhere(final_active & ~np.isfinite(epochs) & candidates)
    ax.scatter(survivors[:, 1], survivors[:, 0], marker="o", s=16, color="black", label="still active")
    ax.set_xticks(range(len(primitives)), [OP_SHORT.get(p, p) for p in primitives], rotation=90, fontsize=7)
    ax.set_yticks(range(epochs.shape[0]), edge_labels(epochs.shape[0]), fontsize=7)
    ax.set_title("colour: epoch after which an op was pruned; ● still active", fontsize=8)
    bar = fig.colorbar(image, ax=ax, label="pruned after epoch", ticks=range(len(levels)))
    bar.set_ticklabels([str(level) for level in levels])
    return fig


def plot_cost_per_epoch(histories: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure:
    """Wall-clock per epoch and active ops per epoch of several searches (e.g. full vs Shapley-pruned).

    Args:
        histories: label -> search history records.

    Returns:
        Two panels: seconds per epoch (training + Shapley + evaluation; Shapley share dashed) and the
        number of active non-``none`` ops; the cumulative wall-clock of each search is in the legend.
    """
    if not any(histories.values()):
        raise ValueError("all histories are empty; expected at least one search epoch record")
    fig = Figure(figsize=(8.4, 3.0), layout="constrained")
    (time_ax, ops_ax) = fig.subplots(1, 2)
    for label, history in histories.items():
        if not history:
            continue
        epochs = [r["epoch"] for r in history]
        total = [sum(r.get(k) or 0.0 for k in ("time_train_s", "time_shapley_s", "time_eval_s")) for r in history]
        wall = history[-1].get("wall_s") or sum(total)
        (line,) = time_ax.plot(epochs, total, ".-", label=f"{label} ({wall:.0f} s in all)")
        shapley = [r.get("time_shapley_s") or 0.0 for r in history]
        if any(r.get("shapley") for r in history):  # a search that ran Shapley rounds
            time_ax.plot(epochs, shapley, "--", color=line.get_color(), lw=1, label=f"{label}: Shapley rounds")
        ops_ax.plot(epochs, [r.get("num_active_ops") for r in history], ".-", color=line.get_color(), label=label)
    time_ax.set(xlabel="epoch", ylabel="seconds per epoch", title="cost per epoch")
    ops_ax.set(xlabel="epoch", ylabel="active non-none ops", title="search space size")
    ops_ax.set_ylim(bottom=0)
    for ax in (time_ax, ops_ax):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    time_ax.set_ylim(bottom=0)
    return fig



def _first(record: Mapping[str, Any], *keys: str) -> Any:
    return next((record[k] for k in keys if record.get(k) is not None), None)


def estimator_text(history: Sequence[Mapping[str, Any]]) -> str:
    """One paragraph on the Shapley rounds of a search: the estimator, its cost per round, its completeness
    gap |Σφ − (v(N) − v(∅))| / |v(N) − v(∅)| where the rounds record them, and whether the rounds had
    anything to rank (their total effect |v(N) − v(∅)| against :data:`SIGNAL_MIN_DICE`).

    Args:
        history: search history records (``shapley`` per epoch: ``estimator``, ``completeness_gap``,
            ``passes``, ``num_evals`` or ``evaluations``, ``ms``; older searches have some of them).

    Returns:
        The paragraph; "not recorded" for what the rounds lack.
    """
    rounds = shapley_rounds(history)
    if not rounds:
        return "Shapley rounds: not available (this search ran none)."
    names = sorted({str(r["estimator"]) for r in rounds if r.get("estimator")})
    seconds = [float(r.get("time_shapley_s") or 0.0) for r in history if r.get("shapley")]
    players = [len(r.get("players") or []) for r in rounds]
    which = f"with the {' and '.join(f'`{n}`' for n in names)} estimator" if names else "(estimator not recorded)"
    text = (f"{len(rounds)} Shapley round(s) {which}, valuing {players[0]} to {players[-1]} players, "
            f"{np.mean(seconds):.1f} s per round on average")
    evaluations = [v for v in (_first(r, "num_evals", "evaluations") for r in rounds) if v is not None]
    passes = [v for v in (_first(r, "passes", "num_passes") for r in rounds) if v is not None]
    costs = [f"{np.mean(evaluations):.0f} value evaluations" if evaluations else "",
             f"{np.mean(passes):.0f} forward+backward passes" if passes else ""]
    text += f" ({' and '.join(c for c in costs if c)} per round)." if any(costs) else "."
    gaps = [float(v) for v in (_first(r, "completeness_gap") for r in rounds) if v is not None]
    gap = "|Σφ − (v(N) − v(∅))| / |v(N) − v(∅)|"
    text += (f" Completeness gap {gap}: median {100 * np.median(gaps):.1f} %, largest {100 * max(gaps):.1f} %."
             if gaps else " Completeness gap: not recorded by this estimator.")
    return text + _signal_sentence(rounds)


# |v(N) − v(∅)| (soft Dice) below which a round's values rank contributions too small to matter: a test Dice
# difference of this size is about what the paired intervals of the workshop evaluation can resolve
SIGNAL_MIN_DICE = 0.01


def _signal_sentence(rounds: Sequence[Mapping[str, Any]]) -> str:
    """Whether the rounds had anything to rank: the total effect |v(N) − v(∅)| of the cells per round."""
    effects = [abs(float(r["value_full"]) - float(r["value_empty"])) for r in rounds
               if r.get("value_full") is not None and r.get("value_empty") is not None]
    if not effects:
        return " Total effect |v(N) − v(∅)| of the rounds: not recorded."
    listed = ", ".join(f"{e:.5f}" for e in effects)
    if max(effects) < SIGNAL_MIN_DICE:
        return (f" Total effect |v(N) − v(∅)| of the cells per round: {listed} soft Dice, below {SIGNAL_MIN_DICE}: "
                "the cells barely change the prediction yet, so these values rank contributions far smaller than "
                "any Dice difference the evaluation can see, and which operations are pruned is close to arbitrary.")
    return (f" Total effect |v(N) − v(∅)| of the cells per round: {listed} soft Dice, at least {SIGNAL_MIN_DICE} in "
            "some round: the values rank contributions that move the prediction.")
