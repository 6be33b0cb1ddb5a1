"""Ablations and seeds of the Shapley-guided search as jobs of the run matrix (Dask distributed).

Benedykciuk et al. (Sci. Rep. 2026) compare Shapley-guided pruning with the full search and with other
pruning rules, over seeds; the settings of the estimator and of the schedule are ours to vary (method.md
lists which are reconstructed). A plan per profile says which datasets and seeds, which policies are
compared on the *main* runs (same schedule, default settings), and which *variants* change one setting of
the ``shapley`` search::

    <results>/ablations/main/<dataset>/<backbone>/seed-<k>/...   main runs: every policy, plan.seeds
    <results>/ablations/<variant>/<dataset>/<backbone>/...       one setting changed (M, T/r, value, τ, α, K)
    <results>/ablations/plan.json                                the plan that was run (read by the notebooks)

A plan may shrink every run (``scale``: e.g. smaller slices and fewer epochs on the workshop's CPU), so
its runs live apart from the book's main runs under ``<results>/<dataset>/``.

One backbone per dataset: the first seed's pre-training is every other seed's ``backbone_checkpoint``, so
the seeds of a policy differ only in the search (stability is a study of the search, not of the
backbone). A variant re-uses that backbone and data too, so it differs from the main ``shapley`` run only
in its setting. Every evaluation is one chained job (search, re-train and
test in one process, :func:`shapnas.experiments.matrix.build_jobs` with ``chained=True``); the plan's runs skip the
backbone baselines (chapters 2 and 4 have them). Jobs carry their config as data (``Job.config``): a
variant is the plan's overrides plus its own. Finished jobs are skipped, so running it again completes
only what is missing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shapnas.config.names import POLICY_NAMES
from shapnas.experiments.dask_runner import open_client, run_jobs
from shapnas.experiments.matrix import Job, JobResult, build_jobs, jobs_after, pretrainings_after
from shapnas.experiments.summary import collect_summary, pooled_groups, pooled_summary
from shapnas.runs.files import load_json, save_json

__all__ = ["Variant", "AblationPlan", "ablation_plan", "ablation_root", "build_ablation_jobs", "run_ablations",
           "load_plan", "ablation_records", "seed_plan_pooled", "stability_records", "PLAN_FILE"]

PLAN_FILE = "plan.json"
ALL_POLICIES = POLICY_NAMES  # every policy of the registry (shapnas.config.names)


@dataclass(frozen=True)
class Variant:
    """One changed setting of the ``shapley`` search.

    Args:
        name: folder name under ``<results>/ablations/`` (e.g. ``M-1``).
        axis: what is ablated (e.g. ``permutations M``); variants of one axis are compared with the default.
        setting: the value in words (e.g. ``M = 1``).
        overrides: config fields and values of this variant.
    """

    name: str
    axis: str
    setting: str
    overrides: dict[str, Any] = field(default_factory=dict)


# One alternative per axis (the smoke plan takes the first); the paper plan adds the other side of each axis.
# M and τ are Monte-Carlo settings: their variants run the mc estimator (the default is ig).
BASE_VARIANTS = (
    Variant("M-1", "permutations M", "M = 1", {"shapley_permutations": 1, "shapley_estimator": "mc"}),
    Variant("T2", "schedule T/r", "T = 2, r = 2", {"prune_interval": 2}),
    Variant("value-dicece", "value function", "−DiceCE", {"shapley_value": "dicece"}),
    Variant("tau-0", "truncation τ", "τ = 0", {"shapley_truncation": 0.0, "shapley_estimator": "mc"}),
    Variant("per-level-alpha", "α sharing", "per level", {"per_level_alpha": True}),
    Variant("K-8", "partial channels K", "K = 8", {"partial_channels": 8}),
)
PAPER_VARIANTS = BASE_VARIANTS + (
    Variant("M-8", "permutations M", "M = 8", {"shapley_permutations": 8, "shapley_estimator": "mc"}),
    Variant("r1", "schedule T/r", "T = 1, r = 1", {"prune_per_round": 1}),
    Variant("tau-0.1", "truncation τ", "τ = 0.1", {"shapley_truncation": 0.1, "shapley_estimator": "mc"}),
    Variant("K-2", "partial channels K", "K = 2", {"partial_channels": 2}),
    # the cell's second input (s1) is the decoder feature at the skip's level instead of the skip
    Variant("decoder-input", "cell inputs", "s1 = decoder feature", {"decoder_input": True}),
)


# The workshop plan's runs: 4× fewer pixels, shorter training and one antithetic permutation pair per
# Shapley round (a round costs ~4× less), so that its 30 jobs (per dataset and seed a pre-training and the
# evaluations of the backbone, the fine-tuned backbone and both searches' cells) fit make book's time target on a
# 2-core laptop beside the transfer plan (shapnas.experiments.transfer.transfer_plan, the same scale).
WORKSHOP_SCALE = {"slice_size": 32, "pretrain_epochs": 12, "search_epochs": 6, "warmup_epochs": 2,
                  "finetune_epochs": 3, "retrain_epochs": 3, "shapley_permutations": 1,
                  # step budgets (the profile's are sized for 64 px): backbone until V plateaus, capped
                  "pretrain_steps": 600, "patience_steps": 150, "finetune_steps": 150, "retrain_steps": 150}
# The workshop plan compares the full search with the Shapley-pruned one over three seeds (the seed spread of the
# same-site comparison and the stability of both searches). The other pruning rules (alpha, random, js) and the
# one-setting variants are the paper plan's: on the same-site phantoms they measured nothing (make book at
# 1a37c4f: the four policies' mean test Dice within 0.1 points of each other on ACDC and 0.2 on KiTS, seed std
# 0.1-0.3; every variant within 0.3 of the default on ACDC's one seed; the searches' genotypes at chance), and
# their 18 jobs (about 10 minutes on two workers) are now the transfer plan's budget.
WORKSHOP_PLAN_POLICIES = ("none", "shapley")


@dataclass(frozen=True)
class AblationPlan:
    """What the ablations of a profile run.

    Args:
        profile: the parameter profile of every run.
        datasets: datasets with ablations (the others get the main runs only).
        seeds: seeds of every compared run (stability needs at least 3).
        policies: pruning policies compared on the main runs.
        variant_seeds: seeds of the variants.
        variants: the changed settings of the ``shapley`` search.
        scale: config overrides of every run of the plan (its size, when smaller than the profile's).
        variant_datasets: datasets of the variants (empty: all of ``datasets``).
    """

    profile: str
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    policies: tuple[str, ...] = ALL_POLICIES
    variant_seeds: tuple[int, ...] = ()
    variants: tuple[Variant, ...] = ()
    scale: dict[str, Any] = field(default_factory=dict)
    variant_datasets: tuple[str, ...] = ()

    def covers_variants(self, dataset: str) -> bool:
        """Whether the variants run for ``dataset``."""
        return dataset in (self.variant_datasets or self.datasets)

    def to_dict(self) -> dict[str, Any]:
        """Plain types (for ``plan.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AblationPlan:
        """Inverse of :meth:`to_dict`."""
        return cls(profile=data["profile"], scale=dict(data.get("scale", {})), datasets=tuple(data["datasets"]), seeds=tuple(data["seeds"]), policies=tuple(data["policies"]),
                   variant_seeds=tuple(data["variant_seeds"]), variant_datasets=tuple(data.get("variant_datasets", ())),
                   variants=tuple(Variant(**v) for v in data["variants"]))


def ablation_plan(profile: str) -> AblationPlan:
    """The plan of a profile.

    ``smoke`` (tests): one dataset, two seeds, two policies and one variant. ``workshop`` (a 2-core CPU within
    ``make book``'s time target, beside the transfer plan): the full and the Shapley-pruned search on two datasets
    (ACDC, KiTS) with three seeds, every run at 32×32 slices with a 12-epoch pre-training, a 6-epoch search and
    M = 1 (the workshop profile itself uses 64×64, 24, 12 and M = 4). ``paper``: all four datasets, five seeds,
    every policy, both sides of every axis, the profile's own size.

    Args:
        profile: ``smoke``, ``workshop`` or ``paper``.

    Returns:
        The plan.
    """
    if profile == "smoke":
        return AblationPlan(profile=profile, datasets=("acdc",), seeds=(0, 1), policies=("none", "shapley"), variant_seeds=(0,),
                            variants=(BASE_VARIANTS[0],))
    if profile == "workshop":
        return AblationPlan(profile=profile, datasets=("acdc", "kits"), seeds=(0, 1, 2),
                            policies=WORKSHOP_PLAN_POLICIES, scale=WORKSHOP_SCALE)
    if profile == "paper":
        return AblationPlan(profile=profile, datasets=("acdc", "brats", "kits", "amos"), seeds=(0, 1, 2, 3, 4),
                            variant_seeds=(0, 1, 2), variants=PAPER_VARIANTS)
    raise ValueError(f"profile={profile!r}; expected smoke, workshop or paper")


def ablation_root(results: str | Path, variant: str = "main") -> Path:
    """``<results>/ablations/<variant>`` (``main``: the plan's runs of every policy)."""
    return Path(results) / "ablations" / variant


def _pretrain_job(jobs: Sequence[Job], dataset: str, seed: int) -> Job:
    """The pre-training job of (dataset, seed) among ``jobs``, found by its kind and config."""
    (job,) = [j for j in jobs if j.kind == "pretrain" and (j.config["dataset"], j.config["seed"]) == (dataset, seed)]
    return job


def _main_jobs(plan: AblationPlan, chosen: Sequence[str], main_root: Path, backbone: str | None,
               data_dirs: dict[str, str], overrides: dict[str, Any], python: str) -> list[Job]:
    """The main runs: the first seed pre-trains the dataset's backbone, every other seed takes it as its
    ``backbone_checkpoint``, so across seeds only the adaptation varies (a study of the search). Every seed also
    evaluates the backbone and fine-tunes it with its own seed, so that the cells are compared with both over the
    seeds (:func:`seed_plan_pooled`)."""
    first, *others = plan.seeds
    main = build_jobs(chosen, [first], plan.policies, profile=plan.profile, results=main_root, backbone=backbone,
                      overrides=overrides, data_dirs=data_dirs, chained=True, python=python)
    for dataset in chosen:
        pretrain = _pretrain_job(main, dataset, first)
        data_dir = data_dirs.get(dataset) or str(main_root / "phantoms" / dataset)
        for seed in others:
            jobs = build_jobs([dataset], [seed], plan.policies, profile=plan.profile, results=main_root,
                              backbone=backbone,
                              overrides={**overrides, "backbone_checkpoint": str(pretrain.output.parent / "model.pt")},
                              data_dirs={dataset: data_dir}, chained=True, python=python)
            main += pretrainings_after(jobs, pretrain.id)
    return main


def variant_applies(profile: str, variant: Variant, overrides: Mapping[str, Any]) -> bool:
    """Whether a variant's setting is valid for the plan's runs (e.g. ``decoder_input`` has no meaning on the
    dense-skip ``basic_unet_plus_plus``): the search config's own checks decide, so that one place owns each rule.

    Args:
        profile: the plan's profile.
        variant: the variant.
        overrides: the plan's overrides of every run (``backbone`` among them when chosen).

    Returns:
        False when the config refuses the variant's values.
    """
    from shapnas.config.stage_configs import RetrainConfig, resolve_config

    try:
        resolve_config(RetrainConfig, profile, {**overrides, **variant.overrides})
    except ValueError:
        return False
    return True


def build_ablation_jobs(plan: AblationPlan, *, results: str | Path, datasets: Sequence[str] | None = None,
                        backbone: str | None = None, data_dirs: Mapping[str, str] | None = None,
                        overrides: Mapping[str, Any] | None = None,
                        python: str = sys.executable) -> tuple[list[Job], list[Job]]:
    """The jobs of ``plan``: the main runs first, then the variants (which need the main pre-training).

    Args:
        plan: the ablation plan.
        results: the results folder.
        datasets: restrict to these datasets of the plan (None: all of the plan's).
        backbone: backbone name (None: the profile's).
        data_dirs: dataset -> data root in its official layout (default: the phantom data).
        overrides: config field -> value of every run (after the plan's ``scale``).
        python: interpreter of the commands.

    Returns:
        (main jobs, variant jobs); variants the runs' config refuses (:func:`variant_applies`) are left out.
    """
    results = Path(results).resolve()
    chosen = [d for d in plan.datasets if datasets is None or d in datasets]
    data_dirs = dict(data_dirs or {})
    overrides = {**plan.scale, **(overrides or {})}
    main_root = ablation_root(results)
    main = _main_jobs(plan, chosen, main_root, backbone, data_dirs, overrides, python)
    variants: list[Job] = []
    applicable = [v for v in plan.variants if variant_applies(plan.profile, v, {**overrides, **(
        {"backbone": backbone} if backbone else {})})]
    for dataset in (d for d in chosen if plan.covers_variants(d)):
        data_dir = data_dirs.get(dataset) or str(main_root / "phantoms" / dataset)
        for seed in plan.variant_seeds:
            pretrain = _pretrain_job(main, dataset, seed)
            checkpoint = pretrain.output.parent / "model.pt"
            for variant in applicable:
                variants += jobs_after(build_jobs([dataset], [seed], ["shapley"], profile=plan.profile,
                                       results=ablation_root(results, variant.name), backbone=backbone,
                                       overrides={**overrides, **variant.overrides,
                                                  "backbone_checkpoint": str(checkpoint)},
                                       data_dirs={dataset: data_dir}, chained=True, baselines=False,
                                       pretrain_jobs=False, id_prefix=f"{variant.name}-", python=python),
                                       pretrain.id)  # a variant reads the main run's backbone
    return main, variants


def run_ablations(plan: AblationPlan, *, results: str | Path, datasets: Sequence[str] | None = None,
                  scheduler: str | None = None, workers: int | None = None, progress: bool = True,
                  log: Callable[[str], None] | None = None, also: Sequence[Job] = (),
                  **job_options: Any) -> list[JobResult]:
    """Run (what is missing of) ``plan`` on Dask and write ``<results>/ablations/plan.json``.

    Args:
        plan: the ablation plan.
        results: the results folder.
        datasets: restrict to these datasets of the plan.
        scheduler: an existing Dask scheduler address (None: a local cluster).
        workers: local workers (None: the matrix default).
        progress: a progress bar and a line per finished job, with counts and the time left (stderr).
        log: instead of the bar, give each progress line to this callback.
        also: further jobs run on the same cluster in the same queue (e.g. the transfer plan's,
            :func:`shapnas.experiments.transfer.build_transfer_jobs`), so that no worker waits between plans; they
            are queued first (a worker takes the earliest ready job: long jobs first leave no long job for the end).
        **job_options: ``backbone``, ``data_dirs``, ``overrides`` of :func:`build_ablation_jobs`.

    Returns:
        The results of every job (``also``, then the main runs, then the variants).
    """
    main, variants = build_ablation_jobs(plan, results=results, datasets=datasets, **job_options)
    jobs = [*also, *main, *variants]
    save_json(Path(results) / "ablations" / PLAN_FILE, plan.to_dict())
    if all(job.done() for job in jobs):
        return [JobResult(j.id, "done", None, str(j.log), "output exists") for j in jobs]
    with open_client(scheduler, workers) as (client, placement):
        return run_jobs(jobs, client, placement=placement, progress=progress, log=log)


def load_plan(results: str | Path) -> AblationPlan | None:
    """The plan written by :func:`run_ablations`, or None when the ablations have not been run."""
    path = Path(results) / "ablations" / PLAN_FILE
    return AblationPlan.from_dict(load_json(path)) if path.exists() else None


def ablation_records(results: str | Path, dataset: str, profile: str | None = None) -> list[dict[str, Any]]:
    """Every finished evaluation of the ablations of ``dataset``, one record per (axis, setting, seed).

    The main runs give the policy axis (``axis='policy'``) and the default side of every variant axis
    (``setting='default'``, the ``shapley`` runs of the variant seeds).

    Args:
        results: the results folder.
        dataset: the dataset.
        profile: keep only runs of this profile (None: all, which must share one profile).

    Returns:
        :func:`shapnas.experiments.summary.collect_summary` records (only ``iac-*`` methods) with ``axis``, ``setting``
        and ``variant`` added; empty when the plan has not been run.
    """
    plan = load_plan(results)
    if plan is None:
        return []
    main = [r for r in collect_summary(ablation_root(results), profile) if r["dataset"] == dataset and r["method"].startswith("iac-")
            and r["seed"] in plan.seeds]
    records = [{**r, "axis": "policy", "setting": r["method"].removeprefix("iac-"), "variant": "main"} for r in main]
    if not plan.covers_variants(dataset):
        return records
    for axis in dict.fromkeys(v.axis for v in plan.variants):
        records += [{**r, "axis": axis, "setting": "default", "variant": "main"} for r in main
                    if r["method"] == "iac-shapley" and r["seed"] in plan.variant_seeds]
        for variant in (v for v in plan.variants if v.axis == axis):
            records += [{**r, "axis": axis, "setting": variant.setting, "variant": variant.name}
                        for r in collect_summary(ablation_root(results, variant.name), profile)
                        if r["dataset"] == dataset and r["method"] == "iac-shapley"]
    return records


def seed_plan_pooled(results: str | Path, dataset: str, profile: str | None = None) -> list[dict[str, Any]]:
    """The plan's main runs of ``dataset`` pooled over its seeds: the backbone, the fine-tuned backbone and every
    policy's cell, each IAC and fine-tuned record with its paired differences from the backbone and the fine-tuned
    backbone and their two-level bootstrap intervals (seeds, then patients;
    :func:`shapnas.experiments.summary.pooled_summary`).

    Args:
        results: the results folder.
        dataset: the dataset.
        profile: keep only runs of this profile (None: all).

    Returns:
        Pooled records per backbone family, in the arms' order (:func:`shapnas.experiments.summary.pooled_groups`:
        the baselines first); empty when the plan has not run for ``dataset``.
    """
    plan = load_plan(results)
    if plan is None or dataset not in plan.datasets:
        return []
    runs = [r for r in collect_summary(ablation_root(results), profile)
            if r["dataset"] == dataset and r["seed"] in plan.seeds and r.get("patient_dice")]
    return [r for _, group in pooled_groups(pooled_summary(runs)) for r in group]


def stability_records(results: str | Path, dataset: str, backbone: str,
                      profile: str | None = None) -> list[dict[str, Any]]:
    """The plan's searches of ``dataset`` (every policy, the plan's seeds), as the stability report reads them.

    Args:
        results: the results folder.
        dataset: the dataset.
        backbone: the backbone.
        profile: keep only searches of this profile (None: all, which must share one profile).

    Returns:
        :func:`shapnas.runs.records.collect_stability_records` records of ``<results>/ablations/main``;
        empty when the plan has not been run for ``dataset``.
    """
    from shapnas.runs.records import collect_stability_records

    plan = load_plan(results)
    if plan is None or dataset not in plan.datasets:
        return []
    return [r for r in collect_stability_records(ablation_root(results), profile)
            if (r["dataset"], r["backbone"]) == (dataset, backbone) and r["seed"] in plan.seeds
            and r["policy"] in plan.policies]
