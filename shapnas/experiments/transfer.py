"""The transfer setting's arms: a source-site backbone adapted to a target site with few labelled patients.

Every arm of one N (``target_train_patients``) and seed runs through the pipeline's stages (each reused when it
finished with the same config), then the arms are pooled over the seeds with two-level bootstrap intervals
against the source backbone and the fine-tuned one (:func:`shapnas.experiments.summary.pooled_summary`). The
arms (Benedykciuk et al., Sci. Rep. 2026 retrofit pre-trained U-Nets under limited data; the controls are the
usual ones of transfer learning):

- ``backbone``: the source backbone as is, on the target site's test patients;
- ``finetune``: every weight fine-tuned on the target patients (learning rate tuned on V);
- ``normtune``: the parameter-efficient control, norms and biases only (learning rate tuned on V);
- ``scratch``: a backbone trained on the target patients alone;
- ``none`` and ``shapley``: IAC cells searched (full search, Shapley-pruned) and re-trained on the frozen
  source backbone;
- ``shapley-joint``: the Shapley-pruned cell re-trained together with the backbone.

Each seed also evaluates the source backbone on the source site's own test patients, so that every record
carries the site shift it starts from (``source_drop``).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from shapnas.config.names import JOINT_SUFFIX, TRANSFER_ARMS, method_label
from shapnas.config.stage_configs import RetrainConfig
from shapnas.experiments.intervals import dice_points, interval_bracket
from shapnas.experiments.matrix import Job, build_jobs
from shapnas.experiments.summary import collect_summary, pooled_summary
from shapnas.runs.identity import method_of_target, setting_folder

__all__ = ["TRANSFER_ARMS", "TransferPlan", "transfer_plan", "transfer_plan_root", "build_transfer_jobs",
           "PooledGroup", "run_transfer", "transfer_records", "pooled_groups",
           "format_transfer_table"]


TRANSFER_PLAN_FOLDER = "transfer"


@dataclass(frozen=True)
class TransferPlan:
    """What the transfer setting's seed plan of a profile runs (on Dask, beside the ablation plan in ``make book``).

    Args:
        profile: the parameter profile of every run.
        datasets: datasets of the plan (phantom data: their second acquisition site is the target site).
        seeds: training seeds of every arm (at least 3 for intervals that carry the seed variance).
        ns: numbers of labelled target-site training patients (``target_train_patients``).
        arms: the evaluation targets of every (dataset, seed, N) (:data:`TRANSFER_ARMS`).
        scale: config overrides of every run (its size, when smaller than the profile's).
    """

    profile: str
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    ns: tuple[int, ...]
    arms: tuple[str, ...] = TRANSFER_ARMS
    scale: dict[str, Any] = field(default_factory=dict)


def transfer_plan(profile: str) -> TransferPlan:
    """The transfer plan of a profile.

    ``smoke`` (tests): ACDC, seed 0, N = 4. ``workshop`` (``make book`` on a 2-core CPU): ACDC and KiTS,
    seeds 0, 1, 2, N = 8, every run at the ablation plan's 32-px scale (one seed's seven arms of one dataset took
    3 min with one thread: ``python -m shapnas transfer --dataset acdc --profile workshop --seeds 0`` with that
    scale's ``--set`` values; the book's Dice-against-N figure needs the other N from ``python -m shapnas
    transfer``). ``paper``: the four datasets, five seeds, N = 4, 8 and 16 from one target cohort of 48 patients.

    Args:
        profile: ``smoke``, ``workshop`` or ``paper``.

    Returns:
        The plan.
    """
    from shapnas.experiments.ablations import WORKSHOP_SCALE

    if profile == "smoke":
        return TransferPlan(profile, ("acdc",), (0,), (4,), scale={"target_patients": 34, "target_train_patients": 4})
    if profile == "workshop":
        return TransferPlan(profile, ("acdc", "kits"), (0, 1, 2), (8,), scale=dict(WORKSHOP_SCALE))
    if profile == "paper":
        return TransferPlan(profile, ("acdc", "brats", "kits", "amos"), (0, 1, 2, 3, 4), (4, 8, 16),
                            scale={"target_patients": 48})
    raise ValueError(f"profile={profile!r}; expected smoke, workshop or paper")


def transfer_plan_root(results: str | Path) -> Path:
    """``<results>/ablations/transfer``: the transfer plan's results folder."""
    return Path(results) / "ablations" / TRANSFER_PLAN_FOLDER


def build_transfer_jobs(plan: TransferPlan, *, results: str | Path, datasets: Sequence[str] | None = None,
                        overrides: Mapping[str, Any] | None = None, python: str = sys.executable) -> list[Job]:
    """The chained jobs of ``plan`` under :func:`transfer_plan_root`: per dataset and seed the source backbone's
    pre-training and its evaluation on the source site (for ``source_drop``), then per N one job per arm, each
    running the stages it needs after that pre-training (the source backbone is shared by every N).

    Args:
        plan: the transfer plan.
        results: the book's results folder.
        datasets: restrict to these datasets of the plan (None: all of the plan's).
        overrides: config field -> value of every run (after the plan's ``scale``).
        python: interpreter of the commands.

    Returns:
        The jobs (ids ``transfer-source-…`` and ``transfer-n<N>-…``), every arm after its seed's pre-training.
    """
    root = transfer_plan_root(Path(results).resolve())
    chosen = [d for d in plan.datasets if datasets is None or d in datasets]
    base = {**plan.scale, **(overrides or {})}
    common = {"profile": plan.profile, "results": root, "chained": True, "python": python}
    jobs = build_jobs(chosen, plan.seeds, [], overrides=base, targets=("backbone",), id_prefix="transfer-source-",
                      **common)
    pretrain_of = {job.output.parent: job.id for job in jobs if job.kind == "pretrain"}
    for n in plan.ns:
        arms = build_jobs(chosen, plan.seeds, [], overrides={**base, "setting": "transfer", "target_train_patients": n},
                          targets=plan.arms, id_prefix=f"transfer-n{n}-", **common)
        pretrains = {job.id: pretrain_of[job.output.parent] for job in arms if job.kind == "pretrain"}
        jobs += [dataclasses.replace(job, deps=tuple(pretrains.get(dep, dep) for dep in job.deps) + _searched_by(job))
                 for job in arms if job.kind != "pretrain"]
    return jobs


def _searched_by(job: Job) -> tuple[str, ...]:
    """A joint fine-tune arm re-trains the cell its policy's arm searched: it waits for that arm's job, so that two
    workers never run the same search (``()`` for every other arm)."""
    if not job.target.endswith(JOINT_SUFFIX):
        return ()
    return (job.id[: -len(job.target)] + job.target[: -len(JOINT_SUFFIX)],)


class PooledGroup(NamedTuple):
    """The runs pooled together: one dataset, backbone, setting, N (0 for the same site) and profile."""

    dataset: str
    backbone: str
    setting: str
    n: int
    profile: str

def run_transfer(cfg: RetrainConfig, seeds: Sequence[int], arms: Sequence[str] = TRANSFER_ARMS, *,
                 report: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run (or reuse) every arm of the transfer setting of ``cfg`` for each seed; return the pooled records.

    Args:
        cfg: the run's config (its ``setting`` is taken as ``transfer``; ``target_train_patients`` is N).
        seeds: training seeds (at least 3 for an interval that carries the seed variance).
        arms: eval targets to run (:data:`TRANSFER_ARMS` by default).
        report: called with one line as each stage finishes.

    Returns:
        :func:`transfer_records` of ``cfg``'s results folder.
    """
    from shapnas.pipeline import run_evaluate

    cfg = cfg.replace(setting="transfer")
    for seed in seeds:
        run = cfg.replace(seed=seed)
        run_evaluate(run.source_site(), "backbone")
        report(f"seed {seed}: source backbone on the source site done")
        for arm in arms:
            run_evaluate(run, arm)
            report(f"seed {seed}: {method_label(method_of_target(arm))} done")
    return transfer_records(cfg)


def transfer_records(cfg: RetrainConfig) -> list[dict[str, Any]]:
    """The pooled records (:func:`shapnas.experiments.summary.pooled_summary`) of ``cfg``'s transfer folder."""
    records = collect_summary(cfg.results_root, profile=cfg.profile, setting=setting_folder(
        cfg.replace(setting="transfer")))
    return pooled_summary([r for r in records if r["dataset"] == cfg.dataset and r["backbone"] == cfg.backbone])


def pooled_groups(records: Sequence[Mapping[str, Any]]) -> list[tuple[PooledGroup, list[Mapping[str, Any]]]]:
    """Pooled records grouped by (dataset, backbone, setting, N, profile), each group's arms in
    :data:`~shapnas.config.names.TRANSFER_ARMS` order (other methods after them, by name).

    Args:
        records: :func:`~shapnas.experiments.summary.pooled_summary` records.

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


def format_transfer_table(records: list[dict[str, Any]]) -> str:
    """Pooled records as text tables, one per dataset, backbone, setting and N: Dice (points) over seeds and the
    differences with their 95 % intervals.

    Args:
        records: :func:`transfer_records` (or any :func:`~shapnas.experiments.summary.pooled_summary` records).

    Returns:
        Per group a title line, a header and one line per arm; a last line on what the intervals carry.
    """
    if not records:
        return "no finished evaluations"
    lines = []
    for group, rows in pooled_groups(records):
        drop = next((r["source_drop"] for r in rows if r.get("source_drop") is not None), None)
        title = (f"transfer, N = {group.n} labelled target patients; source drop {dice_points(drop, '')} Dice points"
                 if group.setting == "transfer" else "same site")
        lines += [f"{group.dataset} {group.backbone}: {title}",
                  f"{'arm':38} {'seeds':>5} {'n':>3} {'Dice':>6} {'vs source backbone':>22} {'vs fine-tuned':>22}"]
        for r in rows:
            lines.append(f"{method_label(r['method']):38} {len(r['seeds']):>5} {r['test_patients']:>3} "
                         f"{dice_points(r['dice_patient_mean'], ''):>6} "
                         f"{interval_bracket(r.get('dice_vs_backbone'), ''):>22} "
                         f"{interval_bracket(r.get('dice_vs_finetune'), ''):>22}")
        lines.append("")
    lines.append("Dice: mean patient Dice (points) over seeds; differences: mean [95 % two-level bootstrap interval: "
                 "seeds, then patients within a seed, paired by patient]")
    return "\n".join(lines)
