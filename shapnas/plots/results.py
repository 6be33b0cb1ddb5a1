"""Result tables and figures: the method comparison, patient-level box plots, and our numbers beside the
paper's claims (Benedykciuk et al., Sci. Rep. 2026: +5 Dice points for IAC, search up to 4× faster, more
stable choices). Every verdict is computed from ``shapnas.summary.collect_summary`` records, never typed in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from shapnas.stability import stability_report

__all__ = [
    "PAPER_CLAIMS",
    "METHOD_LABELS",
    "metrics_table",
    "patient_scores",
    "plot_patient_boxplots",
    "comparison_table",
    "speedups",
    "speedup_table",
    "data_sources",
    "claims_table",
    "claims_text",
]

# The paper's stated claims (abstracts of the IAC paper and the target paper; method.md).
PAPER_CLAIMS = {"dice_gain_points": 5.0, "dice_gain_max_points": 11.0, "search_speedup": 4.0, "min_seeds": 3}
METHOD_LABELS = {
    "backbone": "backbone (pre-trained)",
    "finetune": "backbone fine-tuned",
    "iac-none": "IAC, full search",
    "iac-shapley": "IAC, Shapley-pruned",
    "iac-alpha": "IAC, α-pruned",
    "iac-js": "IAC, JS-pruned",
    "iac-random": "IAC, randomly pruned",
}
TIE_POINTS = 1.0  # a difference within one Dice point counts as "matches"


def _label(method: str) -> str:
    """Display name of a method (``iac-shapley``) or an eval target (``shapley``, ``finetune``)."""
    return METHOD_LABELS.get(method) or METHOD_LABELS.get(f"iac-{method}", method)


def _fmt(value: Any, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def metrics_table(evals: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Per-class test Dice (%) and HD95 of evaluated models.

    Args:
        evals: label -> ``eval-<target>/metrics.json`` body (``dice_per_class``, ``hd95_per_class``, ...).

    Returns:
        Rows: models; columns: ``Dice <class>``, ``Dice mean``, ``HD95 <class>``, ``HD95 mean``, ``patients``.
    """
    rows = {}
    for label, metrics in evals.items():
        row = {f"Dice {k} (%)": _fmt(None if v is None else 100 * v) for k, v in metrics["dice_per_class"].items()}
        row["Dice mean (%)"] = _fmt(None if metrics["dice_mean"] is None else 100 * metrics["dice_mean"])
        row |= {f"HD95 {k}": _fmt(v, 2) for k, v in (metrics.get("hd95_per_class") or {}).items()}
        row["HD95 mean"] = _fmt(metrics.get("hd95_mean"), 2)
        row["patients"] = metrics.get("num_cases")
        rows[_label(label)] = row
    return pd.DataFrame.from_dict(rows, orient="index")


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


def plot_patient_boxplots(evals: Mapping[str, Mapping[str, Any]]) -> Figure:
    """Box plots of the per-patient Dice and HD95 of each evaluated model, with the patients as dots.

    Args:
        evals: label (``backbone``, ``finetune``, ``iac-shapley`` or a policy name) -> eval metrics body.

    Returns:
        Two panels (Dice, HD95); a dot per patient on each box.
    """
    if not evals:
        raise ValueError("no evaluations given; expected label -> eval metrics.json body")
    scores = {label: patient_scores(metrics) for label, metrics in evals.items()}
    labels = [_label(k) for k in scores]
    fig = Figure(figsize=(9.0, 3.4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, column, title in ((axes[0], "dice", "Dice per patient (higher is better)"),
                              (axes[1], "hd95", "HD95 per patient (lower is better)")):
        data = [frame[column].dropna().to_numpy() for frame in scores.values()]
        ax.boxplot([d if len(d) else [np.nan] for d in data], showfliers=False)
        for position, values in enumerate(data, start=1):
            offsets = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(len(values))
            ax.scatter(position + offsets, values, s=10, color="#4c72b0", alpha=0.7, zorder=3)
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=20, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylim(0, 1)
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
    if "iac-none" not in wall or f"iac-{policy}" not in wall:
        return pd.DataFrame(columns=["dataset", "backbone", "seed", "full_s", "pruned_s", "speedup"])
    out = pd.DataFrame({"full_s": wall["iac-none"], "pruned_s": wall[f"iac-{policy}"]}).dropna()
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


def _points(value: float) -> str:
    """Dice points with a sign and one decimal, never ``-0.0``."""
    return f"{round(float(value), 1) + 0.0:+.1f}"


def _paired_gain(frame: pd.DataFrame, method: str, baseline: str) -> pd.Series:
    """Dice points of ``method`` minus ``baseline`` per (dataset, backbone, seed) where both exist."""
    dice = frame.pivot_table(index=["dataset", "backbone", "seed"], columns="method", values="dice_mean")
    if method not in dice or baseline not in dice:
        return pd.Series(dtype=float)
    return ((dice[method] - dice[baseline]) * 100).dropna()


def _gain_row(frame: pd.DataFrame, method: str) -> dict[str, str]:
    gain = _paired_gain(frame, method, "backbone")
    claim = PAPER_CLAIMS["dice_gain_points"]
    if gain.empty:
        return {"measured": "not run yet", "verdict": f"Not measured: no run has both the backbone and "
                                                       f"{_label(method)} evaluated."}
    measured = f"{_points(gain.mean())} points (range {_points(gain.min())} to {_points(gain.max())}, {len(gain)} run(s))"
    if gain.mean() >= claim:
        verdict = f"Agrees: the mean gain of {_points(gain.mean())} points reaches the claimed +{claim:.0f}."
    elif round(gain.mean(), 1) > 0:  # a gain that shows in the reported precision
        verdict = (f"Partly: {_label(method)} improves the backbone, but by {_points(gain.mean())} points, less than "
                   f"the claimed +{claim:.0f}.")
    else:
        verdict = f"Disagrees: {_label(method)} does not improve the backbone here ({_points(gain.mean())} points)."
    return {"measured": measured, "verdict": verdict}


def _speed_row(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    speed = speedups(records)
    claim = PAPER_CLAIMS["search_speedup"]
    if speed.empty:
        return {"measured": "not run yet", "verdict": "Not measured: no run has both the full and the Shapley-pruned "
                                                      "search."}
    best, mean = speed["speedup"].max(), speed["speedup"].mean()
    measured = f"up to {best:.2f}× (mean {mean:.2f}×, {len(speed)} run(s))"
    if best >= claim:
        verdict = f"Agrees: the pruned search is up to {best:.2f}× faster, reaching the claimed {claim:.0f}×."
    elif best > 1:
        verdict = f"Partly: the pruned search is faster (up to {best:.2f}×) but does not reach {claim:.0f}×."
    else:
        verdict = f"Disagrees: the pruned search is not faster here (best {best:.2f}×)."
    return {"measured": measured, "verdict": verdict}


def _stability_row(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    search = [{"dataset": r["dataset"], "backbone": r["backbone"], "policy": r["method"][4:], "seed": r["seed"],
               "genotype": r["genotype"], "dice_mean": r["dice_mean"]}
              for r in records if str(r["method"]).startswith("iac-") and r.get("genotype")]
    report = {(g["dataset"], g["backbone"], g["policy"]): g for g in stability_report(search)} if search else {}
    needed = PAPER_CLAIMS["min_seeds"]
    pairs = [(report[(d, b, "none")], report[(d, b, "shapley")]) for d, b, p in report
             if p == "shapley" and (d, b, "none") in report]
    pairs = [(full, pruned) for full, pruned in pairs if min(full["num_seeds"], pruned["num_seeds"]) >= needed]
    if not pairs:
        most = max((g["num_seeds"] for g in report.values()), default=0)
        return {"measured": f"{most} seed(s) per search so far",
                "verdict": f"Not yet measurable: stability needs at least {needed} seeds of both searches "
                           f"(`python -m shapnas ablations --profile workshop` runs three)."}
    full = float(np.mean([f["jaccard"] for f, _ in pairs]))
    pruned = float(np.mean([p["jaccard"] for _, p in pairs]))
    measured = f"genotype Jaccard across seeds: Shapley-pruned {pruned:.2f}, full search {full:.2f}"
    verdict = ("Agrees: the Shapley-pruned search picks more similar cells across seeds." if pruned > full else
               "Disagrees: the Shapley-pruned search is not more stable than the full search here.")
    return {"measured": measured, "verdict": verdict}


def _baselines_row(frame: pd.DataFrame) -> dict[str, str]:
    comparisons = [_paired_gain(frame, "iac-shapley", b) for b in ("backbone", "finetune", "iac-none")]
    gains = pd.concat([g for g in comparisons if not g.empty]) if any(not g.empty for g in comparisons) else None
    if gains is None:
        return {"measured": "not run yet", "verdict": "Not measured: no baseline evaluated beside the Shapley-pruned "
                                                      "cell."}
    share = float((gains >= -TIE_POINTS).mean())
    measured = f"{int((gains >= -TIE_POINTS).sum())} of {len(gains)} comparisons (ties: ±{TIE_POINTS:.0f} point)"
    verdict = (f"Agrees: the Shapley-pruned cell improves or matches its baseline in most comparisons "
               f"({100 * share:.0f}%)." if share > 0.5 else
               f"Disagrees: the Shapley-pruned cell improves or matches its baseline in only {100 * share:.0f}% "
               "of the comparisons.")
    return {"measured": measured, "verdict": verdict}


def claims_table(records: Sequence[Mapping[str, Any]],
                 seed_records: Sequence[Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """The paper's claims beside our measured numbers, each with a computed sentence saying whether they agree.

    Args:
        records: ``collect_summary`` records.
        seed_records: ``collect_summary`` records of runs with several seeds (the ablation plan's main runs,
            ``<results>/ablations/main``); when given, the stability claim is judged on them.

    Returns:
        Rows: the claims; columns ``paper`` (the stated claim), ``measured``, ``agreement`` (Agrees, Partly,
        Disagrees, Not measured, Not yet measurable) and ``verdict`` (a sentence). On phantom data the verdicts
        carry a note that they say nothing about the paper.
    """
    frame = _frame(records)
    rows = {
        "IAC improves the pre-trained U-Net (Dice)": {
            "paper": f"about +{PAPER_CLAIMS['dice_gain_points']:.0f} Dice points on average, up to "
                     f"+{PAPER_CLAIMS['dice_gain_max_points']:.0f}", **_gain_row(frame, "iac-shapley")},
        "IAC with the full search (Dice)": {
            "paper": f"about +{PAPER_CLAIMS['dice_gain_points']:.0f} Dice points (IAC paper)",
            **_gain_row(frame, "iac-none")},
        "Shapley pruning speeds up the search": {
            "paper": f"up to {PAPER_CLAIMS['search_speedup']:.0f}× faster", **_speed_row(records)},
        "More stable operation choices": {"paper": "more stable across runs",
                                          **_stability_row(seed_records if seed_records else records)},
        "Improves or matches strong baselines": {"paper": "in most comparisons", **_baselines_row(frame)},
    }
    sources = data_sources(records)
    if any(kind != "real" for kind in sources.values()):
        phantom = ", ".join(sorted(d for d, kind in sources.items() if kind != "real"))
        for row in rows.values():
            if row["measured"] != "not run yet":
                row["verdict"] += f" (Phantom data for {phantom}: this checks the pipeline, not the paper.)"
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["agreement"] = [verdict.split(":")[0] for verdict in table["verdict"]]
    return table[["paper", "measured", "agreement", "verdict"]]


def claims_text(claims: pd.DataFrame) -> str:
    """The verdicts of :func:`claims_table` as a Markdown list, one sentence per claim."""
    return "\n".join(f"- **{claim}.** {row['verdict']}" for claim, row in claims.iterrows())
