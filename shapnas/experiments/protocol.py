"""The training-protocol study: augmentation × backbone family, each arm over seeds with two-level intervals.

IAC-LTH reports its results "in both non-augmented and augmented training settings" on "multiple 2-D U-Net
backbones", and IAC its gains over "attention-based and dense-skip baselines" (Benedykciuk et al. 2024, 2026).
This study runs, for every (augmentation, backbone family, dataset, seed) of a plan, the backbone, its fine-tuned
control and the Shapley-pruned IAC cell, each as one chained matrix job (:func:`shapnas.experiments.matrix.build_jobs`),
on a local Dask cluster or an existing scheduler. Layout::

    <results>/ablations/protocol/augmentation-<none|standard>/<dataset>/<backbone>/seed-<k>/...

One results folder per augmentation, so that a stage never meets its other-augmentation twin; the phantom data are
written once, by the first pre-training, and read by every other run. :func:`protocol_records` pools each arm over
its seeds (:func:`shapnas.experiments.summary.pooled_summary`) and adds the effect of augmentation on each arm
(paired by seed and patient, two-level bootstrap).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shapnas.config.names import dataset_label
from shapnas.experiments.intervals import dice_points, interval_bracket, interval_verdict
from shapnas.experiments.matrix import Job, JobResult, build_jobs, pretrainings_after
from shapnas.experiments.summary import collect_summary, paired_differences, pooled_summary, two_level_bootstrap

__all__ = ["ProtocolPlan", "protocol_plan", "protocol_root", "build_protocol_jobs", "run_protocol",
           "protocol_records", "augmentation_effects", "format_protocol_table", "protocol_findings"]

PROTOCOL_FOLDER = "protocol"
PROTOCOL_METHODS = ("backbone", "finetune", "iac-shapley")  # the arms of every (augmentation, backbone)


@dataclass(frozen=True)
class ProtocolPlan:
    """What the protocol study of a profile runs.

    Args:
        profile: the parameter profile of every run.
        datasets: datasets of the study.
        seeds: training seeds of every arm (at least 3 for intervals that carry the seed variance).
        backbones: backbone families (``shapnas.networks.backbones.BACKBONE_NAMES``).
        augmentations: augmentation policies (``shapnas.config.stage_configs.AUGMENTATION_NAMES``).
        policy: the IAC search's pruning policy.
        scale: config overrides of every run (its size, when smaller than the profile's).
    """

    profile: str
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    backbones: tuple[str, ...]
    augmentations: tuple[str, ...] = ("none", "standard")
    policy: str = "shapley"
    scale: dict[str, Any] = field(default_factory=dict)


def protocol_plan(profile: str) -> ProtocolPlan:
    """The plan of a profile: ``smoke`` (tests: ACDC, two seeds, BasicUNet and AttentionUnet), ``workshop`` (ACDC
    and KiTS, three seeds, the three families, at the ablation plan's 32-px scale), ``paper`` (the four datasets,
    five seeds, the four MONAI families at the profile's own size).

    Args:
        profile: ``smoke``, ``workshop`` or ``paper``.

    Returns:
        The plan.
    """
    from shapnas.experiments.ablations import WORKSHOP_SCALE

    if profile == "smoke":
        return ProtocolPlan(profile, ("acdc",), (0, 1), ("basic_unet", "attention_unet"))
    if profile == "workshop":
        return ProtocolPlan(profile, ("acdc", "kits"), (0, 1, 2),
                            ("basic_unet", "attention_unet", "basic_unet_plus_plus"), scale=dict(WORKSHOP_SCALE))
    if profile == "paper":
        return ProtocolPlan(profile, ("acdc", "brats", "kits", "amos"), (0, 1, 2, 3, 4),
                            ("basic_unet", "unet", "attention_unet", "basic_unet_plus_plus"))
    raise ValueError(f"profile={profile!r}; expected smoke, workshop or paper")


def protocol_root(results: str | Path, augmentation: str) -> Path:
    """``<results>/ablations/protocol/augmentation-<augmentation>``."""
    return Path(results) / "ablations" / PROTOCOL_FOLDER / f"augmentation-{augmentation}"


def build_protocol_jobs(plan: ProtocolPlan, *, results: str | Path, datasets: Sequence[str] | None = None,
                        data_dirs: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None,
                        python: str = sys.executable) -> list[Job]:
    """The chained jobs of ``plan``: per augmentation, backbone, dataset and seed a pre-training, then the
    evaluations of the backbone, the fine-tuned backbone and the IAC policy (each running the stages it needs).

    Args:
        plan: the protocol plan.
        results: the results folder.
        datasets: restrict to these datasets of the plan (None: all of the plan's).
        data_dirs: dataset -> data root in its official layout (default: the phantoms, written once by the
            first run's first pre-training and read by every other run).
        overrides: config field -> value of every run (after the plan's ``scale``).
        python: interpreter of the commands.

    Returns:
        The jobs, every pre-training after the one that writes the phantom data.
    """
    results = Path(results).resolve()
    chosen = [d for d in plan.datasets if datasets is None or d in datasets]
    jobs: list[Job] = []
    writers: dict[str, str] = {}  # dataset -> id of the pre-training that writes its phantom data
    first_root = protocol_root(results, plan.augmentations[0])
    for augmentation in plan.augmentations:
        for backbone in plan.backbones:
            for dataset in chosen:
                given = (data_dirs or {}).get(dataset)
                phantoms = None if given or dataset not in writers else str(first_root / "phantoms" / dataset)
                run = build_jobs([dataset], plan.seeds, [plan.policy], profile=plan.profile,
                                 results=protocol_root(results, augmentation), backbone=backbone,
                                 overrides={**plan.scale, **(overrides or {}), "augmentation": augmentation},
                                 data_dirs={dataset: given or phantoms} if (given or phantoms) else {},
                                 chained=True, baselines=True, id_prefix=f"protocol-{augmentation}-", python=python)
                if phantoms:  # wait for the phantom data
                    run = pretrainings_after(run, writers[dataset])
                elif not given:
                    writers[dataset] = next(j.id for j in run if j.kind == "pretrain")
                jobs += run
    return jobs


def run_protocol(plan: ProtocolPlan, *, results: str | Path, scheduler: str | None = None,
                 workers: int | None = None, progress: bool = True, log: Callable[[str], None] | None = None,
                 **job_options: Any) -> list[JobResult]:
    """Run (what is missing of) ``plan`` on Dask.

    Args:
        plan: the protocol plan.
        results: the results folder.
        scheduler: an existing Dask scheduler address (None: a local cluster).
        workers: local workers (None: the matrix default).
        progress: a progress bar and a line per finished job (stderr).
        log: instead of the bar, give each progress line to this callback.
        **job_options: ``datasets``, ``data_dirs``, ``overrides`` of :func:`build_protocol_jobs`.

    Returns:
        The results of every job.
    """
    from shapnas.experiments.dask_runner import open_client, run_jobs

    jobs = build_protocol_jobs(plan, results=results, **job_options)
    if all(job.done() for job in jobs):
        return [JobResult(j.id, "done", None, str(j.log), "output exists") for j in jobs]
    with open_client(scheduler, workers) as (client, placement):
        return run_jobs(jobs, client, placement=placement, progress=progress, log=log)


def protocol_records(results: str | Path, plan: ProtocolPlan) -> list[dict[str, Any]]:
    """Pooled records (:func:`~shapnas.experiments.summary.pooled_summary`) of every augmentation folder, each with
    its ``augmentation``; only the plan's profile is read.

    Args:
        results: the results folder.
        plan: the plan whose folders and profile are read.

    Returns:
        Pooled records with ``augmentation`` added, and for augmentations after the first, ``augmentation_effect``:
        :func:`augmentation_effects` against the first augmentation's same arm.
    """
    per_augmentation = {}
    for augmentation in plan.augmentations:
        root = protocol_root(results, augmentation)
        per_augmentation[augmentation] = collect_summary(root, profile=plan.profile) if root.exists() else []
    reference = plan.augmentations[0]
    pooled = []
    for augmentation, records in per_augmentation.items():
        effects = augmentation_effects(records, per_augmentation[reference]) if augmentation != reference else {}
        for row in pooled_summary(records):
            key = (row["dataset"], row["backbone"], row["method"])
            pooled.append({**row, "augmentation": augmentation, "augmentation_effect": effects.get(key)})
    return pooled


def augmentation_effects(records: Sequence[Mapping[str, Any]],
                         reference: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Each arm's Dice with one augmentation minus with another, paired by seed and patient.

    Args:
        records: :func:`~shapnas.experiments.summary.collect_summary` records of one augmentation folder.
        reference: those of the reference augmentation (``none``).

    Returns:
        (dataset, backbone, method) -> :func:`~shapnas.experiments.summary.two_level_bootstrap` of the per-seed
        paired differences (arms without a common seed are left out).
    """
    by_key = {(r["dataset"], r["backbone"], r["method"], r["seed"]): r for r in reference}
    differences: dict[tuple[str, str, str], dict[int, dict[str, float]]] = {}
    for record in records:
        twin = by_key.get((record["dataset"], record["backbone"], record["method"], record["seed"]))
        if twin is not None:
            key = (record["dataset"], record["backbone"], record["method"])
            differences.setdefault(key, {})[record["seed"]] = paired_differences(record["patient_dice"],
                                                                                 twin["patient_dice"])
    return {key: two_level_bootstrap(per_seed) for key, per_seed in differences.items()}


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> list[str]:
    """A Markdown table, or right-aligned text columns."""
    if markdown:
        return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                *("| " + " | ".join(row) + " |" for row in rows)]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    return ["  ".join(f"{c:>{w}}" for c, w in zip(row, widths)) for row in (header, *rows)]


def format_protocol_table(pooled: Sequence[Mapping[str, Any]], markdown: bool = False) -> str:
    """Two tables per dataset: the arms (a row per backbone and augmentation: the backbone's, the fine-tuned
    backbone's and IAC's Dice in points, mean over seeds, and IAC against the backbone and against the fine-tuned
    backbone), then what augmentation changes in each arm (a row per backbone; the arm with minus without), each
    difference with its 95 % two-level interval.

    Args:
        pooled: :func:`protocol_records`.
        markdown: Markdown tables (the book) instead of text columns (the command line).

    Returns:
        The tables, or a line saying there is nothing yet.
    """
    if not pooled:
        return "no finished protocol runs"
    lines: list[str] = []
    for dataset in sorted({r["dataset"] for r in pooled}):
        rows = [r for r in pooled if r["dataset"] == dataset]
        arms = {(r["backbone"], r["augmentation"], r["method"]): r for r in rows}
        pairs = sorted({(r["backbone"], r["augmentation"]) for r in rows})
        seeds = sorted({s for r in rows for s in r["seeds"]})
        arm_rows = [(backbone, augmentation,
                     *(dice_points(arms[(backbone, augmentation, m)]["dice_patient_mean"])
                       if (backbone, augmentation, m) in arms else "–" for m in PROTOCOL_METHODS),
                     interval_bracket(arms.get((backbone, augmentation, "iac-shapley"), {}).get("dice_vs_backbone")),
                     interval_bracket(arms.get((backbone, augmentation, "iac-shapley"), {}).get("dice_vs_finetune")))
                    for backbone, augmentation in pairs]
        effect_rows = [(backbone, augmentation, *(interval_bracket(arms.get((backbone, augmentation, m), {}).get(
                        "augmentation_effect")) for m in PROTOCOL_METHODS))
                       for backbone, augmentation in pairs
                       if any(arms.get((backbone, augmentation, m), {}).get("augmentation_effect") for m in
                              PROTOCOL_METHODS)]
        title = f"{dataset_label(dataset)} (seeds {', '.join(map(str, seeds))})"
        lines += [f"### {title}" if markdown else title, ""]
        lines += _table(("backbone", "augmentation", "backbone Dice", "fine-tuned", "IAC", "IAC vs backbone",
                         "IAC vs fine-tuned"), arm_rows, markdown)
        if effect_rows:
            lines += ["", "What augmentation changes (the arm with it minus without):" if not markdown else
                      "*What augmentation changes*, the arm with it minus without:", ""]
            lines += _table(("backbone", "augmentation", "in the backbone", "in the fine-tuned", "in IAC"),
                            effect_rows, markdown)
        lines.append("")
    lines.append("Dice: mean patient-level Dice (points) over seeds; IAC: the Shapley-pruned cells. "
                 "Differences: mean [95 % two-level bootstrap interval: seeds, then patients within a seed, paired by "
                 "patient]; a difference counts only where its interval excludes 0.")
    return "\n".join(lines)


_VERDICT_WORDS = {"improves": "higher", "worse": "lower", "matches": "cannot tell"}


def _tally(intervals: Sequence[Mapping[str, Any] | None]) -> str:
    """``"higher in 1, lower in 0, cannot tell in 5 of 6"``: the verdicts of the intervals that exist."""
    verdicts = [v for v in map(interval_verdict, intervals) if v is not None]
    counts = ", ".join(f"{word} in {verdicts.count(v)}" for v, word in _VERDICT_WORDS.items())
    return f"{counts} of {len(verdicts)}"


def protocol_findings(pooled: Sequence[Mapping[str, Any]]) -> list[str]:
    """One sentence per dataset: how many of its comparisons each verdict takes.

    Counts the verdicts (:func:`~shapnas.experiments.intervals.interval_verdict`: a difference counts only where
    its 95 % two-level interval excludes 0) of IAC against its backbone and against the fine-tuned backbone, over
    every (backbone, augmentation) pair, and of what augmentation changes in each arm, over the backbones.

    Args:
        pooled: :func:`protocol_records`.

    Returns:
        The sentences (empty without records).
    """
    sentences = []
    for dataset in sorted({r["dataset"] for r in pooled}):
        rows = [r for r in pooled if r["dataset"] == dataset]
        iac = [r for r in rows if r["method"] == "iac-shapley"]
        compared = [r.get(key) for r in iac for key in ("dice_vs_backbone", "dice_vs_finetune")
                    if interval_verdict(r.get(key)) is not None]
        sentence = (f"{dataset_label(dataset)}: IAC against its own backbone "
                    f"{_tally([r.get('dice_vs_backbone') for r in iac])} (backbone, augmentation) pairs; against the "
                    f"fine-tuned backbone {_tally([r.get('dice_vs_finetune') for r in iac])} (with no effect at all, "
                    f"about {0.05 * len(compared):.1f} of these {len(compared)} intervals would exclude 0 by chance).")
        effects = {m: [r["augmentation_effect"] for r in rows if r["method"] == m and r.get("augmentation_effect")]
                   for m in PROTOCOL_METHODS}
        if any(effects.values()):
            sentence += (f" With augmentation the backbone scores {_tally(effects['backbone'])} families, the "
                         f"fine-tuned backbone {_tally(effects['finetune'])}, IAC {_tally(effects['iac-shapley'])}.")
        sentences.append(sentence)
    return sentences
