"""One table of every finished evaluation under a results folder: what the book, the benchmarks and
``python -m shapnas summary`` read (Benedykciuk et al., Sci. Rep. 2026: Dice, HD95, search wall-clock).

Each IAC record also compares the re-trained cell with the backbone and with the fine-tuned control of the
same run, patient by patient: a paired bootstrap over the test patients gives the mean Dice difference and
its 95 % interval, so that "improves", "matches" and "worse" are read from intervals, not from a rule of
thumb (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, percentile interval).

One training run's interval covers the test patients only: two runs that differ in floating-point round-off
alone gave intervals that excluded each other. :func:`pooled_summary` therefore pools the seeds of a method:
a two-level bootstrap (seeds with replacement, then patients with replacement within each drawn seed, paired
by patient against the same seed's reference; Davison & Hinkley, *Bootstrap Methods*, 1997, §3.8) gives an
interval that carries the training run's variance as well as the patients'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from shapnas.config.names import BASELINE_METHODS, TRANSFER_ARMS, split_policy_variant
from shapnas.runs.files import load_json
from shapnas.runs.identity import method_of_target, model_stage_name, parse_setting_folder, stage_name
from shapnas.runs.records import finished_stages, select_profile, stage_profile
from shapnas.training.evaluate import patient_scores

__all__ = ["collect_summary", "method_name", "paired_bootstrap", "paired_differences", "two_level_bootstrap",
           "pooled_summary", "PooledGroup", "pooled_groups", "REFERENCES", "BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED"]

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
# the arms an IAC record is compared with: the pre-trained backbone as is and its fine-tuned control
REFERENCES = ("backbone", "finetune")


def method_name(target: str) -> str:
    """``backbone`` and ``finetune`` stay; a policy ``p`` becomes ``iac-p`` (the retrofitted cell it found)."""
    return method_of_target(target)


def paired_bootstrap(scores: Mapping[str, float], reference: Mapping[str, float], *,
                     num_resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95,
                     seed: int = BOOTSTRAP_SEED) -> dict[str, float] | None:
    """Mean paired difference ``scores − reference`` over patients with a percentile bootstrap interval.

    Patients are resampled with replacement (``num_resamples`` times, from ``np.random.default_rng(seed)``);
    the interval is the ``(1 − level)/2`` and ``(1 + level)/2`` quantiles of the resampled means.

    Args:
        scores: patient id -> Dice (fraction) of the method.
        reference: patient id -> Dice of the method compared with; only patients in both are paired.
        num_resamples: bootstrap resamples (at least 1).
        level: coverage of the interval, in (0, 1).
        seed: seed of the resampling.

    Returns:
        ``{"mean", "ci_low", "ci_high"}`` (Dice as a fraction), or None without a common patient.

    Raises:
        ValueError: ``num_resamples < 1`` or ``level`` outside (0, 1).
    """
    if num_resamples < 1 or not 0 < level < 1:
        raise ValueError(f"num_resamples={num_resamples}, level={level}; expected >= 1 and a level in (0, 1)")
    common = sorted(set(scores) & set(reference))
    if not common:
        return None
    diff = np.array([scores[p] - reference[p] for p in common], dtype=float)  # (P,)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, diff.size, size=(num_resamples, diff.size))  # (R, P)
    means = diff[index].mean(axis=1)  # (R,)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": float(diff.mean()), "ci_low": float(low), "ci_high": float(high)}


def two_level_bootstrap(differences: Mapping[int, Mapping[str, float]], *,
                        num_resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95,
                        seed: int = BOOTSTRAP_SEED) -> dict[str, float] | None:
    """Mean paired difference over training seeds and patients, with a two-level percentile bootstrap interval.

    Each resample draws as many seeds as there are, with replacement, then within each drawn seed as many of its
    patients, with replacement, and averages the drawn differences; the interval is the ``(1 − level)/2`` and
    ``(1 + level)/2`` quantiles of those means (Davison & Hinkley, *Bootstrap Methods*, 1997, §3.8). With one
    seed it is :func:`paired_bootstrap`'s interval.

    Args:
        differences: training seed -> patient id -> Dice difference (method − reference of that seed).
        num_resamples: bootstrap resamples (at least 1).
        level: coverage of the interval, in (0, 1).
        seed: seed of the resampling (``np.random.default_rng``).

    Returns:
        ``{"mean", "ci_low", "ci_high", "seeds", "patients"}`` (mean over seeds of each seed's patient mean;
        ``patients``: the fewest of one seed), or None without a seed with a patient.

    Raises:
        ValueError: ``num_resamples < 1`` or ``level`` outside (0, 1).
    """
    if num_resamples < 1 or not 0 < level < 1:
        raise ValueError(f"num_resamples={num_resamples}, level={level}; expected >= 1 and a level in (0, 1)")
    rows = [np.array([d[p] for p in sorted(d)], dtype=float) for _, d in sorted(differences.items()) if d]
    if not rows:
        return None
    rng = np.random.default_rng(seed)
    drawn_seeds = rng.integers(0, len(rows), size=(num_resamples, len(rows)))  # (R, S)
    means = np.zeros(num_resamples)
    for slot in range(len(rows)):  # every drawn seed gets patients drawn afresh, also when drawn twice
        for s, row in enumerate(rows):
            patient_means = row[rng.integers(0, row.size, size=(num_resamples, row.size))].mean(axis=1)  # (R,)
            means += np.where(drawn_seeds[:, slot] == s, patient_means, 0.0)
    means /= len(rows)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": float(np.mean([row.mean() for row in rows])), "ci_low": float(low), "ci_high": float(high),
            "seeds": len(rows), "patients": int(min(row.size for row in rows))}


def _search_record(run: Path, target: str) -> dict[str, Any]:
    policy = None if target in BASELINE_METHODS else split_policy_variant(target)[0]
    if policy is None or not (path := run / stage_name("search", policy) / "metrics.json").exists():
        return {"search_wall_s": None, "epochs": None, "genotype": None}
    search = load_json(path)
    return {"search_wall_s": search["search_wall_s"], "epochs": search["epochs"], "genotype": search["genotype"]}


def _comparisons(run: Path, target: str, scores: dict[str, float]) -> dict[str, Any]:
    """``dice_vs_backbone`` and ``dice_vs_finetune`` of an IAC record (None where that arm is not evaluated)."""
    if target in BASELINE_METHODS:
        return {}
    out: dict[str, Any] = {}
    for arm in REFERENCES:
        path = run / stage_name("eval", arm) / "metrics.json"
        out[f"dice_vs_{arm}"] = (paired_bootstrap(scores, patient_scores(load_json(path).get("per_case", [])))
                                 if path.exists() else None)
    return out


def _baseline_comparisons(run: Path, backbone: str, target: str, scores: dict[str, float]) -> dict[str, Any]:
    """``dice_vs_baselines`` of an IAC record: per other backbone family evaluated on the same dataset, seed and
    setting (e.g. ``attention_unet``, ``basic_unet_plus_plus``: the attention-based and dense-skip baselines the
    IAC papers compare with), the paired bootstrap of this record's patients against that backbone's."""
    if target in BASELINE_METHODS:
        return {}
    setting = run.name if parse_setting_folder(run.name) is not None else ""
    seed_dir = run.parent if setting else run
    dataset_dir = seed_dir.parent.parent
    out = {}
    for other in sorted(p.name for p in dataset_dir.iterdir() if p.is_dir() and p.name != backbone):
        path = dataset_dir / other / seed_dir.name / setting / stage_name("eval", "backbone") / "metrics.json"
        if path.exists():
            out[other] = paired_bootstrap(scores, patient_scores(load_json(path).get("per_case", [])))
    return {"dice_vs_baselines": out}


def _setting_record(run: Path, target: str, scores: dict[str, float]) -> dict[str, Any]:
    """``setting``, ``target_train_patients`` and, for the transfer setting, ``source_drop``: the source backbone's
    mean patient Dice on the source site's test patients minus on the target site's (None until the same-site
    ``eval-backbone`` of that seed ran)."""
    number = parse_setting_folder(run.name)
    if number is None:
        return {"setting": "same_site", "target_train_patients": None, "source_drop": None}
    target_backbone = scores if target == "backbone" else patient_scores(
        load_json(path).get("per_case", [])) if (path := run / stage_name("eval", "backbone") / "metrics.json"
                                                   ).exists() else {}
    source = run.parent / stage_name("eval", "backbone") / "metrics.json"
    source_scores = patient_scores(load_json(source).get("per_case", [])) if source.exists() else {}
    drop = (float(np.mean(list(source_scores.values())) - np.mean(list(target_backbone.values())))
            if source_scores and target_backbone else None)
    return {"setting": "transfer", "target_train_patients": number, "source_drop": drop}


def _model_dir(run: Path, method: str) -> Path:
    """The stage folder of a method's model; the transfer setting's backbone is the seed folder's ``pretrain``."""
    stage = model_stage_name(method)
    return (run.parent if stage == "pretrain" and parse_setting_folder(run.name) is not None else run) / stage


def _eval_record(run: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """The summary record of one finished ``eval-<target>`` stage in the run folder ``run``."""
    target = metrics["target"]
    method = method_of_target(target)
    scores = patient_scores(metrics.get("per_case", []))
    return {
        "dataset": metrics["dataset"],
        "backbone": metrics["backbone"],
        "seed": metrics["seed"],
        "method": method,
        "profile": stage_profile(run / stage_name("eval", target), metrics),
        **_setting_record(run, target, scores),
        "run_dir": str(run),
        "model_dir": str(_model_dir(run, method)),
        "dice_mean": metrics["dice_mean"],
        "dice_per_class": metrics["dice_per_class"],
        "hd95_mean": metrics["hd95_mean"],
        **_search_record(run, target),
        "test_patients": len({str(c["patient_id"]) for c in metrics.get("per_case", [])}),
        "dice_patient_mean": float(np.mean(list(scores.values()))) if scores else None,
        "patient_dice": scores,
        "seeds": 1,
        **_comparisons(run, target, scores),
        **_baseline_comparisons(run, metrics["backbone"], target, scores),
    }


def collect_summary(results_root: str | Path, profile: str | None = None,
                    setting: str | None = "") -> list[dict[str, Any]]:
    """Records of every finished ``eval-*`` stage under ``results_root`` (``run_records.finished_stages``).

    Args:
        results_root: the results folder (``<dataset>/<backbone>/seed-<k>/[transfer-n<N>/]eval-<target>/``).
        profile: keep only evaluations of this profile (``smoke``, ``workshop``, ``paper``, ``custom``);
            None keeps all, which must then share one profile.
        setting: the setting folder read: ``""`` the same-site runs (default), ``transfer-n<N>`` one transfer
            folder, None every setting (each record says which).

    Returns:
        One dict per evaluation: dataset, backbone, seed, method, profile, setting (``same_site`` or
        ``transfer``), target_train_patients and source_drop (transfer only, else None), run_dir (the seed or
        transfer folder), model_dir (the stage folder holding the evaluated model: ``pretrain``, ``finetune``,
        ``normtune``, ``scratch`` or ``retrain-<policy>[-joint]``, what ``python -m shapnas predict --run``
        takes), dice_mean, dice_per_class, hd95_mean, search_wall_s, epochs, genotype, test_patients,
        dice_patient_mean (mean patient-level Dice, the quantity the comparisons pair), patient_dice (patient id
        -> Dice) and seeds (1: one training run); IAC records add ``dice_vs_backbone`` and ``dice_vs_finetune``:
        ``{mean, ci_low, ci_high}`` of a 95 % paired bootstrap over the test patients (:func:`paired_bootstrap`),
        None where that arm was not evaluated in the run, and ``dice_vs_baselines``: other backbone name ->
        the same interval against that backbone's own ``eval-backbone`` of the same dataset, seed and setting
        (the attention-based and dense-skip baselines; empty when none was evaluated). Sorted by dataset,
        backbone, setting, method, seed.

    Raises:
        shapnas.runs.records.MixedProfilesError: evaluations of several profiles and no ``profile`` chosen.
    """
    records = [_eval_record(stage.parent, load_json(stage / "metrics.json"))
               for _, stage in finished_stages(results_root, "eval", setting)]
    records = select_profile(records, profile, results_root)
    return sorted(records, key=lambda r: (r["dataset"], r["backbone"], r["setting"],
                                          r["target_train_patients"] or 0, r["method"], r["seed"]))


def _group(record: Mapping[str, Any]) -> tuple[Any, ...]:
    return (record["dataset"], record["backbone"], record["setting"], record["target_train_patients"],
            record["profile"])


def pooled_summary(records: list[dict[str, Any]], *, num_resamples: int = BOOTSTRAP_RESAMPLES,
                   level: float = 0.95) -> list[dict[str, Any]]:
    """One record per method and setting, pooled over its training seeds, with two-level bootstrap intervals.

    Args:
        records: :func:`collect_summary` records (any settings; each group keeps to its own).
        num_resamples: bootstrap resamples.
        level: coverage of the intervals.

    Returns:
        Per (dataset, backbone, setting, target_train_patients, profile, method): those keys, ``seeds`` (the
        training seeds pooled, sorted), ``test_patients`` (the fewest of one seed), ``dice_patient_mean`` (mean
        over seeds), ``source_drop`` (mean over seeds; transfer only) and, for every method but the backbone,
        ``dice_vs_<reference>`` for each other of :data:`REFERENCES` (so the fine-tuned backbone against the
        backbone too): :func:`two_level_bootstrap` of the paired differences against the same seed's reference
        (None where no seed has that reference); IAC rows add ``dice_vs_baselines``: other backbone family ->
        the same interval against that family's backbone records of the same seeds.
    """
    by_key = {(_group(r), r["method"], r["seed"]): r for r in records}
    pooled = []
    for group in sorted({_group(r) for r in records}, key=str):
        methods = sorted({m for g, m, _ in by_key if g == group})
        for method in methods:
            runs = {s: r for (g, m, s), r in by_key.items() if g == group and m == method}
            drops = [r["source_drop"] for r in runs.values() if r.get("source_drop") is not None]
            row: dict[str, Any] = {
                "dataset": group[0], "backbone": group[1], "setting": group[2], "target_train_patients": group[3],
                "profile": group[4], "method": method, "seeds": sorted(runs),
                "test_patients": min(r["test_patients"] for r in runs.values()),
                "dice_patient_mean": float(np.mean([r["dice_patient_mean"] for r in runs.values()
                                                    if r["dice_patient_mean"] is not None] or [np.nan])),
                "source_drop": float(np.mean(drops)) if drops else None}
            if method != "backbone":
                for reference in (r for r in REFERENCES if r != method):
                    differences = {s: paired_differences(r["patient_dice"],
                                                         by_key[(group, reference, s)]["patient_dice"])
                                   for s, r in runs.items() if (group, reference, s) in by_key}
                    row[f"dice_vs_{reference}"] = two_level_bootstrap(
                        differences, num_resamples=num_resamples, level=level) if differences else None
            if method not in BASELINE_METHODS:
                row["dice_vs_baselines"] = _pooled_baselines(by_key, group, runs, num_resamples, level)
            pooled.append(row)
    return pooled


def _pooled_baselines(by_key: Mapping[tuple[Any, str, int], Mapping[str, Any]], group: tuple[Any, ...],
                      runs: Mapping[int, Mapping[str, Any]], num_resamples: int, level: float) -> dict[str, Any]:
    """Per other backbone of the group's dataset, setting, N and profile: the two-level bootstrap of ``runs``
    against that backbone's ``backbone`` records of the same seeds (the pooled ``dice_vs_baselines``)."""
    others = sorted({g[1] for g, m, _ in by_key if m == "backbone" and g[1] != group[1]
                     and (g[0],) + g[2:] == (group[0],) + group[2:]})
    out = {}
    for other in others:
        reference = (group[0], other, *group[2:])
        differences = {s: paired_differences(r["patient_dice"],
                                             by_key[(reference, "backbone", s)]["patient_dice"])
                       for s, r in runs.items() if (reference, "backbone", s) in by_key}
        if differences:
            out[other] = two_level_bootstrap(differences, num_resamples=num_resamples, level=level)
    return out


def paired_differences(scores: Mapping[str, float], reference: Mapping[str, float]) -> dict[str, float]:
    """Patient id -> ``scores − reference`` over the patients both scored."""
    return {p: scores[p] - reference[p] for p in sorted(set(scores) & set(reference))}


class PooledGroup(NamedTuple):
    """The runs pooled together: one dataset, backbone, setting, N (0 for the same site) and profile."""

    dataset: str
    backbone: str
    setting: str
    n: int
    profile: str


def pooled_groups(records: Sequence[Mapping[str, Any]]) -> list[tuple[PooledGroup, list[Mapping[str, Any]]]]:
    """Pooled records grouped by (dataset, backbone, setting, N, profile), each group's arms in
    :data:`~shapnas.config.names.TRANSFER_ARMS` order (the baselines first; other methods after them, by name).
    Both settings' tables read it: the transfer page's and chapter 5's over the seed plan's seeds.

    Args:
        records: :func:`pooled_summary` records.

    Returns:
        ``[(group key, records of the group)]``, groups sorted by their key (N as a number); N is 0 for the same site.
    """
    order = {method_of_target(arm): i for i, arm in enumerate(TRANSFER_ARMS)}

    def key(r: Mapping[str, Any]) -> PooledGroup:
        return PooledGroup(r["dataset"], r["backbone"], r["setting"], r.get("target_train_patients") or 0,
                           r.get("profile", ""))

    groups = sorted({key(r) for r in records})
    return [(g, sorted((r for r in records if key(r) == g),
                       key=lambda r: (order.get(r["method"], len(order)), r["method"]))) for g in groups]
