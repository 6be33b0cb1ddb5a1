"""Tables, figures and computed sentences of the ablations (notebook 05) and of the stability across seeds
(notebook 06).

Benedykciuk et al. (Sci. Rep. 2026) compare Shapley-guided pruning with the full search and with other
pruning rules over seeds, and claim more stable choices; the settings of the estimator and of the schedule
are ours to vary (method.md). Inputs: :func:`shapnas.ablations.ablation_records` (summary records with
``axis``, ``setting``, ``variant``), :func:`shapnas.stability.stability_report` rows and
:func:`shapnas.cli.stability_cmd.collect_stability_records` records. Every verdict is computed from them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from scipy.stats import rankdata

from shapnas.genotype import edge_index, num_edges
from shapnas.ops import PRIMITIVES
from shapnas.policies import POLICY_NAMES
from shapnas.plots.search import OP_SHORT, edge_labels
from shapnas.stability import rank_correlation

__all__ = [
    "AXES",
    "POLICY_ORDER",
    "OP_COLOURS",
    "ablation_stats",
    "ablation_table",
    "plot_ablations",
    "ablation_text",
    "ablation_plan_text",
    "stability_table",
    "stability_overview",
    "stability_text",
    "plot_genotypes_across_seeds",
    "plot_shapley_rank_agreement",
]

AXES = ("policy", "permutations M", "schedule T/r", "value function", "truncation τ", "α sharing",
        "partial channels K")
POLICY_ORDER = POLICY_NAMES
# one fixed colour per candidate op (``none`` is never kept), shared by every figure of this module
OP_COLOURS = {op: matplotlib.colormaps["tab10"](i) for i, op in enumerate(p for p in PRIMITIVES if p != "none")}
# measures of the chosen cells on which the stability verdict rests (1: higher is more stable)
STABILITY_METRICS = (("jaccard", "genotype Jaccard", 1), ("modal_agreement", "modal-op agreement", 1))
TIE = 1e-3  # metric differences below this count as ties
MIN_DICE_SPAN = 2.0  # Dice points: the smallest y range of an ablation panel


def _fmt(value: Any, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _mean_std(mean: float, std: float, digits: int = 1) -> str:
    """``mean ± std``; the mean alone when the std is undefined (one seed); ``–`` without a mean."""
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _order(axis: str, setting: str, seen: Sequence[tuple[str, str]]) -> tuple[int, int]:
    """Sort key: axes as in :data:`AXES`; ``default`` first within an axis, policies as in :data:`POLICY_ORDER`."""
    axis_key = AXES.index(axis) if axis in AXES else len(AXES) + [a for a, _ in seen].index(axis)
    if axis == "policy" and setting in POLICY_ORDER:
        return axis_key, POLICY_ORDER.index(setting)
    return axis_key, 0 if setting == "default" else len(POLICY_ORDER) + seen.index((axis, setting))


def ablation_stats(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Numbers per (axis, setting) over seeds: the basis of the table, the figure and the sentences.

    Args:
        records: :func:`shapnas.ablations.ablation_records` records (``axis``, ``setting``, ``seed``,
            ``dice_mean`` in [0, 1], ``hd95_mean``, ``search_wall_s``, ``epochs``).

    Returns:
        Rows in display order with ``axis``, ``setting``, ``seeds`` (n), ``dice`` and ``dice_std`` (test Dice in
        %, sample std, ddof 1, NaN for one seed), ``hd95``, ``wall`` and ``wall_std`` (search seconds),
        ``epochs`` (mean).
    """
    columns = ["axis", "setting", "seeds", "dice", "dice_std", "hd95", "wall", "wall_std", "epochs"]
    frame = pd.DataFrame([{k: r.get(k) for k in ("axis", "setting", "seed", "dice_mean", "hd95_mean",
                                                 "search_wall_s", "epochs")} for r in records])
    if frame.empty:
        return pd.DataFrame(columns=columns)
    for column in ("dice_mean", "hd95_mean", "search_wall_s", "epochs"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    seen = list(dict.fromkeys(zip(frame["axis"], frame["setting"])))
    rows = []
    for (axis, setting), group in frame.groupby(["axis", "setting"], sort=False):
        dice = group["dice_mean"].dropna() * 100
        wall = group["search_wall_s"].dropna()
        rows.append({"axis": axis, "setting": setting, "seeds": len(group),
                     "dice": dice.mean() if len(dice) else np.nan, "dice_std": dice.std(ddof=1),
                     "hd95": group["hd95_mean"].mean(), "wall": wall.mean() if len(wall) else np.nan,
                     "wall_std": wall.std(ddof=1), "epochs": group["epochs"].mean()})
    rows.sort(key=lambda row: _order(row["axis"], row["setting"], seen))
    return pd.DataFrame(rows, columns=columns).astype({c: float for c in columns[3:]})


def ablation_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The ablations for display: per (axis, setting) seeds, test Dice (%), HD95, search seconds and epochs.

    Args:
        records: :func:`shapnas.ablations.ablation_records` records of one dataset.

    Returns:
        Index (axis, setting), the default first within each axis and the policies in the order none,
        shapley, alpha, js, random; mean ± std (ddof 1) over seeds where there are several.
    """
    stats = ablation_stats(records)
    table = pd.DataFrame({
        "seeds": stats["seeds"].astype(int),
        "Dice (%)": [_mean_std(m, s) for m, s in zip(stats["dice"], stats["dice_std"])],
        "HD95": [_fmt(v, 2) for v in stats["hd95"]],
        "search (s)": [_mean_std(m, s, 1) for m, s in zip(stats["wall"], stats["wall_std"])],
        "epochs": [_fmt(v, 1).removesuffix(".0") for v in stats["epochs"]],
    })
    table.index = pd.MultiIndex.from_frame(stats[["axis", "setting"]])
    return table


def plot_ablations(records: Sequence[Mapping[str, Any]]) -> Figure:
    """Test Dice against search wall-clock, one small panel per ablation axis.

    Args:
        records: :func:`shapnas.ablations.ablation_records` records of one dataset.

    Returns:
        One marker per setting at its mean over seeds, ± one std (ddof 1) in both directions where it has two
        seeds or more; the default (or, on the policy axis, ``none``) in black.

    Raises:
        ValueError: without records.
    """
    stats = ablation_stats(records)
    if stats.empty:
        raise ValueError("no ablation records; expected shapnas.ablations.ablation_records of a dataset")
    axes_names = list(dict.fromkeys(stats["axis"]))
    cols = min(3, len(axes_names))  # three panels a row: text stays ~9 px at the book's column width
    rows = math.ceil(len(axes_names) / cols)
    fig = Figure(figsize=(2.9 * cols, 2.8 * rows), layout="constrained")
    grid = fig.subplots(rows, cols, squeeze=False)
    colours = matplotlib.colormaps["tab10"]
    for ax, axis in zip(grid.flat, axes_names):
        group = stats[stats["axis"] == axis].reset_index(drop=True)
        for i, row in group.iterrows():
            reference = row["setting"] in ("default", "none")
            colour = "black" if reference else colours((i + 1) % 10)
            spread = row["seeds"] >= 2
            ax.errorbar(row["wall"], row["dice"], xerr=row["wall_std"] if spread else None,
                        yerr=row["dice_std"] if spread else None, fmt="s" if reference else "o", color=colour,
                        ms=5, capsize=2, lw=0.9, label=f"{row['setting']} (n={int(row['seeds'])})")
        ax.set_title(axis, fontsize=10)
        ax.margins(x=0.35, y=0.3)
        low, high = ax.get_ylim()
        if high - low < MIN_DICE_SPAN:  # near-equal settings should look near-equal
            middle = (low + high) / 2
            ax.set_ylim(middle - MIN_DICE_SPAN / 2, middle + MIN_DICE_SPAN / 2)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8.5)
        ax.set_xlabel("search wall-clock (s)", fontsize=9)
        ax.legend(fontsize=8, loc="best", handlelength=1.0, borderpad=0.3, labelspacing=0.25)
    for ax in grid.flat[len(axes_names):]:
        ax.set_visible(False)
    for ax in grid[:, 0]:
        ax.set_ylabel("test Dice (%)", fontsize=9)
    fig.suptitle("mean over seeds; bars: ± 1 std over seeds (n ≥ 2)", fontsize=9)
    return fig


def _verdict(best: pd.Series, other: pd.Series) -> tuple[str, bool | None]:
    """Whether ``best`` leads ``other`` by more than the seed std of both (None: a setting has one seed)."""
    gap = best["dice"] - other["dice"]
    noise = max(best["dice_std"], other["dice_std"])
    if math.isnan(noise) or min(best["seeds"], other["seeds"]) < 2:
        return f"a lead of {gap:.2f} points with one seed per setting, so no seed spread to compare it with", None
    if gap > noise:
        return f"a lead of {gap:.2f} points, larger than the seed std ({noise:.2f} points)", True
    return f"a lead of {gap:.2f} points, within the seed std ({noise:.2f} points)", False


def ablation_text(records: Sequence[Mapping[str, Any]]) -> str:
    """One Markdown line per ablation axis: the best setting by test Dice and whether its lead over the
    runner-up exceeds the seed noise, then an overall sentence.

    Args:
        records: :func:`shapnas.ablations.ablation_records` records of one dataset.

    Returns:
        Markdown text; a sentence saying so when there is nothing to compare.
    """
    stats = ablation_stats(records).dropna(subset=["dice"])
    lines, beyond, within, unknown = [], [], [], []
    for axis, group in stats.groupby("axis", sort=False):
        ranked = group.sort_values("dice", ascending=False, kind="stable")
        if len(ranked) < 2:
            continue
        best, other = ranked.iloc[0], ranked.iloc[1]
        words, exceeds = _verdict(best, other)
        {True: beyond, False: within, None: unknown}[exceeds].append(axis)
        wall = f"; its search took {best['wall']:.0f} s against {other['wall']:.0f} s" if not (
            math.isnan(best["wall"]) or math.isnan(other["wall"])) else ""
        lines.append(f"- **{axis}**: best `{best['setting']}` ({best['dice']:.1f} % test Dice against "
                     f"{other['dice']:.1f} % for `{other['setting']}`): {words}{wall}.")
    if not lines:
        return "No ablation axis has two settings with a measured test Dice yet, so there is nothing to compare."
    if beyond:
        closing = (f"The best setting leads by more than the seed noise on {len(beyond)} of {len(lines)} axes "
                   f"({', '.join(beyond)}); the other differences are within the noise of these seeds or "
                   "not measurable.")
    elif within:
        closing = (f"No best setting leads by more than the seed std (within the noise on {len(within)} of "
                   f"{len(lines)} axes" + (f", one seed per setting on {len(unknown)}" if unknown else "") + "): "
                   "at these sizes the ablations show that every setting runs, not which one is better.")
    else:
        closing = ("Every axis has settings with one seed only, so no difference can be told from seed noise: "
                   "the ablations show that every setting runs, not which one is better.")
    return "\n".join(lines) + "\n\n" + closing


def _covering_profile(dataset: str) -> str | None:
    """The smallest of the workshop and paper profiles whose ablation plan covers ``dataset``."""
    from shapnas.ablations import ablation_plan

    return next((p for p in ("workshop", "paper") if dataset in ablation_plan(p).datasets), None)


def ablation_plan_text(results: str | Path, dataset: str) -> str:
    """What the ablation plan under ``results`` ran for ``dataset``, or how to run it (Markdown).

    Args:
        results: the results folder (``<results>/ablations/plan.json``).
        dataset: the dataset of the notebook.

    Returns:
        A sentence naming the plan's profile, datasets, seeds, policies and variants; when the plan is missing,
        leaves ``dataset`` out or has no finished evaluation of it, a note with the command that runs it.
    """
    from shapnas.ablations import ablation_records, load_plan

    plan = load_plan(results)
    if plan is None or dataset not in plan.datasets:
        where = ("no ablation plan has been run in this results folder" if plan is None else
                 f"the plan run here covers {', '.join(plan.datasets)}, not {dataset}")
        profile = _covering_profile(dataset)
        how = (f"`python -m shapnas ablations --profile {profile} --datasets {dataset}` runs them "
               f"(`python -m shapnas run --profile {profile} --datasets {dataset}` runs them before this "
               "chapter)." if profile else
               f"No profile's plan covers {dataset} (`shapnas.ablations.ablation_plan`); add it to a plan, then "
               f"run `python -m shapnas ablations --profile paper --datasets {dataset}`.")
        return f"**Not run yet:** {where}, so this page shows no results for {dataset}. {how}"
    ran = plan.profile
    if not ablation_records(results, dataset):
        return (f"**No results yet:** the `{ran}` ablation plan covers {dataset}, but none of its evaluations has "
                f"finished (the job logs are in the run folders); `python -m shapnas ablations --profile {ran} "
                f"--datasets {dataset}` completes what is missing.")
    variants = ", ".join(f"{v.setting} ({v.axis})" for v in plan.variants) or "none"
    scale = ", ".join(f"`{key}={value}`" for key, value in plan.scale.items())
    return (f"The `{ran}` ablation plan was run for {', '.join(plan.datasets)}: policies "
            f"{', '.join(plan.policies)} with seeds {', '.join(map(str, plan.seeds))}; the Shapley search with one "
            f"setting changed (variants: {variants}) with seeds {', '.join(map(str, plan.variant_seeds))} on "
            f"{', '.join(plan.variant_datasets or plan.datasets)}, each against the default Shapley search of "
            f"the same seeds. "
            + (f"Every run of the plan is smaller than this profile's main runs ({scale}), so its numbers are "
               "not those of chapters 2–4. " if scale else "") + f"Shown: {dataset}.")


def _one_group(rows: Sequence[Mapping[str, Any]], dataset: str | None, what: str) -> list[Mapping[str, Any]]:
    """``rows`` of ``dataset``; a ValueError when they span several (dataset, backbone) pairs."""
    rows = [r for r in rows if dataset is None or r["dataset"] == dataset]
    groups = sorted({(str(r["dataset"]), str(r.get("backbone"))) for r in rows})
    if len(groups) > 1:
        raise ValueError(f"{what} of {groups}; expected one dataset and backbone (pass dataset=...)")
    return rows


def _policy_key(policy: str) -> tuple[int, str]:
    return (POLICY_ORDER.index(policy) if policy in POLICY_ORDER else len(POLICY_ORDER), policy)


def stability_table(report: Sequence[Mapping[str, Any]], dataset: str | None = None) -> pd.DataFrame:
    """Stability per policy of one dataset: seeds, genotype agreement, Jaccard, JS divergence, Shapley rank
    correlation and test Dice over seeds.

    Args:
        report: :func:`shapnas.stability.stability_report` rows.
        dataset: keep this dataset (None: the report must hold one dataset and backbone).

    Returns:
        Index: policies (none, shapley, alpha, js, random first); ``–`` where a metric does not apply (e.g.
        Shapley rank correlation of a policy without Shapley rounds) or needs more seeds.
    """
    rows = sorted(_one_group(report, dataset, "stability rows"), key=lambda r: _policy_key(r["policy"]))
    table = pd.DataFrame({
        "seeds": [int(r["num_seeds"]) for r in rows],
        "op agreement": [_fmt(r["modal_agreement"], 2) for r in rows],
        "Jaccard": [_fmt(r["jaccard"], 2) for r in rows],
        "JS divergence": [_fmt(r["js"], 3) for r in rows],
        "Kendall τ": [_fmt(r["kendall"], 2) for r in rows],
        "Spearman ρ": [_fmt(r["spearman"], 2) for r in rows],
        # issue 9: what random genotypes of the same shape reach on the same metric (95th percentile)
        "agreement, chance p95": [_fmt(r.get("chance_modal_agreement_p95", math.nan), 2) for r in rows],
        "Jaccard, chance p95": [_fmt(r.get("chance_jaccard_p95", math.nan), 2) for r in rows],
        "Dice (%)": [_mean_std(100 * float(r["dice_mean"]), 100 * float(r["dice_std"])) for r in rows],
    }, index=pd.Index([r["policy"] for r in rows], name="policy"))
    return table


def stability_overview(report: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """:func:`stability_table` for every dataset of ``report``, stacked (the cross-dataset results page).

    Args:
        report: :func:`shapnas.stability.stability_report` rows of any datasets (one backbone each).

    Returns:
        Index (dataset, policy); an empty frame with a ``note`` column when ``report`` is empty.
    """
    datasets = sorted({str(r["dataset"]) for r in report})
    if not datasets:
        return pd.DataFrame({"note": ["no ablation plan has been run: python -m shapnas ablations --profile workshop"]})
    return pd.concat({d: stability_table(report, d) for d in datasets}, names=["dataset", "policy"])


def stability_text(report: Sequence[Mapping[str, Any]], dataset: str | None = None) -> str:
    """Shapley-pruned search (``shapley``) against the full search (``none``): genotype Jaccard, modal-op
    agreement, JS divergence and test Dice std, and a plain verdict on whether it is more stable here.

    Args:
        report: :func:`shapnas.stability.stability_report` rows.
        dataset: keep this dataset (None: the report must hold one dataset and backbone).

    Returns:
        Markdown text; says what is missing when the comparison cannot be made. The verdict rests on the
        chosen cells (Jaccard, agreement); the JS divergence is reported beside them but not counted, since
        pruning makes the op distributions peaked while a short full search leaves them near uniform (and
        near-uniform distributions agree across seeds whatever the search learnt).
    """
    rows = {r["policy"]: r for r in _one_group(report, dataset, "stability rows")}
    if "shapley" not in rows or "none" not in rows:
        return ("The comparison needs both the full search (`none`) and the Shapley-pruned search (`shapley`); "
                f"found: {', '.join(sorted(rows)) or 'no finished searches'}.")
    pruned, full = rows["shapley"], rows["none"]
    seeds = min(pruned["num_seeds"], full["num_seeds"])
    if seeds < 2:
        return f"Stability needs at least two seeds of both searches; there are {seeds}."
    better, worse, parts = [], [], []
    for key, name, sign in STABILITY_METRICS:
        a, b = float(pruned[key]), float(full[key])
        if math.isnan(a) or math.isnan(b):
            continue
        parts.append(f"{name} {a:.2f} against {b:.2f}")
        (better if sign * (a - b) > TIE else worse if sign * (a - b) < -TIE else []).append(name)
    js = (f" (JS divergence of the final op distributions, not counted: {pruned['js']:.2f} against "
          f"{full['js']:.2f})" if not (math.isnan(pruned["js"]) or math.isnan(full["js"])) else "")
    measured = "With Shapley pruning against the full search: " + "; ".join(parts) + js + "."
    if better and not worse:
        verdict = f"**Yes:** the Shapley-pruned search is more stable here ({', '.join(better)})."
    elif worse and not better:
        verdict = f"**No:** the Shapley-pruned search is less stable here ({', '.join(worse)})."
    elif better:
        verdict = (f"**Not clearly:** the Shapley-pruned search is more stable by {', '.join(better)} but less "
                   f"by {', '.join(worse)}.")
    else:
        verdict = "**No difference:** both searches are equally stable by these measures."
    spread = (f"Test Dice varies by {100 * pruned['dice_std']:.1f} points (std over seeds) with Shapley pruning "
              f"and by {100 * full['dice_std']:.1f} points without." if not (
                  math.isnan(pruned["dice_std"]) or math.isnan(full["dice_std"])) else "")
    caveat = (f" With {seeds} seeds per search (the paper's comparison needs at least 3), this is weak evidence."
              if seeds < 3 else f" ({seeds} seeds per search.)")
    return " ".join(p for p in (measured, verdict + caveat, spread, _chance_text(full, pruned)) if p)


def _chance_text(full: Mapping[str, Any], pruned: Mapping[str, Any]) -> str:
    """Whether each search's cells agree across seeds more than random cells of the same shape do (issue 9)."""
    agree, jacc = float(full.get("chance_modal_agreement_p95", math.nan)), float(full.get("chance_jaccard_p95", math.nan))
    if math.isnan(agree) or math.isnan(jacc):
        return ""
    verdicts = []
    for name, row in (("full search", full), ("Shapley-pruned search", pruned)):
        above = float(row["modal_agreement"]) > agree or float(row["jaccard"]) > jacc
        verdicts.append(f"the {name} is {'above' if above else '**at or below chance**'}")
    return (f"Chance level (95th percentile over random genotypes of the same shape): op agreement {agree:.2f}, "
            f"Jaccard {jacc:.2f}; " + ", ".join(verdicts) + ". Below chance, the chosen cells carry no "
            "stable signal and the comparison above reads noise.")


def _num_edges(records: Sequence[Mapping[str, Any]]) -> int:
    """Edges of the cell: rows of ``op_probs`` when present, else from the genotypes' largest node."""
    for record in records:
        if record.get("op_probs") is not None:
            return len(record["op_probs"])
    nodes = [int(node) for r in records for node, _, _ in r["genotype"]]
    return num_edges(max(nodes) + 1 if nodes else 4)


def plot_genotypes_across_seeds(stability_records: Sequence[Mapping[str, Any]],
                                policies: Sequence[str] | None = None, dataset: str | None = None) -> Figure:
    """The derived cells of every seed side by side: per policy an edges × seeds grid coloured by the op
    kept on each edge (blank: the edge is not in the cell).

    Args:
        stability_records: :func:`shapnas.cli.stability_cmd.collect_stability_records` records.
        policies: policies to show, in this order (None: every policy present, none, shapley, ... first).
        dataset: keep this dataset (None: the records must hold one dataset and backbone).

    Returns:
        One panel per policy; op names in the cells and a legend of the op colours.

    Raises:
        ValueError: without records of the chosen policies.
    """
    records = _one_group(stability_records, dataset, "stability records")
    present = sorted({r["policy"] for r in records}, key=_policy_key)
    chosen = [p for p in (policies or present) if p in present]
    if not chosen:
        raise ValueError(f"no stability records of policies {list(policies or [])}; found {present}")
    edges = _num_edges(records)
    groups = {p: sorted((r for r in records if r["policy"] == p), key=lambda r: r["seed"]) for p in chosen}
    widths = [len(g) for g in groups.values()]
    fig = Figure(figsize=(min(0.42 * sum(widths) + 0.5 * len(chosen) + 1.3, 9), 0.27 * edges + 2), layout="constrained")
    axes = fig.subplots(1, len(chosen), sharey=True, squeeze=False, width_ratios=widths)[0]
    used = set()
    for ax, (policy, group) in zip(axes, groups.items()):
        image = np.ones((edges, len(group), 4))  # (E, S, RGBA), white = edge not kept
        for column, record in enumerate(group):
            for node, src, op in record["genotype"]:
                row = edge_index(int(node), int(src))
                image[row, column] = OP_COLOURS.get(op, (0.5, 0.5, 0.5, 1.0))
                ax.text(column, row, OP_SHORT.get(op, op), ha="center", va="center", fontsize=7.5, color="white")
                used.add(op)
        ax.imshow(image, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(group)), [str(r["seed"]) for r in group], fontsize=8.5)
        ax.set_xlabel("seed", fontsize=9)
        ax.set_xticks(np.arange(len(group) + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(edges + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="0.85", lw=0.5)
        ax.tick_params(which="minor", length=0)
        ax.set_title(policy, fontsize=10)
    axes[0].set_yticks(range(edges), edge_labels(edges), fontsize=8.5)
    handles = [Patch(color=OP_COLOURS.get(op, (0.5, 0.5, 0.5, 1.0)), label=OP_SHORT.get(op, op))
               for op in sorted(used, key=lambda o: PRIMITIVES.index(o) if o in PRIMITIVES else len(PRIMITIVES))]
    fig.legend(handles=handles, fontsize=8.5, loc="outside lower center", ncols=min(len(handles), 7), frameon=False,
               title="op kept on the edge (blank: edge not in the cell)", title_fontsize=8.5)
    return fig


def plot_shapley_rank_agreement(stability_records: Sequence[Mapping[str, Any]], policy: str = "shapley",
                                dataset: str | None = None, max_pairs: int = 6) -> Figure:
    """Rank of each player's last-round Shapley value in one seed against another, for seed pairs.

    Players are the (edge, op) pairs present in the last Shapley round of every seed; rank 1 is the highest
    value. Points on the diagonal are ranked alike; Kendall τ of each pair is in the panel title (their mean
    is the Kendall τ of :func:`shapnas.stability.stability_report` when every pair is shown).

    Args:
        stability_records: :func:`shapnas.cli.stability_cmd.collect_stability_records` records.
        policy: the policy whose searches ran Shapley rounds. Defaults to ``shapley``.
        dataset: keep this dataset (None: the records must hold one dataset and backbone).
        max_pairs: seed pairs shown at most (the first ones in seed order).

    Returns:
        One panel per seed pair, points coloured by op.

    Raises:
        ValueError: with fewer than two seeds carrying Shapley values.
    """
    records = sorted((r for r in _one_group(stability_records, dataset, "stability records")
                      if r["policy"] == policy and r.get("shapley_values")), key=lambda r: r["seed"])
    if len(records) < 2:
        raise ValueError(f"{len(records)} seed(s) of policy {policy!r} carry Shapley values; expected at least 2")
    common = [k for k in records[0]["shapley_values"] if all(k in r["shapley_values"] for r in records)]
    pairs = [(a, b) for a in range(len(records)) for b in range(a + 1, len(records))][:max_pairs]
    cols = min(3, len(pairs))
    rows = math.ceil(len(pairs) / cols)
    fig = Figure(figsize=(3.0 * cols + 1.2, 2.9 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    ops = [key.split(":", 1)[1] for key in common]
    for ax, (a, b) in zip(axes.flat, pairs):
        first, second = records[a], records[b]
        values = [{k: float(r["shapley_values"][k]) for k in common} for r in (first, second)]
        ranks = [rankdata([-v for v in pair.values()]) for pair in values]
        tau = rank_correlation(values)["kendall"]
        ax.plot([1, max(len(common), 1)], [1, max(len(common), 1)], color="0.75", lw=0.8, zorder=1)
        ax.scatter(ranks[0], ranks[1], s=14, c=[OP_COLOURS.get(op, (0.5, 0.5, 0.5, 1.0)) for op in ops], zorder=2)
        ax.set_title(f"seed {first['seed']} vs seed {second['seed']}: τ = {_fmt(tau, 2)}", fontsize=8)
        ax.set_xlabel(f"rank, seed {first['seed']}", fontsize=8)
        ax.set_ylabel(f"rank, seed {second['seed']}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_aspect("equal", adjustable="datalim")
    for ax in axes.flat[len(pairs):]:
        ax.set_visible(False)
    handles = [Patch(color=OP_COLOURS[op], label=OP_SHORT.get(op, op)) for op in OP_COLOURS if op in ops]
    fig.legend(handles=handles, fontsize=7, loc="outside right center", frameon=False)
    mean = rank_correlation([r["shapley_values"] for r in records])["kendall"]
    total = len(records) * (len(records) - 1) // 2
    shown = f"; {len(pairs)} of {total} pairs shown" if len(pairs) < total else ""
    fig.suptitle(f"last Shapley round: ranks of the {len(common)} players (edge, op) common to {len(records)} "
                 f"seeds\n(rank 1 = highest value; mean Kendall τ over all seed pairs {_fmt(mean, 2)}{shown})",
                 fontsize=8)
    return fig
