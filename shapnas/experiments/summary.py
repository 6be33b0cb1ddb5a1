"""One table of every finished evaluation under a results folder: what the book, the benchmarks and
``python -m shapnas summary`` read (Benedykciuk et al., Sci. Rep. 2026: Dice, HD95, search wall-clock).

Each IAC record also compares the re-trained cell with the backbone and with the fine-tuned control of the
same run, patient by patient: a paired bootstrap over the test patients gives the mean Dice difference and
its 95 % interval, so that "improves", "matches" and "worse" are read from intervals, not from a rule of
thumb (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, percentile interval).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from shapnas.config.names import BASELINE_METHODS
from shapnas.runs.files import load_json
from shapnas.runs.identity import method_of_target, model_stage_name, stage_name
from shapnas.runs.records import finished_stages, select_profile, stage_profile
from shapnas.training.evaluate import patient_scores

__all__ = ["collect_summary", "method_name", "paired_bootstrap", "BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED"]

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


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


def _search_record(run: Path, target: str) -> dict[str, Any]:
    if target in BASELINE_METHODS or not (path := run / stage_name("search", target) / "metrics.json").exists():
        return {"search_wall_s": None, "epochs": None, "genotype": None}
    search = load_json(path)
    return {"search_wall_s": search["search_wall_s"], "epochs": search["epochs"], "genotype": search["genotype"]}


def _comparisons(run: Path, target: str, scores: dict[str, float]) -> dict[str, Any]:
    """``dice_vs_backbone`` and ``dice_vs_finetune`` of an IAC record (None where that arm is not evaluated)."""
    if target in BASELINE_METHODS:
        return {}
    out: dict[str, Any] = {}
    for arm in BASELINE_METHODS:
        path = run / stage_name("eval", arm) / "metrics.json"
        out[f"dice_vs_{arm}"] = (paired_bootstrap(scores, patient_scores(load_json(path).get("per_case", [])))
                                 if path.exists() else None)
    return out


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
        "run_dir": str(run),
        "model_dir": str(run / model_stage_name(method)),
        "dice_mean": metrics["dice_mean"],
        "dice_per_class": metrics["dice_per_class"],
        "hd95_mean": metrics["hd95_mean"],
        **_search_record(run, target),
        "test_patients": len({str(c["patient_id"]) for c in metrics.get("per_case", [])}),
        "dice_patient_mean": float(np.mean(list(scores.values()))) if scores else None,
        **_comparisons(run, target, scores),
    }


def collect_summary(results_root: str | Path, profile: str | None = None) -> list[dict[str, Any]]:
    """Records of every finished ``eval-*`` stage under ``results_root`` (``run_records.finished_stages``).

    Args:
        results_root: the results folder (``<dataset>/<backbone>/seed-<k>/eval-<target>/``).
        profile: keep only evaluations of this profile (``smoke``, ``workshop``, ``paper``, ``custom``);
            None keeps all, which must then share one profile.

    Returns:
        One dict per evaluation: dataset, backbone, seed, method, profile, run_dir (the seed folder),
        model_dir (the stage folder holding the evaluated model: ``pretrain``, ``finetune`` or
        ``retrain-<policy>``, what ``python -m shapnas predict --run`` takes), dice_mean, dice_per_class,
        hd95_mean, search_wall_s, epochs, genotype, test_patients, dice_patient_mean (mean patient-level
        Dice, the quantity the comparisons pair); IAC records add ``dice_vs_backbone`` and
        ``dice_vs_finetune``: ``{mean, ci_low, ci_high}`` of a 95 % paired bootstrap over the test patients
        (:func:`paired_bootstrap`), None where that arm was not evaluated in the run. Sorted by dataset,
        backbone, method, seed.

    Raises:
        shapnas.runs.records.MixedProfilesError: evaluations of several profiles and no ``profile`` chosen.
    """
    records = [_eval_record(stage.parent, load_json(stage / "metrics.json"))
               for _, stage in finished_stages(results_root, "eval")]
    records = select_profile(records, profile, results_root)
    return sorted(records, key=lambda r: (r["dataset"], r["backbone"], r["method"], r["seed"]))
