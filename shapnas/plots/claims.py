"""Our numbers beside the paper's claims (Benedykciuk et al., Sci. Rep. 2026: about +5 Dice points for IAC,
a search up to 4× faster, more stable choices, improves or matches strong baselines), each verdict computed.

Every verdict is one of *Agrees*, *Disagrees* or *Cannot tell*, read from the 95 % paired bootstrap
interval over test patients that ``python -m shapnas summary`` adds to every IAC record
(``dice_vs_backbone``, ``dice_vs_finetune``: mean, ci_low, ci_high as Dice fractions), or, where a dataset was run
with several training seeds, from a two-level bootstrap over seeds and patients (one training run's interval
does not cover what a second run gives): a run agrees with the
claimed +5 points when its interval lies above 0 and reaches +5, disagrees when the interval ends below +5,
and cannot tell when it spans both. The fine-tuned backbone (the fair baseline) has its own row, with its
intervals. The speed verdict says when the pruning rounds had no signal or the machine was busy
(:mod:`shapnas.plots.speed_checks`); a ratio below 1 comes with the cost split that explains it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from shapnas.config.names import method_label, method_name
from shapnas.experiments.stability.report import stability_report
from shapnas.experiments.intervals import interval_text, interval_verdict, points
from shapnas.plots.results import data_sources, speedups
from shapnas.runs.records import cost_split

__all__ = [
    "PAPER_CLAIMS",
    "interval_verdict",
    "claim_reading",
    "speed_text",
    "claims_table",
    "claims_text",
]

PAPER_CLAIMS = {"dice_gain_points": 5.0, "dice_gain_max_points": 11.0, "search_speedup": 4.0, "min_seeds": 3}
Reading = Literal["agrees", "disagrees", "cannot tell"]


def _comparisons(records: Sequence[Mapping[str, Any]], method: str, field: str) -> list[dict[str, Any]]:
    """Per record of ``method``: where (dataset, seed), the interval in ``field`` and its verdict."""
    rows = []
    for record in records:
        if record.get("method") == method:
            interval = record.get(field)
            rows.append({"where": f"{record['dataset']} seed {record['seed']}", "interval": interval,
                         "verdict": interval_verdict(interval)})
    return rows


def _listing(rows: Sequence[Mapping[str, Any]], limit: int = 6) -> str:
    shown = [f"{r['where']}: {interval_text(r['interval'])}, {r['verdict']}" for r in rows[:limit]]
    return "; ".join(shown) + (f"; and {len(rows) - limit} more" if len(rows) > limit else "")


def claim_reading(interval: Mapping[str, float], claim_points: float) -> Reading:
    """What one paired interval says about a claimed gain of ``claim_points`` Dice points.

    Returns:
        ``agrees`` (the interval lies above 0 and reaches the claimed gain), ``disagrees`` (its upper end is
        below the claimed gain: the claim is ruled out) or ``cannot tell`` (it spans both 0 and the claim).
    """
    low, high = 100 * interval["ci_low"], 100 * interval["ci_high"]
    if high < claim_points:
        return "disagrees"
    return "agrees" if low > 0 else "cannot tell"


def _undecided(rows: Sequence[Mapping[str, Any]], field: str) -> dict[str, str]:
    return {"measured": f"{len(rows)} run(s), no interval",
            "verdict": f"Cannot tell: the summary records carry no paired bootstrap interval (`{field}`), so a "
                       "difference cannot be told from noise."}


def _gain_row(records: Sequence[Mapping[str, Any]], method: str) -> dict[str, str]:
    rows = _comparisons(records, method, "dice_vs_backbone")
    if not rows:
        return {"measured": "not run yet",
                "verdict": f"Not measured: no run has {method_label(method)} evaluated beside the backbone."}
    return _gain_verdict(rows)


def _pooled_rows(seed_records: Sequence[Mapping[str, Any]] | None, field: str, source: str) -> list[dict[str, Any]]:
    """Per dataset, the Shapley-pruned cell's pooled interval ``field`` over at least two training seeds (a two-level
    bootstrap over the seeds, then the patients: :func:`shapnas.experiments.summary.pooled_summary`), as
    ``where`` / ``interval`` / ``verdict`` rows."""
    from shapnas.experiments.summary import pooled_summary

    usable = [r for r in seed_records or () if r.get("patient_dice")]
    return [{"where": f"{r['dataset']}, {source}{len(r['seeds'])} seeds", "interval": r[field],
             "verdict": interval_verdict(r[field])}
            for r in pooled_summary(usable) if r["method"] == "iac-shapley" and r.get(field) and len(r["seeds"]) >= 2]


def _pooled_gain_row(seed_records: Sequence[Mapping[str, Any]] | None, source: str = "") -> dict[str, str]:
    """The Shapley-pruned cell against its backbone over the training seeds (:func:`_pooled_rows`), read against the
    claimed gain as :func:`_gain_row` reads one run's."""
    rows = _pooled_rows(seed_records, "dice_vs_backbone", source)
    if not rows:
        return {"measured": "not run yet", "verdict": "Not measured: no dataset has the Shapley-pruned cell and its "
                                                      "backbone evaluated over several training seeds."}
    return _gain_verdict(rows, "dataset(s), each over its seeds,")


def _gain_verdict(rows: Sequence[Mapping[str, Any]], unit: str = "run(s)") -> dict[str, str]:
    """The claimed gain read from per-run (or per-dataset pooled) intervals against the backbone."""
    claim = PAPER_CLAIMS["dice_gain_points"]
    decided = [r for r in rows if r["verdict"]]
    if not decided:
        return _undecided(rows, "dice_vs_backbone")
    readings = [claim_reading(r["interval"], claim) for r in decided]
    count = {word: readings.count(word) for word in ("agrees", "disagrees", "cannot tell")}
    worse = [r["where"] for r in decided if r["verdict"] == "worse"]
    mean = 100 * float(np.mean([r["interval"]["mean"] for r in decided]))
    n = len(decided)
    tail = (f" Worse than the backbone (interval below 0): {', '.join(worse)}." if worse else "")
    if count["agrees"] == n:
        verdict = (f"Agrees: in every one of the {n} {unit} the 95 % interval lies above 0 and reaches the claimed "
                   f"+{claim:.0f} points ({points(mean)} on average).")
    elif count["disagrees"] > n / 2:
        verdict = (f"Disagrees: in {count['disagrees']} of {n} {unit} the 95 % interval ends below the claimed "
                   f"+{claim:.0f} points ({points(mean)} on average).{tail}")
    else:
        verdict = (f"Cannot tell: {count['agrees']} of {n} {unit} agree, {count['disagrees']} rule the claimed "
                   f"+{claim:.0f} points out and {count['cannot tell']} have an interval spanning both 0 and "
                   f"+{claim:.0f} ({points(mean)} on average).{tail}")
    return {"measured": _listing(decided), "verdict": verdict}


def _finetune_row(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """IAC (Shapley-pruned) against the backbone fine-tuned for as long: the gain not explained by training."""
    rows = _comparisons(records, "iac-shapley", "dice_vs_finetune")
    if not rows:
        return {"measured": "not run yet", "verdict": "Not measured: no run has the fine-tuned backbone evaluated "
                                                      "beside the Shapley-pruned cell."}
    return _against_finetune(rows, "run(s)")


def _against_finetune(rows: Sequence[Mapping[str, Any]], unit: str) -> dict[str, str]:
    """The verdict of the cell against the fine-tuned backbone from per-run (or per-dataset pooled) intervals."""
    decided = [r for r in rows if r["verdict"]]
    if not decided:
        return _undecided(rows, "dice_vs_finetune")
    count = {v: sum(r["verdict"] == v for r in decided) for v in ("improves", "matches", "worse")}
    n = len(decided)
    if count["improves"] == n:
        verdict = f"Agrees: in every one of the {n} {unit} the cell beats the fine-tuned backbone (95 % interval above 0)."
    elif count["worse"] > n / 2:
        verdict = (f"Disagrees: in {count['worse']} of {n} {unit} the cell is worse than the backbone fine-tuned "
                   "for as long (interval below 0): its gain over the pre-trained backbone is the extra training.")
    else:
        verdict = (f"Cannot tell: the cell beats the fine-tuned backbone in {count['improves']} of {n} {unit}, is "
                   f"worse in {count['worse']}, and in {count['matches']} the interval includes 0.")
    return {"measured": _listing(decided), "verdict": verdict}


def _pooled_finetune_row(seed_records: Sequence[Mapping[str, Any]] | None, source: str = "") -> dict[str, str]:
    """The cell against the fine-tuned backbone with intervals that carry the training seeds' variance
    (:func:`_pooled_rows`)."""
    rows = _pooled_rows(seed_records, "dice_vs_finetune", source)
    if not rows:
        return {"measured": "not run yet", "verdict": "Not measured: no dataset has the Shapley-pruned cell and the "
                                                      "fine-tuned backbone evaluated over several training seeds."}
    return _against_finetune(rows, "dataset(s), each over its seeds,")


def speed_text(run_dir: str | Path, policy: str = "shapley", *, checks: bool = True) -> str:
    """A sentence on the speed ratio of one run: the cost of each part of both searches, why the pruned search
    is slower when it is (its Shapley rounds cost more than the training that pruning saved) and, with
    ``checks``, whether its rounds had a signal and whether the machine was busy
    (:func:`shapnas.plots.speed_checks.checks_text`)."""
    from shapnas.plots.speed_checks import checks_text, search_checks

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
    if ratio < 1 and saved <= 0:
        text += (f"The pruned search is slower and pruning saved no training time: its training took "
                 f"{-saved:.1f} s longer than the full search's although it trained fewer operations, so the "
                 "machine's load, not the method, decided this ratio.")
    elif ratio < 1:
        text += (f"The pruned search is slower because its Shapley rounds cost {pruned['shapley']:.1f} s while pruning "
                 f"saved only {saved:.1f} s of training: on this machine a round's coalition evaluations cost more "
                 "than the epochs they shorten.")
    else:
        text += f"Pruning saved {saved:.1f} s of training at a cost of {pruned['shapley']:.1f} s in Shapley rounds."
    notes = checks_text(search_checks(run_dir, policy)) if checks else ""
    return text + (f" {notes}" if notes else "")


def _run_of(records: Sequence[Mapping[str, Any]], row: Mapping[str, Any]) -> str | None:
    return next((r["run_dir"] for r in records if (r["dataset"], r["backbone"], r["seed"]) ==
                 (row["dataset"], row["backbone"], row["seed"])), None)


def _speed_row(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The speed claim, read with the searches' checks: rounds without signal, a busy machine (speed_checks)."""
    from shapnas.plots.speed_checks import SIGNAL_MIN_DICE, checks_text, search_checks

    speed = speedups(records)
    claim = PAPER_CLAIMS["search_speedup"]
    if speed.empty:
        return {"measured": "not run yet", "verdict": "Not measured: no run has both the full and the Shapley-pruned "
                                                      "search."}
    runs = [(row, _run_of(records, row)) for _, row in speed.iterrows()]
    checks = [(row, search_checks(run)) for row, run in runs if run]
    best, mean = speed["speedup"].max(), speed["speedup"].mean()
    measured = f"up to {best:.2f}× (mean {mean:.2f}×, {len(speed)} run(s))"
    cpu = [c["cpu_speedup"] for _, c in checks if c["cpu_speedup"]]
    if cpu:
        measured += f"; from process CPU time up to {max(cpu):.2f}×"
    notes = " ".join(filter(None, (checks_text(c, f"{row['dataset']} seed {row['seed']}: ") for row, c in checks)))
    silent = [c for _, c in checks if c["spans"] and c["silent"] == len(c["spans"])]
    busy = [c for _, c in checks if c["busy"]]
    if checks and len(silent) == len(checks):
        verdict = (f"Cannot tell: the pruned search is up to {best:.2f}× faster, but no pruning round had a signal "
                   f"(|v(N) − v(∅)| under {SIGNAL_MIN_DICE} Dice in every round), so what was pruned, and the time "
                   "it saved, does not come from Shapley values.")
    elif busy and not cpu:
        verdict = (f"Cannot tell: the pruned search is up to {best:.2f}× faster by the wall clock, but the machine "
                   "was busy (identical epochs varied by more than 30 %) and no process CPU time was recorded.")
    else:
        ratio = max(cpu) if busy and cpu else best
        basis = "process CPU time (the wall clock was disturbed by load)" if busy and cpu else "the wall clock"
        if ratio >= claim:
            verdict = f"Agrees: the pruned search is up to {ratio:.2f}× faster by {basis}, reaching the claimed {claim:.0f}×."
        elif ratio > 1:
            verdict = (f"Disagrees: the pruned search is faster (up to {ratio:.2f}× by {basis}) but does not reach "
                       f"the claimed {claim:.0f}×.")
        else:
            row = speed.loc[speed["speedup"].idxmax()]
            run = _run_of(records, row)
            why = f" {speed_text(run, checks=False)}" if run else ""
            verdict = f"Disagrees: the pruned search is not faster here (best {ratio:.2f}× by {basis}).{why}"
    return {"measured": measured, "verdict": verdict + (f" {notes}" if notes else "")}


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
        verdict = (f"Cannot tell: on {noise} of {len(pairs)} dataset(s) neither search agrees across seeds more than "
                   "random genotypes of the same shape (chance p95), so a difference between them reads noise.")
    elif gains:
        verdict = (f"Cannot tell: the Shapley-pruned search is more stable than the full search, above chance, on "
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


def _both_intervals(records: Sequence[Mapping[str, Any]]) -> str:
    """Per run: the Shapley-pruned cell against the backbone and against the fine-tuned backbone, side by side."""
    lines = []
    for record in records:
        if record.get("method") == "iac-shapley" and (record.get("dice_vs_backbone") or record.get("dice_vs_finetune")):
            pair = [f"vs {name} {interval_text(record[field]) if record.get(field) else 'no interval'}"
                    for name, field in (("backbone", "dice_vs_backbone"), ("fine-tuned", "dice_vs_finetune"))]
            lines.append(f"{record['dataset']} seed {record['seed']}: " + ", ".join(pair))
    return "; ".join(lines)


def _baselines_row(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    rows = (_comparisons(records, "iac-shapley", "dice_vs_backbone")
            + _comparisons(records, "iac-shapley", "dice_vs_finetune"))
    if not rows:
        return {"measured": "not run yet", "verdict": "Not measured: no baseline evaluated beside the Shapley-pruned "
                                                      "cell."}
    decided = [r for r in rows if r["verdict"]]
    if not decided:
        return _undecided(rows, "dice_vs_backbone`, `dice_vs_finetune")
    counts = {v: sum(r["verdict"] == v for r in decided) for v in ("improves", "matches", "worse")}
    n = len(decided)
    tally = (f" ({counts['improves']} improve, {counts['matches']} include 0, {counts['worse']} worse, of {n} "
             "comparisons with the backbone and the fine-tuned backbone)")
    if counts["worse"] >= n / 2:
        verdict = f"Disagrees: worse than its baseline in {counts['worse']} of {n} comparisons{tally}."
    elif counts["improves"] > n / 2:
        verdict = f"Agrees: better than its baseline in {counts['improves']} of {n} comparisons{tally}."
    else:
        verdict = (f"Cannot tell: in {counts['matches']} of {n} comparisons the 95 % interval includes 0, which does "
                   f"not show a match either{tally}.")
    return {"measured": _both_intervals(records), "verdict": verdict}


def claims_table(records: Sequence[Mapping[str, Any]],
                 seed_records: Sequence[Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """The paper's claims beside our measured numbers, each with a computed sentence saying whether they agree.

    Args:
        records: ``collect_summary`` records (IAC records with ``dice_vs_backbone`` / ``dice_vs_finetune``
            intervals where the summary provides them).
        seed_records: ``collect_summary`` records of runs with several seeds (the ablation plan's main runs,
            ``<results>/ablations/main``); when given, the stability claim is judged on them.

    Returns:
        Rows: the claims; columns ``paper`` (the stated claim), ``measured``, ``agreement`` (Agrees, Disagrees,
        Cannot tell, Not measured, Not yet measurable) and ``verdict`` (a sentence). On phantom data the verdicts carry a note that they say nothing about the paper.
    """
    rows = {
        "IAC improves the pre-trained U-Net (Dice)": {
            "paper": f"about +{PAPER_CLAIMS['dice_gain_points']:.0f} Dice points on average, up to "
                     f"+{PAPER_CLAIMS['dice_gain_max_points']:.0f}", **_gain_row(records, "iac-shapley")},
        "IAC improves the pre-trained U-Net, over training seeds (Dice)": {
            "paper": f"about +{PAPER_CLAIMS['dice_gain_points']:.0f} Dice points, beyond one training run",
            **(_pooled_gain_row(seed_records, "the seed plan's ") if seed_records else _pooled_gain_row(records))},
        "IAC with the full search (Dice)": {
            "paper": f"about +{PAPER_CLAIMS['dice_gain_points']:.0f} Dice points (IAC paper)",
            **_gain_row(records, method_name("none"))},
        "IAC against the fine-tuned backbone (Dice)": {
            "paper": "implied: the gain comes from the cells, not from the extra training", **_finetune_row(records)},
        "IAC against the fine-tuned backbone, over training seeds (Dice)": {
            "paper": "implied: the gain holds beyond one training run",
            **(_pooled_finetune_row(seed_records, "the seed plan's ") if seed_records else
               _pooled_finetune_row(records))},
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
