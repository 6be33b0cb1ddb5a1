"""Numbers and tables of the ablations (notebook 05) and of the stability across seeds (notebook 06).

Benedykciuk et al. (Sci. Rep. 2026) compare Shapley-guided pruning with the full search and with other
pruning rules over seeds; the settings of the estimator and of the schedule are ours to vary (method.md).
Inputs: :func:`shapnas.experiments.ablations.ablation_records` (summary records with ``axis``, ``setting``, ``variant``)
and :func:`shapnas.experiments.stability.report.stability_report` rows. The sentences built on these numbers are in
:mod:`shapnas.plots.experiment_text`, the figures in :mod:`shapnas.plots.experiments`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from shapnas.config.names import POLICY_NAMES

__all__ = [
    "AXES",
    "POLICY_ORDER",
    "ablation_stats",
    "ablation_table",
    "STABILITY_PARTS",
    "stability_table",
    "stability_overview",
    "one_group",
    "policy_key",
    "fmt",
    "mean_std",
]

AXES = ("policy", "permutations M", "schedule T/r", "value function", "truncation τ", "α sharing",
        "partial channels K")
POLICY_ORDER = POLICY_NAMES


def fmt(value: Any, digits: int = 1) -> str:
    """``value`` with ``digits`` decimals; ``–`` for None or NaN."""
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def mean_std(mean: float, std: float, digits: int = 1) -> str:
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
        records: :func:`shapnas.experiments.ablations.ablation_records` records (``axis``, ``setting``, ``seed``,
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
        records: :func:`shapnas.experiments.ablations.ablation_records` records of one dataset.

    Returns:
        Index (axis, setting), the default first within each axis and the policies in the order none,
        shapley, alpha, js, random; mean ± std (ddof 1) over seeds where there are several.
    """
    stats = ablation_stats(records)
    table = pd.DataFrame({
        "seeds": stats["seeds"].astype(int),
        "Dice (%)": [mean_std(m, s) for m, s in zip(stats["dice"], stats["dice_std"])],
        "HD95": [fmt(v, 2) for v in stats["hd95"]],
        "search (s)": [mean_std(m, s, 1) for m, s in zip(stats["wall"], stats["wall_std"])],
        "epochs": [fmt(v, 1).removesuffix(".0") for v in stats["epochs"]],
    })
    table.index = pd.MultiIndex.from_frame(stats[["axis", "setting"]])
    return table


def one_group(rows: Sequence[Mapping[str, Any]], dataset: str | None, what: str) -> list[Mapping[str, Any]]:
    """``rows`` of ``dataset``; a ValueError when they span several (dataset, backbone) pairs."""
    rows = [r for r in rows if dataset is None or r["dataset"] == dataset]
    groups = sorted({(str(r["dataset"]), str(r.get("backbone"))) for r in rows})
    if len(groups) > 1:
        raise ValueError(f"{what} of {groups}; expected one dataset and backbone (pass dataset=...)")
    return rows


def policy_key(policy: str) -> tuple[int, str]:
    """Sort key of a policy: :data:`POLICY_ORDER` first, then by name."""
    return (POLICY_ORDER.index(policy) if policy in POLICY_ORDER else len(POLICY_ORDER), policy)


# the two halves of the stability table, each narrow enough to show whole in the book's column
STABILITY_PARTS = {
    "choices": ["seeds", "op agreement", "agreement, chance p95", "Jaccard", "Jaccard, chance p95", "Dice (%)"],
    "ranks": ["seeds", "JS divergence", "Kendall τ", "Spearman ρ"],
}


def stability_table(report: Sequence[Mapping[str, Any]], dataset: str | None = None,
                    part: str | None = None) -> pd.DataFrame:
    """Stability per policy of one dataset: seeds, genotype agreement, Jaccard, JS divergence, Shapley rank
    correlation and test Dice over seeds.

    Args:
        report: :func:`shapnas.experiments.stability.report.stability_report` rows.
        dataset: keep this dataset (None: the report must hold one dataset and backbone).
        part: ``"choices"`` (agreement and Jaccard beside their chance levels, and the Dice) or ``"ranks"``
            (JS divergence and the rank correlations): the columns of :data:`STABILITY_PARTS`, so each table
            shows whole; ``None``: every column.

    Returns:
        Index: policies (none, shapley, alpha, js, random first); ``–`` where a metric does not apply (e.g.
        Shapley rank correlation of a policy without Shapley rounds) or needs more seeds.
    """
    rows = sorted(one_group(report, dataset, "stability rows"), key=lambda r: policy_key(r["policy"]))
    table = pd.DataFrame({
        "seeds": [int(r["num_seeds"]) for r in rows],
        "op agreement": [fmt(r["modal_agreement"], 2) for r in rows],
        "Jaccard": [fmt(r["jaccard"], 2) for r in rows],
        "JS divergence": [fmt(r["js"], 3) for r in rows],
        "Kendall τ": [fmt(r["kendall"], 2) for r in rows],
        "Spearman ρ": [fmt(r["spearman"], 2) for r in rows],
        # the chance level: what random genotypes of the same shape reach on the same metric (95th percentile)
        "agreement, chance p95": [fmt(r.get("chance_modal_agreement_p95", math.nan), 2) for r in rows],
        "Jaccard, chance p95": [fmt(r.get("chance_jaccard_p95", math.nan), 2) for r in rows],
        "Dice (%)": [mean_std(100 * float(r["dice_mean"]), 100 * float(r["dice_std"])) for r in rows],
    }, index=pd.Index([r["policy"] for r in rows], name="policy"))
    return table[STABILITY_PARTS[part]] if part else table


def stability_overview(report: Sequence[Mapping[str, Any]], part: str | None = None) -> pd.DataFrame:
    """:func:`stability_table` for every dataset of ``report``, stacked (the cross-dataset results page).

    Args:
        report: :func:`shapnas.experiments.stability.report.stability_report` rows of any datasets (one backbone each).
        part: ``"choices"``, ``"ranks"`` or ``None`` (every column), as :func:`stability_table`.

    Returns:
        Index (dataset, policy); an empty frame with a ``note`` column when ``report`` is empty.
    """
    datasets = sorted({str(r["dataset"]) for r in report})
    if not datasets:
        return pd.DataFrame({"note": ["no ablation plan has been run: python -m shapnas ablations --profile workshop"]})
    return pd.concat({d: stability_table(report, d, part) for d in datasets}, names=["dataset", "policy"])
