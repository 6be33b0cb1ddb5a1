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

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shapnas.config.names import TRANSFER_ARMS, method_label
from shapnas.config.stage_configs import RetrainConfig
from shapnas.experiments.intervals import dice_points, interval_bracket
from shapnas.experiments.matrix import Job, build_jobs, stage_job
from shapnas.experiments.summary import PooledGroup, collect_summary, pooled_groups, pooled_summary
from shapnas.runs.identity import method_of_target, setting_folder, stage_key

__all__ = ["TRANSFER_ARMS", "ARMS_JOB", "TransferPlan", "transfer_plan", "transfer_plan_root", "build_transfer_jobs",
           "run_arms",
           "PooledGroup", "run_transfer", "transfer_records", "pooled_groups",  # the last from experiments.summary
           "format_transfer_table"]


TRANSFER_PLAN_FOLDER = "transfer"
ARMS_JOB = "arms"  # the job kind that runs every arm of one (dataset, seed, N): python -m shapnas.experiments.job_entry


@dataclass(frozen=True)
class TransferPlan:
    """What the transfer setting's seed plan of a profile runs (on Dask, beside the ablation plan in ``make book``).

    Args:
        profile: the parameter profile of every run.
        datasets: datasets of the plan (phantom data: their second acquisition site is the target site).
        seeds: training seeds of every arm (at least 3 for intervals that carry the seed variance).
        ns: numbers of labelled target-site training patients (``target_train_patients``); every (dataset, seed,
            N) runs every arm of :data:`TRANSFER_ARMS`.
        scale: config overrides of every run (its size, when smaller than the profile's).
        extra_ns: dataset -> more N for that dataset only (a Dice-against-N curve where the budget allows one).
    """

    profile: str
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    ns: tuple[int, ...]
    scale: dict[str, Any] = field(default_factory=dict)
    extra_ns: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def ns_for(self, dataset: str) -> tuple[int, ...]:
        """The N of ``dataset``: :attr:`ns` and its :attr:`extra_ns`, ascending."""
        return tuple(sorted({*self.ns, *self.extra_ns.get(dataset, ())}))


def transfer_plan(profile: str) -> TransferPlan:
    """The transfer plan of a profile.

    ``smoke`` (tests): ACDC, seed 0, N = 4. ``workshop`` (``make book`` on a 2-core CPU): ACDC and KiTS,
    seeds 0, 1, 2, N = 8, and ACDC also N = 4 (the book's Dice-against-N figure), every run at the ablation plan's
    32-px scale (one seed's seven arms of one dataset took 3 min with one thread: ``python -m shapnas transfer
    --dataset acdc --profile workshop --seeds 0`` with that scale's ``--set`` values; in ``make book`` at b83129a
    on a 2-core CPU an arms job took 192–214 s, so a second N for KiTS too, three more of them on two workers,
    would take it from 43 to about 48 minutes, past its 45-minute target). ``paper``: the four datasets, five
    seeds, N = 4, 8 and 16 from one target cohort of 48 patients.

    Args:
        profile: ``smoke``, ``workshop`` or ``paper``.

    Returns:
        The plan.
    """
    from shapnas.experiments.ablations import WORKSHOP_SCALE

    if profile == "smoke":
        return TransferPlan(profile, ("acdc",), (0,), (4,), scale={"target_patients": 34, "target_train_patients": 4})
    if profile == "workshop":
        return TransferPlan(profile, ("acdc", "kits"), (0, 1, 2), (8,), scale=dict(WORKSHOP_SCALE),
                            extra_ns={"acdc": (4,)})
    if profile == "paper":
        return TransferPlan(profile, ("acdc", "brats", "kits", "amos"), (0, 1, 2, 3, 4), (4, 8, 16),
                            scale={"target_patients": 48})
    raise ValueError(f"profile={profile!r}; expected smoke, workshop or paper")


def transfer_plan_root(results: str | Path) -> Path:
    """``<results>/ablations/transfer``: the transfer plan's results folder."""
    return Path(results) / "ablations" / TRANSFER_PLAN_FOLDER


def build_transfer_jobs(plan: TransferPlan, *, results: str | Path, datasets: Sequence[str] | None = None,
                        overrides: Mapping[str, Any] | None = None, python: str = sys.executable) -> list[Job]:
    """The jobs of ``plan`` under :func:`transfer_plan_root`: per dataset and seed the source backbone's pre-training,
    then per N one job that runs every arm in one process (:func:`run_arms`: the source backbone on the source site,
    then each arm; an interpreter start and a data load per arm cost a fifth of an arm's time at this size).

    Args:
        plan: the transfer plan.
        results: the book's results folder.
        datasets: restrict to these datasets of the plan (None: all of the plan's).
        overrides: config field -> value of every run (after the plan's ``scale``).
        python: interpreter of the commands.

    Returns:
        The jobs (ids ``transfer-…-pretrain`` and ``transfer-n<N>-…-arms``), every arms job after its seed's
        pre-training (the source backbone is shared by every N) and after its seed's first N (which evaluates the
        source backbone on its own site), every pre-training after the one that writes the phantom data.
    """
    root = transfer_plan_root(Path(results).resolve())
    chosen = [d for d in plan.datasets if datasets is None or d in datasets]
    base = {**plan.scale, **(overrides or {})}
    jobs = build_jobs(chosen, plan.seeds, [], profile=plan.profile, results=root, overrides=base, chained=True,
                      targets=(), id_prefix="transfer-", python=python)
    first_arms: dict[str, str] = {}  # pre-training id -> its first N's arms job (which evaluates the source site)
    for n in sorted({n for dataset in chosen for n in plan.ns_for(dataset)}):
        for pretrain in [job for job in jobs if job.kind == "pretrain" and n in plan.ns_for(job.config["dataset"])]:
            cfg = RetrainConfig.from_dict({**pretrain.config, "setting": "transfer", "target_train_patients": n})
            job_id = pretrain.id.replace("transfer-", f"transfer-n{n}-", 1).removesuffix("-pretrain") + "-arms"
            deps = (pretrain.id, *([first_arms[pretrain.id]] if pretrain.id in first_arms else []))
            first_arms.setdefault(pretrain.id, job_id)
            jobs.append(stage_job(job_id, ARMS_JOB, cfg, stage_key(cfg, "eval", TRANSFER_ARMS[-1]), root, deps=deps,
                                  python=python))
    return jobs


def run_arms(cfg: RetrainConfig, arms: Sequence[str] = TRANSFER_ARMS, *,
             report: Callable[[str], None] = print) -> Path:
    """Run (or reuse) the source backbone's evaluation on its own site, then every arm of ``cfg``'s seed and N.

    Args:
        cfg: a transfer-setting config (its ``seed`` and ``target_train_patients``).
        arms: eval targets, in order.
        report: called with one line as each stage finishes.

    Returns:
        The last arm's evaluation folder.

    Raises:
        ValueError: no arm.
    """
    from shapnas.pipeline import run_evaluate

    if not arms:
        raise ValueError("run_arms: no arm given; expected some of " + ", ".join(TRANSFER_ARMS))
    run_evaluate(cfg.source_site(), "backbone")
    report(f"seed {cfg.seed}: source backbone on the source site done")
    stages = []
    for arm in arms:
        stages.append(run_evaluate(cfg, arm))
        report(f"seed {cfg.seed}: {method_label(method_of_target(arm))} done")
    return stages[-1]


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
    cfg = cfg.replace(setting="transfer")
    for seed in seeds:
        run_arms(cfg.replace(seed=seed), arms, report=report)
    return transfer_records(cfg)


def transfer_records(cfg: RetrainConfig) -> list[dict[str, Any]]:
    """The pooled records (:func:`shapnas.experiments.summary.pooled_summary`) of ``cfg``'s transfer folder."""
    records = collect_summary(cfg.results_root, profile=cfg.profile, setting=setting_folder(
        cfg.replace(setting="transfer")))
    return pooled_summary([r for r in records if r["dataset"] == cfg.dataset and r["backbone"] == cfg.backbone])


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
