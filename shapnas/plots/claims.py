"""Our numbers beside the paper's claims (Benedykciuk et al., Sci. Rep. 2026: about +5 Dice points for IAC,
a search up to 4× faster, more stable choices, improves or matches strong baselines), each verdict computed.

Dice verdicts are decided by the 95 % paired bootstrap interval over test patients that
``python -m shapnas summary`` adds to every IAC record (``dice_vs_backbone``, ``dice_vs_finetune``: mean,
ci_low, ci_high as Dice fractions): *improves* when the interval lies above 0, *worse* when below, *matches*
when it includes 0; the interval is printed beside every verdict. Without intervals the verdict says so
instead of guessing. A speed ratio below 1 comes with the cost split that explains it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from shapnas.config.names import method_label, method_name
from shapnas.experiments.stability.report import stability_report
from shapnas.plots.results import data_sources, interval_text, points, speedups
from shapnas.runs.records import cost_split

__all__ = [
    "PAPER_CLAIMS",
    "interval_verdict",
    "speed_text",
    "claims_table",
    "claims_text",
]

PAPER_CLAIMS = {"dice_gain_points": 5.0, "dice_gain_max_points": 11.0, "search_speedup": 4.0, "min_seeds": 3}
Verdict = Literal["improves", "matches", "worse"]


def interval_verdict(interval: Mapping[str, float] | None) -> Verdict | None:
    """``improves`` (95 % interval above 0), ``worse`` (below 0), ``matches`` (includes 0); ``None`` without one."""
    if not interval or interval.get("ci_low") is None or interval.get("ci_high") is None:
        return None
    if interval["ci_low"] > 0:
        return "improves"
    if interval["ci_high"] < 0:
        return "worse"
    return "matches"


def _comparisons(records: Sequence[Mapping[str, Any]], method: str, field: str) -> list[dict[str, Any]]:
    """Per record of ``method``: where (dataset, seed), the interval in ``field`` and its verdict."""
    rows = []
    for record in records:
        if record.get("method") == method:
            interval = record.get(field)
            rows.append({"where": f"{record['dataset']} seed {record['seed']}", "interval": interval,
                         "verdict": interval_verdict(interval)})
    return rows


def _listing(rows: Sequence[Mapping[str, Any]], limit: int = 4) -> str:
    shown = [f"{r['where']}: {interval_text(r['interval'])}, {r['verdict']}" for r in rows[:limit]]
    return "; ".join(shown) + (f"; and {len(rows) - limit} more" if len(rows) > limit else "")


def _gain_row(records: Sequence[Mapping[str, Any]], method: str) -> dict[str, str]:
    rows = _comparisons(records, method, "dice_vs_backbone")
    claim = PAPER_CLAIMS["dice_gain_points"]
    if not rows:
        return {"measured": "not run yet",
                "verdict": f"Not measured: no run has {method_label(method)} evaluated beside the backbone."}
    decided = [r for r in rows if r["verdict"]]
    if not decided:
        return {"measured": f"{len(rows)} run(s), no interval",
                "verdict": "Undecided: the summary records carry no paired bootstrap interval "
                           "(`dice_vs_backbone`), so a difference cannot be told from noise."}
    counts = {v: sum(r["verdict"] == v for r in decided) for v in ("improves", "matches", "worse")}
    mean = 100 * float(np.mean([r["interval"]["mean"] for r in decided]))
    measured = _listing(decided)
    if counts["worse"] > counts["improves"]:
        verdict = (f"Disagrees: {method_label(method)} is worse than the backbone in {counts['worse']} of "
                   f"{len(decided)} run(s).")
    elif counts["improves"] == 0:
        verdict = (f"Inconclusive: every 95 % interval includes 0 (mean {points(mean)} points), so "
                   f"{method_label(method)} cannot be told apart from the backbone at this number of test patients.")
    elif counts["improves"] == len(decided) and mean >= claim:
        verdict = f"Agrees: an improvement in every run, {points(mean)} points on average (claimed +{claim:.0f})."
    else:
        verdict = (f"Partly: an improvement in {counts['improves']} of {len(decided)} run(s), "
                   f"{points(mean)} points on average, less than the claimed +{claim:.0f} or not in every run.")
    return {"measured": measured, "verdict": verdict}


def speed_text(run_dir: str | Path, policy: str = "shapley") -> str:
    """A sentence on the speed ratio of one run: the cost of each part of both searches, and why the pruned
    search is slower when it is (its Shapley rounds cost more than the training that pruning saved)."""
    full, pruned = cost_split(run_dir, "none"), cost_split(run_dir, policy)
    if full is None or pruned is None:
        return "Speed: not available (this run has not both the full and the pruned search)."
    parts = ("train", "shapley", "eval")
    full_s, pruned_s = sum(full[p] for p in parts), sum(pruned[p] for p in parts)
    ratio = full_s / pruned_s if pruned_s else float("nan")
    saved = full["train"] - pruned["train"]
    name = "Shapley" if policy == "shapley" else policy
    text = (f"The full search took {full_s:.1f} s ({full['train']:.1f} s training, {full['eval']:.1f} s evaluation), "
            f"the {name}-pruned one {pruned_s:.1f} s ({pruned['train']:.1f} s training, {pruned['shapley']:.1f} s in "
            f"Shapley rounds, {pruned['eval']:.1f} s evaluation): a ratio of {ratio:.2f}×. ")
    if ratio < 1:
        text += (f"The pruned search is slower because its Shapley rounds cost {pruned['shapley']:.1f} s while pruning "
                 f"saved only {saved:.1f} s of training: on this machine a round's coalition evaluations cost more "
                 "than the epochs they shorten.")
    else:
        text += f"Pruning saved {saved:.1f} s of training at a cost of {pruned['shapley']:.1f} s in Shapley rounds."
    return text


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
        row = speed.loc[speed["speedup"].idxmax()]
        run = next((r["run_dir"] for r in records if (r["dataset"], r["backbone"], r["seed"]) ==
                    (row["dataset"], row["backbone"], row["seed"])), None)
        why = f" {speed_text(run)}" if run else ""
        verdict = f"Disagrees: the pruned search is not faster here (best {best:.2f}×).{why}"
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
    measured = "genotype Jaccard across seeds (chance p95): " + "; ".join(
        f"{pruned['dataset']} Shapley-pruned {pruned['jaccard']:.2f}, full search {full['jaccard']:.2f} "
        f"({_chance_text(pruned)})" for full, pruned in pairs)
    gains = sum(pruned["jaccard"] > full["jaccard"] and _above_chance(pruned) for full, pruned in pairs)
    noise = sum(not _above_chance(full) and not _above_chance(pruned) for full, pruned in pairs)
    if gains > len(pairs) / 2:
        verdict = (f"Agrees: on {gains} of {len(pairs)} dataset(s) the Shapley-pruned search picks more similar cells "
                   "across seeds than the full search, and more similar than random genotypes do.")
    elif noise > len(pairs) / 2:
        verdict = (f"Undecided: on {noise} of {len(pairs)} dataset(s) neither search agrees across seeds more than "
                   "random genotypes of the same shape (chance p95), so a difference between them reads noise.")
    elif gains:
        verdict = (f"Partly: the Shapley-pruned search is more stable than the full search, above chance, on "
                   f"{gains} of {len(pairs)} dataset(s) only.")
    else:
        verdict = ("Disagrees: on no dataset is the Shapley-pruned search both more stable than the full search "
                   "and above chance.")
    return {"measured": measured, "verdict": verdict + " (No interval: chapter 6 has every metric's chance level.)"}


def _chance_jaccard(group: Mapping[str, Any]) -> float:
    """The 95th percentile of random genotypes' Jaccard for this group (NaN when unknown)."""
    return float(group.get("chance_jaccard_p95", float("nan")))


def _above_chance(group: Mapping[str, Any]) -> bool:
    """Genotype Jaccard above the 95th percentile of random genotypes of the same shape (unknown: no)."""
    chance = _chance_jaccard(group)
    return bool(np.isfinite(chance) and group["jaccard"] > chance)


def _chance_text(group: Mapping[str, Any]) -> str:
    chance = _chance_jaccard(group)
    return f"{chance:.2f}" if np.isfinite(chance) else "–"


def _baselines_row(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    rows = (_comparisons(records, "iac-shapley", "dice_vs_backbone")
            + _comparisons(records, "iac-shapley", "dice_vs_finetune"))
    if not rows:
        return {"measured": "not run yet", "verdict": "Not measured: no baseline evaluated beside the Shapley-pruned "
                                                      "cell."}
    decided = [r for r in rows if r["verdict"]]
    if not decided:
        return {"measured": f"{len(rows)} comparison(s), no interval",
                "verdict": "Undecided: the summary records carry no paired bootstrap intervals "
                           "(`dice_vs_backbone`, `dice_vs_finetune`)."}
    counts = {v: sum(r["verdict"] == v for r in decided) for v in ("improves", "matches", "worse")}
    measured = (f"{counts['improves']} improve, {counts['matches']} match (interval includes 0), {counts['worse']} "
                f"worse, of {len(decided)} comparisons with the backbone and the fine-tuned backbone")
    if counts["worse"] > len(decided) / 2:
        verdict = f"Disagrees: worse than its baseline in {counts['worse']} of {len(decided)} comparisons."
    elif counts["worse"]:
        verdict = f"Partly: worse than its baseline in {counts['worse']} of {len(decided)} comparisons."
    elif counts["improves"]:
        verdict = f"Agrees: never worse, better in {counts['improves']} of {len(decided)} comparisons."
    else:
        verdict = ("Consistent, not shown: never worse, but every 95 % interval includes 0, so the cell cannot be "
                   "told apart from its baselines at this number of test patients.")
    return {"measured": measured, "verdict": verdict}


def claims_table(records: Sequence[Mapping[str, Any]],
                 seed_records: Sequence[Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """The paper's claims beside our measured numbers, each with a computed sentence saying whether they agree.

    Args:
        records: ``collect_summary`` records (IAC records with ``dice_vs_backbone`` / ``dice_vs_finetune``
            intervals where the summary provides them).
        seed_records: ``collect_summary`` records of runs with several seeds (the ablation plan's main runs,
            ``<results>/ablations/main``); when given, the stability claim is judged on them.

    Returns:
        Rows: the claims; columns ``paper`` (the stated claim), ``measured``, ``agreement`` (Agrees, Partly,
        Inconclusive, Consistent, Undecided, Disagrees, Not measured, Not yet measurable) and ``verdict`` (a
        sentence). On phantom data the verdicts carry a note that they say nothing about the paper.
    """
    rows = {
        "IAC improves the pre-trained U-Net (Dice)": {
            "paper": f"about +{PAPER_CLAIMS['dice_gain_points']:.0f} Dice points on average, up to "
                     f"+{PAPER_CLAIMS['dice_gain_max_points']:.0f}", **_gain_row(records, "iac-shapley")},
        "IAC with the full search (Dice)": {
            "paper": f"about +{PAPER_CLAIMS['dice_gain_points']:.0f} Dice points (IAC paper)",
            **_gain_row(records, method_name("none"))},
        "Shapley pruning speeds up the search": {
            "paper": f"up to {PAPER_CLAIMS['search_speedup']:.0f}× faster", **_speed_row(records)},
        "More stable operation choices": {"paper": "more stable across runs",
                                          **_stability_row(seed_records if seed_records else records)},
        "Improves or matches strong baselines": {"paper": "in most comparisons", **_baselines_row(records)},
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
