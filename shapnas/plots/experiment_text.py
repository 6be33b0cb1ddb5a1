"""Computed sentences of the ablations (notebook 05) and of the stability across seeds (notebook 06).

Every verdict is computed from the numbers of :mod:`shapnas.plots.experiment_stats`: whether the best setting
of an ablation axis leads by more than the seed noise, whether Shapley-guided pruning (Benedykciuk et al.,
Sci. Rep. 2026) picks more stable cells than the full search, and whether each search agrees across seeds
more than chance. :func:`ablation_plan_text` reads the ablation plan of a results folder.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from shapnas.plots.experiment_stats import ablation_stats, one_group

__all__ = ["ablation_text", "ablation_plan_text", "seed_intervals_table", "seed_intervals_text", "stability_text", "STABILITY_METRICS", "TIE"]

# measures of the chosen cells on which the stability verdict rests (1: higher is more stable)
STABILITY_METRICS = (("jaccard", "genotype Jaccard", 1), ("modal_agreement", "modal-op agreement", 1))
TIE = 1e-3  # metric differences below this count as ties


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
        records: :func:`shapnas.experiments.ablations.ablation_records` records of one dataset.

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
    from shapnas.experiments.ablations import ablation_plan

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
    from shapnas.experiments.ablations import ablation_records, load_plan

    plan = load_plan(results)
    if plan is None or dataset not in plan.datasets:
        where = ("no ablation plan has been run in this results folder" if plan is None else
                 f"the plan run here covers {', '.join(plan.datasets)}, not {dataset}")
        profile = _covering_profile(dataset)
        how = (f"`python -m shapnas ablations --profile {profile} --datasets {dataset}` runs them "
               f"(`python -m shapnas run --profile {profile} --datasets {dataset}` runs them before this "
               "chapter)." if profile else
               f"No profile's plan covers {dataset} (`shapnas.experiments.ablations.ablation_plan`); add it to a plan, then "
               f"run `python -m shapnas ablations --profile paper --datasets {dataset}`.")
        return f"**Not run yet:** {where}, so this page shows no results for {dataset}. {how}"
    ran = plan.profile
    if not ablation_records(results, dataset):
        return (f"**No results yet:** the `{ran}` ablation plan covers {dataset}, but none of its evaluations has "
                f"finished (the job logs are in the run folders); `python -m shapnas ablations --profile {ran} "
                f"--datasets {dataset}` completes what is missing.")
    variants = ", ".join(f"{v.setting} ({v.axis})" for v in plan.variants)
    scale = ", ".join(f"`{key}={value}`" for key, value in plan.scale.items())
    variant_text = (f"the Shapley search with one setting changed (variants: {variants}) with "
                    f"{_seeds(plan.variant_seeds)} on {', '.join(plan.variant_datasets or plan.datasets)}, each "
                    f"against the default Shapley search of the same {'seed' if len(plan.variant_seeds) == 1 else 'seeds'}"
                    if variants and plan.variant_seeds else
                    "no one-setting variants (the `paper` plan runs them, and every pruning rule: "
                    "`python -m shapnas ablations --profile paper`)")
    return (f"The `{ran}` ablation plan was run for {', '.join(plan.datasets)}: policies "
            f"{', '.join(plan.policies)} with {_seeds(plan.seeds)}; {variant_text}. "
            + (f"Every run of the plan is smaller than this profile's main runs ({scale}), so its numbers are "
               "not those of chapters 2–4. " if scale else "") + f"Shown: {dataset}.")


def seed_intervals_table(results: str | Path, dataset: str, profile: str | None = None) -> pd.DataFrame:
    """The backbone, the fine-tuned backbone and the cells of the ablation plan's main runs, pooled over its seeds
    (:func:`shapnas.experiments.ablations.seed_plan_pooled`): Dice and the differences from the backbone and the
    fine-tuned backbone with their 95 % two-level intervals and verdicts.

    Args:
        results: the results folder.
        dataset: the dataset of the notebook.
        profile: keep only runs of this profile (None: all).

    Returns:
        One row per method (per backbone family and method when the plan ran several families, the sentences of
        :func:`seed_intervals_text` name it); empty when the plan has not run ``dataset``.
    """
    from shapnas.experiments.ablations import seed_plan_pooled
    from shapnas.experiments.intervals import pooled_table_rows

    pooled = seed_plan_pooled(results, dataset, profile)
    rows = [{"backbone": r["backbone"], **row}
            for r, row in zip(pooled, pooled_table_rows(pooled, first="method", backbone_column="vs backbone"))]
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    several = table["backbone"].nunique() > 1
    return table.set_index(["backbone", "method"]) if several else table.drop(columns="backbone").set_index("method")


def seed_intervals_text(results: str | Path, dataset: str, profile: str | None = None) -> str:
    """The cells against the backbone and the fine-tuned backbone over the ablation plan's seeds, in words
    (Markdown, beside :func:`seed_intervals_table`): one computed sentence per cell, a verdict only where the
    95 % two-level interval (seeds, then patients) excludes 0.

    Args:
        results: the results folder.
        dataset: the dataset of the notebook.
        profile: keep only runs of this profile (None: all).

    Returns:
        The sentences and what the intervals carry, or a note saying that the plan has not run the baselines for
        ``dataset``.
    """
    from shapnas.config.names import method_label
    from shapnas.experiments.ablations import seed_plan_pooled
    from shapnas.experiments.intervals import MIN_SEEDS, interval_text, verdict_word

    pooled = seed_plan_pooled(results, dataset, profile)
    cells = [r for r in pooled if r["method"].startswith("iac-") and r.get("dice_vs_finetune")]
    if not cells:
        return (f"**Not measured yet:** no cell of {dataset} has the backbone and the fine-tuned backbone evaluated "
                "beside it over the plan's seeds (`python -m shapnas ablations` runs them).")
    lines = []
    for r in cells:
        few = len(r["seeds"]) < MIN_SEEDS
        against = {ref: (f"{interval_text(r[f'dice_vs_{ref}'])} ({verdict_word(r[f'dice_vs_{ref}'])})"
                         if r.get(f"dice_vs_{ref}") else "–") for ref in ("backbone", "finetune")}
        lines.append(f"- **{method_label(r['method'])}** (`{r['backbone']}`, seeds {', '.join(map(str, r['seeds']))}, "
                     f"{r['test_patients']} test patients): against the backbone {against['backbone']}; against the "
                     f"fine-tuned backbone {against['finetune']}"
                     + (f"; over {len(r['seeds'])} seeds only, fewer than the {MIN_SEEDS} an interval needs to "
                        "carry the seeds' variance." if few else "."))
    lines += ["", "*Dice: mean patient-level Dice (points) over seeds. Differences: mean paired difference in points "
                  "[95 % two-level bootstrap interval: seeds, then patients within a seed]; better / worse only where "
                  "the interval excludes 0. Every seed's backbone is the same pre-trained model; the seed changes the "
                  "search, the re-training and the fine-tuning.*"]
    return "\n".join(lines)


def _seeds(seeds: Sequence[int]) -> str:
    """``seed 0`` or ``seeds 0, 1, 2``."""
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))


def stability_text(report: Sequence[Mapping[str, Any]], dataset: str | None = None) -> str:
    """Shapley-pruned search (``shapley``) against the full search (``none``): genotype Jaccard, modal-op
    agreement, JS divergence and test Dice std, and a plain verdict on whether it is more stable here.

    Args:
        report: :func:`shapnas.experiments.stability.report.stability_report` rows.
        dataset: keep this dataset (None: the report must hold one dataset and backbone).

    Returns:
        Markdown text; says what is missing when the comparison cannot be made. The verdict rests on the
        chosen cells (Jaccard, agreement); the JS divergence is reported beside them but not counted, since
        pruning makes the op distributions peaked while a short full search leaves them near uniform (and
        near-uniform distributions agree across seeds whatever the search learnt).
    """
    rows = {r["policy"]: r for r in one_group(report, dataset, "stability rows")}
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
    """Whether each search's cells agree across seeds more than random cells of the same shape do."""
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
