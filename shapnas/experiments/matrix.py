"""The experiment matrix (datasets × seeds × policies) as stage jobs: planning, dependencies, summaries.

Every job carries its stage kind and its full config as data (``Job.config``, a ``RetrainConfig`` dict
resolved by :func:`shapnas.config.stage_configs.resolve_config`). Before it runs, the job is written to
``<results>/jobs/<job-id>.json`` and launched as ``python -m shapnas.experiments.job_entry <that file>``
(:mod:`shapnas.experiments.job_entry`), with a deterministic log (``<results>/logs/<job-id>.log``) and an expected
output (the stage's ``metrics.json``), so the same rows run on a laptop, on a Dask cluster of GPU machines
(:mod:`shapnas.experiments.dask_runner`) or as a SLURM array. Per (dataset, seed)::

    pretrain ─┬─ finetune ── evaluate --target finetune
              ├─ evaluate --target backbone
              └─ search-<policy> ── retrain-<policy> ── evaluate --target <policy>   (per policy)

A job whose output exists is not submitted; a failed job does not stop the others, its dependants are
reported as skipped, and running the matrix again finishes only what is missing.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shapnas.config.stage_configs import RetrainConfig, resolve_config
from shapnas.runs.files import save_json
from shapnas.runs.identity import JOB_KINDS, StageKey, check_reuse, parse_stage_name, stage_key, stage_name

__all__ = ["Job", "JobResult", "JobFailed", "STAGE_KINDS", "RESERVED_OVERRIDES", "build_jobs", "dependency_order",
           "pretrainings_after", "jobs_after", "stage_job", "write_job_spec", "format_rows", "format_summary"]

STAGE_KINDS = JOB_KINDS  # the job kinds of the stage registry (shapnas.runs.identity)
RESERVED_OVERRIDES = ("dataset", "seed", "policy", "results_root", "data_dir")  # set by the matrix itself
STAGE_ENTRY = "shapnas.experiments.job_entry"  # python -m <this> <job.json>


@dataclass(frozen=True)
class Job:
    """One job of the matrix: a stage (kind, config, target) or any command (``argv`` alone).

    Args:
        id: unique, file-name safe id, e.g. ``acdc-basic_unet-seed0-search-shapley``.
        argv: the command (``argv[0]`` is the executable); for a stage job it launches the stage entry point
            on ``spec``.
        log: file that receives the command's stdout and stderr (appended, one header per attempt).
        output: the file the command must write; the job is done when it exists.
        deps: ids of the jobs that must finish first.
        kind: the stage kind (``pretrain``, ..., ``evaluate``), or any label for generic jobs.
        config: the stage's full config as a plain dict (``RetrainConfig.to_dict()``); empty for generic jobs.
        target: the model an ``evaluate`` job scores (``backbone``, ``finetune`` or a policy).
        spec: where the job is written as JSON for the stage entry point (None for generic jobs).
    """

    id: str
    argv: tuple[str, ...]
    log: Path
    output: Path
    deps: tuple[str, ...] = ()
    kind: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    target: str = ""
    spec: Path | None = None

    def done(self) -> bool:
        """True when the expected output exists (a stage's ``metrics.json`` is written last and atomically)."""
        return Path(self.output).exists()

    def command(self) -> str:
        """The command as one shell-quoted line."""
        return shlex.join(self.argv)

    def to_spec(self) -> dict[str, Any]:
        """What the stage entry point reads: id, kind, target and config."""
        return {"id": self.id, "kind": self.kind, "target": self.target, "config": self.config}


@dataclass(frozen=True)
class JobResult:
    """What became of a job: ``ok`` (ran and wrote its output), ``done`` (output found, not run),
    ``failed`` (non-zero exit, missing output or lost worker) or ``skipped`` (a prerequisite failed)."""

    id: str
    status: str
    seconds: float | None = None
    log: str = ""
    detail: str = ""
    worker: str = ""


class JobFailed(RuntimeError):
    """Raised on a worker when a job's command fails; Dask hands it on to the job's dependants."""

    def __init__(self, job_id: str, reason: str, log: str, seconds: float) -> None:
        super().__init__(job_id, reason, log, seconds)
        self.job_id, self.reason, self.log, self.seconds = job_id, reason, log, seconds

    def __str__(self) -> str:
        return f"job {self.job_id} failed: {self.reason} (log: {self.log})"


def write_job_spec(job: Job) -> Path | None:
    """Write a stage job's ``job.json`` (atomically; the same content every time); None for generic jobs."""
    return save_json(job.spec, job.to_spec()) if job.spec is not None else None


def stage_job(job_id: str, kind: str, cfg: RetrainConfig, key: StageKey, results: Path, *, deps: Sequence[str] = (),
              target: str = "", python: str = sys.executable) -> Job:
    """A job that runs the stage entry point on ``cfg``: its ``job.json`` in ``<results>/jobs``, its log in
    ``<results>/logs``, done once the ``metrics.json`` of ``key``'s folder exists.

    Args:
        job_id: the job's id (file-name safe).
        kind: what the entry point runs (a stage kind, ``evaluate``, or ``arms``: every transfer arm of a seed).
        cfg: the run's config.
        key: the stage whose ``metrics.json`` marks the job done.
        results: the results folder (absolute).
        deps: ids of the jobs that must finish first.
        target: for ``evaluate``, the model it scores.
        python: the interpreter of the command.

    Returns:
        The job.
    """
    spec = results / "jobs" / f"{job_id}.json"
    return Job(id=job_id, argv=(python, "-m", STAGE_ENTRY, str(spec)), log=results / "logs" / f"{job_id}.log",
               output=key.path(results) / "metrics.json", deps=tuple(deps), kind=kind, config=cfg.to_dict(),
               target=target, spec=spec)


# ---------------------------------------------------------------------------------------------- the matrix


def run_config(dataset: str, seed: int, profile: str, results: Path, backbone: str | None, data_dir: str,
               overrides: Mapping[str, Any]) -> RetrainConfig:
    """The config of one (dataset, seed) of the matrix, as the stage command line would build it.

    Raises:
        ValueError: an override of a field the matrix sets, an unknown field or a bad value.
    """
    reserved = sorted(set(overrides) & set(RESERVED_OVERRIDES))
    if reserved:
        raise ValueError(f"--set {', '.join(reserved)}: set by the matrix; use --datasets, --seeds, --policies, "
                         "--results or --data-dir instead")
    return resolve_config(RetrainConfig, profile, overrides, dataset=dataset, seed=seed, results_root=str(results),
                          backbone=backbone, data_dir=data_dir)


def _targets(policies: Sequence[str], baselines: bool) -> tuple[str, ...]:
    return (("backbone", "finetune") if baselines else ()) + tuple(policies)


def build_jobs(datasets: Sequence[str], seeds: Sequence[int], policies: Sequence[str], *, profile: str,
               results: str | Path, backbone: str | None = None, overrides: Mapping[str, Any] | None = None,
               data_dirs: Mapping[str, str] | None = None, stages: Sequence[str] | None = None,
               chained: bool = False, baselines: bool = True, pretrain_jobs: bool = True, id_prefix: str = "",
               targets: Sequence[str] | None = None, python: str = sys.executable) -> list[Job]:
    """Expand the matrix into stage jobs, in an order where every job follows its prerequisites.

    Args:
        datasets: dataset names.
        seeds: run seeds.
        policies: pruning policies (each gets search → retrain → evaluate).
        profile: parameter profile of every stage.
        results: results folder (made absolute, so commands run from any working directory).
        backbone: backbone name, or None for the profile's default.
        overrides: config field -> value of every stage (the ``--set`` values, typed).
        data_dirs: dataset name -> data root in its official layout (default: phantom data).
        stages: keep only jobs of these kinds (see ``STAGE_KINDS``); prerequisites outside the selection are
            dropped (a stage runs the stages it needs itself). None keeps all.
        chained: one process per evaluation instead of one per stage: per (dataset, seed) a ``pretrain`` job,
            then one ``evaluate`` job per target that runs the stages it needs (finetune, or search and
            retrain) itself. Saves an interpreter start and data load per stage, for small CPU runs.
        baselines: also fine-tune the backbone and evaluate the backbone and the fine-tuned backbone.
        pretrain_jobs: with ``chained``, a job of its own for the pre-training (False: each evaluation job
            pre-trains itself, for runs whose pre-training is only a given checkpoint, so nothing races).
        id_prefix: put before every id (e.g. an ablation variant's name).
        targets: with ``chained``, the evaluation targets of every (dataset, seed) instead of the baselines and
            the policies (e.g. the transfer setting's arms, :data:`shapnas.config.names.TRANSFER_ARMS`).
        python: the interpreter of the commands.

    Returns:
        The jobs (ids ``<prefix><dataset>-<backbone>-seed<k>-<stage dir>``). Without a data root, the
        pre-training of the first seed also writes the dataset's phantom data, so the other seeds'
        pre-trainings wait for it.

    Raises:
        ValueError: unknown stage kinds, an override of a field the matrix sets, or an invalid config.
    """
    results = Path(results).resolve()
    data_dirs = dict(data_dirs or {})
    unknown = sorted(set(stages or ()) - set(STAGE_KINDS))
    if unknown:
        raise ValueError(f"stages {unknown}; expected some of {', '.join(STAGE_KINDS)}")
    jobs: list[Job] = []
    for dataset in datasets:
        data_dir = str(Path(data_dirs[dataset]).resolve()) if data_dirs.get(dataset) else ""
        first_pretrain: list[str] = []  # phantom data is written by the first stage that needs it: let one do it
        for seed in seeds:
            cfg = run_config(dataset, seed, profile, results, backbone, data_dir, overrides or {})
            prefix = f"{id_prefix}{dataset}-{cfg.backbone}-seed{seed}"

            def job(kind: str, stage: str, deps: Sequence[str], policy: str | None = None, target: str = "") -> str:
                run_cfg = cfg.replace(policy=policy) if policy else cfg
                key = stage_key(run_cfg, *parse_stage_name(stage))
                check_reuse(run_cfg, key, results)  # a stage finished with another config is never counted as done
                jobs.append(stage_job(f"{prefix}-{stage}", kind, run_cfg, key, results, deps=deps, target=target,
                                      python=python))
                return jobs[-1].id

            chained_targets = tuple(targets) if targets is not None else _targets(policies, baselines)
            if chained and not pretrain_jobs:
                for target in chained_targets:
                    job("evaluate", stage_name("eval", target), [], target=target)
                continue
            pretrain = job("pretrain", "pretrain", [] if data_dir else first_pretrain)
            first_pretrain = first_pretrain or [pretrain]
            if chained:
                for target in chained_targets:
                    job("evaluate", stage_name("eval", target), [pretrain], target=target)
                continue
            if baselines:
                finetune = job("finetune", "finetune", [pretrain])
                job("evaluate", stage_name("eval", "backbone"), [pretrain], target="backbone")
                job("evaluate", stage_name("eval", "finetune"), [finetune], target="finetune")
            for policy in policies:
                search = job("search", stage_name("search", policy), [pretrain], policy=policy)
                retrain = job("retrain", stage_name("retrain", policy), [search], policy=policy)
                job("evaluate", stage_name("eval", policy), [retrain], target=policy)
    if stages is not None:
        keep = {j.id for j in jobs if j.kind in stages}
        jobs = [dataclasses.replace(j, deps=tuple(d for d in j.deps if d in keep)) for j in jobs if j.id in keep]
    return jobs


def jobs_after(jobs: Sequence[Job], job_id: str, kind: str | None = None) -> list[Job]:
    """``jobs``, each of them (or each of ``kind``) made to wait for the job ``job_id`` as well.

    Args:
        jobs: the jobs.
        job_id: the job to wait for.
        kind: only jobs of this kind wait (None: all).

    Returns:
        The jobs, in the same order.
    """
    return [dataclasses.replace(job, deps=(*job.deps, job_id)) if kind in (None, job.kind) else job for job in jobs]


def pretrainings_after(jobs: Sequence[Job], job_id: str) -> list[Job]:
    """``jobs`` with every pre-training made to wait for the job ``job_id`` as well (the one that writes the
    phantom data, or the backbone, that they read); the other jobs already wait for their pre-training.

    Args:
        jobs: chained jobs of :func:`build_jobs`.
        job_id: the job to wait for.

    Returns:
        The jobs, in the same order.
    """
    return jobs_after(jobs, job_id, kind="pretrain")


def format_rows(jobs: Sequence[Job]) -> str:
    """One line per job, ``<id><TAB><command>`` (what ``--list`` prints; row k is SLURM array task k).

    A stage job's command reads its ``job.json``: write them first (:func:`write_job_spec`)."""
    return "\n".join(f"{j.id}\t{j.command()}" for j in jobs)


def dependency_order(jobs: Sequence[Job]) -> list[Job]:
    """The jobs in dependency order; ValueError on duplicate ids, unknown prerequisites or cycles."""
    by_id: dict[str, Job] = {}
    for job in jobs:
        if job.id in by_id:
            raise ValueError(f"job id {job.id!r} appears twice; expected unique ids")
        by_id[job.id] = job
    for job in jobs:
        missing = [d for d in job.deps if d not in by_id]
        if missing:
            raise ValueError(f"job {job.id!r} depends on unknown job(s) {missing}")
    order: list[Job] = []
    state: dict[str, int] = {}  # 1 visiting, 2 placed

    def visit(job: Job, path: tuple[str, ...]) -> None:
        if state.get(job.id) == 2:
            return
        if state.get(job.id) == 1:
            raise ValueError(f"jobs depend on each other in a cycle: {' -> '.join(path + (job.id,))}")
        state[job.id] = 1
        for dep in job.deps:
            visit(by_id[dep], path + (job.id,))
        state[job.id] = 2
        order.append(job)

    for job in jobs:
        visit(job, ())
    return order


def format_line(result: JobResult) -> str:
    """One result as a table row: id, status, seconds, detail (and the log of a failed job)."""
    seconds = "" if result.seconds is None else f"{result.seconds:.1f}"
    detail = result.detail + (f" (log: {result.log})" if result.status == "failed" else "")
    return f"{result.id:44} {result.status:7} {seconds:>8}  {detail}".rstrip()


def format_summary(results: Sequence[JobResult]) -> str:
    """A table of the results (id, status, seconds, detail) and a count per status."""
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "done", "failed", "skipped")}
    lines = [f"{'job':44} {'status':7} {'seconds':>8}  detail", *(format_line(r) for r in results)]
    lines.append(f"{len(results)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)
