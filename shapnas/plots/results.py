"""Result tables and figures: the method comparison, patient-level box plots, and our numbers beside the
paper's claims (Benedykciuk et al., Sci. Rep. 2026: +5 Dice points for IAC, search up to 4× faster, more
stable choices). Every verdict is computed from ``shapnas.experiments.summary.collect_summary`` records, never typed in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from shapnas.config.names import BASELINE_METHODS, POLICIES, method_label, method_name
from shapnas.experiments.intervals import interval_text, points

__all__ = [
    "NO_SEEDS_TEXT",
    "METHOD_LABELS",
    "metrics_table",
    "metrics_table_view",
    "unscored_classes_text",
    "patient_scores",
    "plot_patient_boxplots",
    "comparison_table",
    "speedups",
    "speedup_table",
    "data_sources",
    "paired_intervals",
    "plot_seed_spread",
    "interval_text",
    "points",
]

METHOD_LABELS = {**BASELINE_METHODS, **{method_name(p): POLICIES[p].label for p in POLICIES}}


def _label(method: str) -> str:
    """Display name of a method (``iac-shapley``) or an eval target (``shapley``, ``finetune``)."""
    return method_label(method)


def _fmt(value: Any, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def metrics_table(evals: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Per-class test Dice (%) and HD95 of evaluated models.

    Args:
        evals: label -> ``eval-<target>/metrics.json`` body (``dice_per_class``, ``hd95_per_class``, ...).

    Returns:
        Rows: models; columns: ``Dice <class>``, ``Dice mean``, ``HD95 <class>``, ``HD95 mean``, ``test
        patients`` and ``test cases`` (volumes: ACDC has two per patient, end-diastole and end-systole).
    """
    rows = {}
    for label, metrics in evals.items():
        row = {f"Dice {k} (%)": _fmt(None if v is None else 100 * v) for k, v in metrics["dice_per_class"].items()}
        row["Dice mean (%)"] = _fmt(None if metrics["dice_mean"] is None else 100 * metrics["dice_mean"])
        row |= {f"HD95 {k}": _fmt(v, 2) for k, v in (metrics.get("hd95_per_class") or {}).items()}
        row["HD95 mean"] = _fmt(metrics.get("hd95_mean"), 2)
        row |= _counts(metrics)
        rows[_label(label)] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def metrics_table_view(evals: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """:func:`metrics_table` turned for reading: one row per measure (``Dice RV (%)``, …, ``test patients``,
    ``test cases``), one column per model, so a dataset with many classes (AMOS: 15 organs) grows down the
    page instead of off its right edge."""
    table = metrics_table(evals).T
    table.index.name = "measure"
    return table


def unscored_classes_text(evals: Mapping[str, Mapping[str, Any]]) -> str:
    """A sentence on the classes that every model scores 0 Dice on (never found), or "" when there are none.

    Args:
        evals: label -> eval metrics body (``dice_per_class``).

    Returns:
        E.g. ``"Every model scores 0.0 Dice on 4 of 15 classes (pancreas, …): none of them finds these …"``.
    """
    per_model = [metrics.get("dice_per_class") or {} for metrics in evals.values()]
    if not per_model:
        return ""
    classes = list(per_model[0])
    zero = [c for c in classes if all(m.get(c) is not None and float(m[c]) == 0.0 for m in per_model)]
    if not zero:
        return ""
    return (f"Every model scores 0.0 Dice on {len(zero)} of {len(classes)} classes ({', '.join(zero)}): no model "
            "finds them in any test case (small organs at this slice size and training length, or absent from the "
            "training slices); the mean Dice includes these zeros.")


def _counts(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """What an evaluation counted: distinct test patients and test cases (volumes), each named."""
    cases = metrics.get("per_case") or []
    patients = {case.get("patient_id") or case.get("case_id") for case in cases}
    return {"test patients": len(patients) if cases else None, "test cases": metrics.get("num_cases")}


def patient_scores(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Per patient: mean foreground Dice and HD95 over the evaluated regions (NaN regions ignored)."""
    rows = []
    for case in metrics["per_case"]:
        dice = [r["dice"] for r in case["regions"].values() if r.get("dice") is not None]
        hd95 = [r["hd95"] for r in case["regions"].values() if r.get("hd95") is not None]
        rows.append({"case_id": case["case_id"], "patient_id": case.get("patient_id"),
                     "dice": float(np.mean(dice)) if dice else np.nan,
                     "hd95": float(np.mean(hd95)) if hd95 else np.nan})
    return pd.DataFrame(rows, columns=["case_id", "patient_id", "dice", "hd95"])


def plot_patient_boxplots(evals: Mapping[str, Mapping[str, Any]],
                          intervals: Mapping[str, Mapping[str, float]] | None = None) -> Figure:
    """Box plots of the per-patient Dice and HD95 of each evaluated model, with the patients as dots (seaborn).

    Args:
        evals: label (``backbone``, ``finetune``, ``iac-shapley`` or a policy name) -> eval metrics body.
        intervals: label -> paired 95 % bootstrap interval of its Dice against the backbone (Dice fractions,
            :func:`paired_intervals`); printed under the Dice panel when given.

    Returns:
        Two panels (Dice, HD95); a dot per patient on each box.
    """
    import seaborn as sns

    if not evals:
        raise ValueError("no evaluations given; expected label -> eval metrics.json body")
    labels = [_label(k) for k in evals]
    frame = pd.concat([patient_scores(metrics).assign(model=_label(label)) for label, metrics in evals.items()],
                      ignore_index=True)
    fig = Figure(figsize=(max(6.5, 1.1 * len(labels) + 3.5), 4.0), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, column, title in ((axes[0], "dice", "Dice per patient (higher is better)"),
                              (axes[1], "hd95", "HD95 per patient (lower is better)")):
        sns.boxplot(data=frame, x="model", y=column, order=labels, ax=ax, showfliers=False, color="#dbe9f6",
                    width=0.55)
        sns.stripplot(data=frame, x="model", y=column, order=labels, ax=ax, color="#4c72b0", size=4, jitter=0.12,
                      alpha=0.8)
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
        ax.set_xlabel("")
        ax.set_ylabel(column.upper() if column == "hd95" else "Dice")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylim(0, 1)
    shown = {_label(k): v for k, v in (intervals or {}).items() if v}
    if shown:
        fig.suptitle("\n".join(["Dice minus the backbone's, paired 95 % bootstrap interval over test patients:",
                                *(f"{k}: {interval_text(v)}" for k, v in shown.items())]), fontsize=8.5)
    return fig


def _frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    columns = ["dataset", "backbone", "seed", "method", "dice_mean", "hd95_mean", "search_wall_s", "run_dir"]
    frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in records], columns=columns)
    for column in ("dice_mean", "hd95_mean", "search_wall_s"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def speedups(records: Sequence[Mapping[str, Any]], policy: str = "shapley") -> pd.DataFrame:
    """Search speed-up full / pruned per (dataset, backbone, seed): ``search_wall_s`` of ``iac-none`` over
    that of ``iac-<policy>``, both measured in the same run directory (one machine)."""
    frame = _frame(records)
    wall = frame.pivot_table(index=["dataset", "backbone", "seed"], columns="method", values="search_wall_s")
    full, pruned = method_name("none"), method_name(policy)
    if full not in wall or pruned not in wall:
        return pd.DataFrame(columns=["dataset", "backbone", "seed", "full_s", "pruned_s", "speedup"])
    out = pd.DataFrame({"full_s": wall[full], "pruned_s": wall[pruned]}).dropna()
    out["speedup"] = out["full_s"] / out["pruned_s"]
    return out.reset_index()


def speedup_table(records: Sequence[Mapping[str, Any]], policy: str = "shapley") -> pd.DataFrame:
    """:func:`speedups` for display: seconds of both searches and the ratio, per (dataset, backbone, seed)."""
    speed = speedups(records, policy)
    return pd.DataFrame({"full search (s)": speed["full_s"].round(1).to_numpy(),
                         "pruned search (s)": speed["pruned_s"].round(1).to_numpy(),
                         "speed-up": [f"{v:.2f}×" for v in speed["speedup"]]},
                        index=pd.MultiIndex.from_frame(speed[["dataset", "backbone", "seed"]]))


def comparison_table(records: Sequence[Mapping[str, Any]], *, dataset: str | None = None,
                     backbone: str | None = None, seed: int | None = None) -> pd.DataFrame:
    """The comparison: test Dice (%), HD95, search wall-clock and speed-up per dataset and method.

    Args:
        records: ``collect_summary`` records (one per evaluated model and seed).
        dataset: keep only this dataset (``None``: all).
        backbone: keep only this backbone (``None``: all).
        seed: keep only this seed (``None``: all, mean ± std over seeds).

    Returns:
        Rows (dataset, method) in a fixed method order; mean ± std over seeds where there are several.
    """
    records = [r for r in records if (dataset is None or r["dataset"] == dataset)
               and (backbone is None or r["backbone"] == backbone) and (seed is None or r["seed"] == seed)]
    frame = _frame(records)
    if frame.empty:
        return pd.DataFrame(columns=["dataset", "method", "seeds", "Dice (%)", "HD95", "search (s)", "speed-up"])
    speed = speedups(records)
    rows = []
    order = {m: i for i, m in enumerate(METHOD_LABELS)}
    for (dataset, method), group in sorted(frame.groupby(["dataset", "method"]),
                                           key=lambda item: (item[0][0], order.get(item[0][1], 99))):
        dice, hd95, wall = group["dice_mean"] * 100, group["hd95_mean"], group["search_wall_s"]
        gain = speed[speed["dataset"] == dataset]["speedup"] if method == "iac-shapley" else pd.Series(dtype=float)
        rows.append({"dataset": dataset, "method": _label(method), "seeds": len(group),
                     "Dice (%)": _mean_std(dice), "HD95": _mean_std(hd95, 2),
                     "search (s)": _mean_std(wall, 0) if wall.notna().any() else "",
                     "speed-up": f"{gain.mean():.2f}×" if len(gain) else ""})
    return pd.DataFrame(rows).set_index(["dataset", "method"])


def _mean_std(values: pd.Series, digits: int = 1) -> str:
    values = values.dropna()
    if values.empty:
        return "–"
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def data_sources(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Per dataset ``phantom`` or ``real``, read from the run directories' stage ``config.json`` (data_dir)."""
    import json

    sources: dict[str, str] = {}
    for record in records:
        for config in sorted(Path(record["run_dir"]).glob("*/config.json"))[:1]:
            data_dir = json.loads(config.read_text()).get("data_dir", "")
            kind = "real" if data_dir else "phantom"
            sources[record["dataset"]] = kind if sources.get(record["dataset"], kind) == kind else "mixed"
    return sources


def paired_intervals(records: Sequence[Mapping[str, Any]], *, dataset: str, backbone: str, seed: int,
                     field: str = "dice_vs_backbone") -> dict[str, dict[str, float]]:
    """The paired bootstrap intervals of one run's IAC records (``shapnas summary``), keyed by eval target.

    Returns:
        e.g. ``{"none": {"mean", "ci_low", "ci_high"}, "shapley": {...}}`` (Dice fractions); empty when the
        summary provides none.
    """
    return {r["method"][4:]: r[field] for r in records
            if (r["dataset"], r["backbone"], r["seed"]) == (dataset, backbone, seed)
            and str(r["method"]).startswith("iac-") and r.get(field)}


NO_SEEDS_TEXT = "no seeds evaluated yet: the ablation plan has not run"


def plot_seed_spread(records: Sequence[Mapping[str, Any]]) -> Figure:
    """Test Dice per method and dataset over seeds (seaborn point plot: the mean ± one standard deviation over
    seeds, every seed as a dot; with two to five seeds a bootstrap interval over seeds would be meaningless).

    Args:
        records: ``collect_summary`` records with several seeds (e.g. the ablation plan's main runs).

    Returns:
        One panel per dataset, each with its own Dice axis.
    """
    import seaborn as sns

    frame = _frame(records).dropna(subset=["dice_mean"]) if records else pd.DataFrame()
    if frame.empty:  # the ablation plan has not run (e.g. `run --notebooks 01,02,03,04`): say so, do not fail
        fig = Figure(figsize=(6.0, 1.2), layout="constrained")
        ax = fig.subplots()
        ax.text(0.5, 0.5, NO_SEEDS_TEXT, ha="center", va="center", fontsize=10)
        ax.axis("off")
        return fig
    frame["Dice (%)"] = 100 * frame["dice_mean"]
    frame["method"] = [_label(m) for m in frame["method"]]
    datasets = sorted(frame["dataset"].unique())
    fig = Figure(figsize=(4.2 * len(datasets) + 0.6, 3.6), layout="constrained")
    # each dataset on its own y axis: ACDC near 84 and KiTS near 33 on one axis would flatten both
    axes = np.atleast_1d(fig.subplots(1, len(datasets), sharey=False, squeeze=False)[0])
    order = [_label(m) for m in METHOD_LABELS if _label(m) in set(frame["method"])]
    for ax, dataset in zip(axes, datasets):
        part = frame[frame["dataset"] == dataset]
        sns.stripplot(data=part, x="method", y="Dice (%)", order=order, ax=ax, color="0.55", size=4, jitter=0.12)
        sns.pointplot(data=part, x="method", y="Dice (%)", order=order, ax=ax, errorbar="sd", linestyle="none",
                      color="#c44e52", markers="D", capsize=0.2)
        ax.set_title(f"{dataset}: {part['seed'].nunique()} seeds")
        ax.set_xlabel("")
        ax.tick_params(axis="x", rotation=25)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
        ax.grid(axis="y", alpha=0.3)
    return fig

