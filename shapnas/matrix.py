"""The experiment matrix (datasets × seeds × policies) as CLI-stage jobs, run on Dask distributed.

Every job is one plain ``python -m shapnas <stage> ...`` command with a deterministic log
(``<results>/logs/<job-id>.log``) and an expected output (the stage's ``metrics.json``), so the same rows
run on a laptop, on a Dask cluster of GPU machines or as a SLURM array (stack.md §7; Dask resources:
https://distributed.dask.org/en/stable/resources.html). Per (dataset, seed)::

    pretrain ─┬─ finetune ── evaluate --target finetune
              ├─ evaluate --target backbone
              └─ search-<policy> ── retrain-<policy> ── evaluate --target <policy>   (per policy)

A job whose output exists is not submitted; a failed job does not stop the others, its dependants are
reported as skipped, and running the matrix again finishes only what is missing.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import datetime
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Job",
    "JobResult",
    "JobFailed",
    "Placement",
    "STAGE_KINDS",
    "build_jobs",
    "run_job",
    "run_jobs",
    "open_client",
    "format_rows",
    "format_summary",
]

STAGE_KINDS = ("pretrain", "finetune", "search", "retrain", "evaluate")
RESERVED_OVERRIDES = ("dataset", "seed", "policy", "results_root", "data_dir")  # set by the matrix itself
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class Job:
    """One command of the matrix.

    Args:
        id: unique, file-name safe id, e.g. ``acdc-basic_unet-seed0-search-shapley``.
        argv: the command (``argv[0]`` is the executable).
        log: file that receives the command's stdout and stderr (appended, one header per attempt).
        output: the file the command must write; the job is done when it exists.
        deps: ids of the jobs that must finish first.
        kind: the stage kind (``pretrain``, ..., ``evaluate``), or any label for generic jobs.
    """

    id: str
    argv: tuple[str, ...]
    log: Path
    output: Path
    deps: tuple[str, ...] = ()
    kind: str = ""

    def done(self) -> bool:
        """True when the expected output exists (a stage's ``metrics.json`` is written last and atomically)."""
        return Path(self.output).exists()

    def command(self) -> str:
        """The command as one shell-quoted line."""
        return shlex.join(self.argv)


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


@dataclass(frozen=True)
class Placement:
    """How jobs are placed on workers.

    Args:
        resources: Dask resources a job needs, e.g. ``{"GPU": 1}`` (one job per GPU worker), or None.
        gpu_ids: GPUs of a local cluster; worker ``k`` pins its jobs to ``gpu_ids[k % len]`` through
            ``CUDA_VISIBLE_DEVICES``. Empty for remote workers (pinned when they are started).
        env: extra environment variables of every job (e.g. ``OMP_NUM_THREADS`` on a CPU cluster).
    """

    resources: dict[str, float] | None = None
    gpu_ids: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- the matrix


def _stage_args(dataset: str, seed: int, profile: str, results: Path, backbone: str | None, data_dir: str,
                overrides: Sequence[str]) -> list[str]:
    argv = ["--dataset", dataset, "--seed", str(seed), "--profile", profile, "--results", str(results)]
    if backbone:
        argv += ["--backbone", backbone]
    if data_dir:
        argv += ["--data-dir", data_dir]
    for item in overrides:
        argv += ["--set", item]
    return argv


def _run_config(dataset: str, seed: int, profile: str, results: Path, backbone: str | None, data_dir: str,
                overrides: Sequence[str]) -> Any:
    """The config the stage CLI will build for these arguments (same code path, so the paths agree)."""
    from shapnas.cli.common import config_from_args, parse_overrides

    reserved = sorted(set(parse_overrides(list(overrides))) & set(RESERVED_OVERRIDES))
    if reserved:
        raise ValueError(f"--set {', '.join(reserved)}: set by the matrix; use --datasets, --seeds, --policies, "
                         "--results or --data-dir instead")
    args = argparse.Namespace(dataset=dataset, data_dir=data_dir, results=str(results), profile=profile, seed=seed,
                              backbone=backbone, overrides=list(overrides), device=None, policy=None)
    return config_from_args(args)


def build_jobs(datasets: Sequence[str], seeds: Sequence[int], policies: Sequence[str], *, profile: str,
               results: str | Path, backbone: str | None = None, overrides: Sequence[str] = (),
               data_dirs: dict[str, str] | None = None, stages: Sequence[str] | None = None,
               chained: bool = False, baselines: bool = True, pretrain_jobs: bool = True,
               python: str = sys.executable) -> list[Job]:
    """Expand the matrix into stage jobs, in an order where every job follows its prerequisites.

    Args:
        datasets: dataset names.
        seeds: run seeds.
        policies: pruning policies (each gets search → retrain → evaluate).
        profile: parameter profile of every stage.
        results: results folder (made absolute, so commands run from any working directory).
        backbone: backbone name, or None for the profile's default.
        overrides: ``KEY=VALUE`` config overrides passed to every stage (``--set``).
        data_dirs: dataset name -> data root in its official layout (default: phantom data).
        stages: keep only jobs of these kinds (see ``STAGE_KINDS``); prerequisites outside the selection are
            dropped (a stage runs the stages it needs itself). None keeps all.
        chained: one process per evaluation instead of one per stage: per (dataset, seed) a ``pretrain`` job,
            then one ``evaluate`` job per target that runs the stages it needs (finetune, or search and
            retrain) itself. Saves an interpreter start and data load per stage, for small CPU runs.
        baselines: also fine-tune the backbone and evaluate the backbone and the fine-tuned backbone.
        pretrain_jobs: with ``chained``, a job of its own for the pre-training (False: each evaluation job
            pre-trains itself, for runs whose pre-training is only a given checkpoint, so nothing races).
        python: the interpreter of the commands.

    Returns:
        The jobs (ids ``<dataset>-<backbone>-seed<k>-<stage dir>``). Without a data root, the pre-training of
        the first seed also writes the dataset's phantom data, so the other seeds' pre-trainings wait for it.

    Raises:
        ValueError: unknown stage kinds, a ``--set`` of a field the matrix sets, or an invalid config.
    """
    results = Path(results).resolve()
    data_dirs = dict(data_dirs or {})
    unknown = sorted(set(stages or ()) - set(STAGE_KINDS))
    if unknown:
        raise ValueError(f"stages {unknown}; expected some of {', '.join(STAGE_KINDS)}")
    from shapnas.run_identity import check_reuse, parse_stage_name, stage_key, stage_name

    jobs: list[Job] = []
    for dataset in datasets:
        data_dir = str(Path(data_dirs[dataset]).resolve()) if data_dirs.get(dataset) else ""
        first_pretrain: list[str] = []  # phantom data is written by the first stage that needs it: let one do it
        for seed in seeds:
            cfg = _run_config(dataset, seed, profile, results, backbone, data_dir, overrides)
            prefix = f"{dataset}-{cfg.backbone}-seed{seed}"
            base = _stage_args(dataset, seed, profile, results, backbone, data_dir, overrides)

            def job(kind: str, stage: str, extra: list[str], deps: Sequence[str]) -> str:
                job_id = f"{prefix}-{stage}"
                key = stage_key(cfg, *parse_stage_name(stage))
                check_reuse(cfg, key, results)  # a stage finished with another config is never counted as done
                jobs.append(Job(id=job_id, argv=(python, "-m", "shapnas", kind, *base, *extra),
                                log=results / "logs" / f"{job_id}.log",
                                output=key.path(results) / "metrics.json",
                                deps=tuple(deps), kind=kind))
                return job_id

            if chained and not pretrain_jobs:
                for target in (("backbone", "finetune") if baselines else ()) + tuple(policies):
                    job("evaluate", stage_name("eval", target), ["--target", target], [])
                continue
            pretrain = job("pretrain", "pretrain", [], [] if data_dir else first_pretrain)
            first_pretrain = first_pretrain or [pretrain]
            if chained:
                for target in (("backbone", "finetune") if baselines else ()) + tuple(policies):
                    job("evaluate", stage_name("eval", target), ["--target", target], [pretrain])
                continue
            if baselines:
                finetune = job("finetune", "finetune", [], [pretrain])
                job("evaluate", stage_name("eval", "backbone"), ["--target", "backbone"], [pretrain])
                job("evaluate", stage_name("eval", "finetune"), ["--target", "finetune"], [finetune])
            for policy in policies:
                search = job("search", stage_name("search", policy), ["--policy", policy], [pretrain])
                retrain = job("retrain", stage_name("retrain", policy), ["--policy", policy], [search])
                job("evaluate", stage_name("eval", policy), ["--target", policy], [retrain])
    if stages is not None:
        keep = {j.id for j in jobs if j.kind in stages}
        jobs = [Job(j.id, j.argv, j.log, j.output, tuple(d for d in j.deps if d in keep), j.kind)
                for j in jobs if j.id in keep]
    return jobs


def format_rows(jobs: Sequence[Job]) -> str:
    """One line per job, ``<id><TAB><command>`` (what ``--list`` prints; row k is SLURM array task k)."""
    return "\n".join(f"{j.id}\t{j.command()}" for j in jobs)


def _ordered(jobs: Sequence[Job]) -> list[Job]:
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


# ---------------------------------------------------------------------------------------------- on a worker


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child die with the worker that started it (Linux ``PR_SET_PDEATHSIG``),
    so a killed worker leaves no orphaned stage writing into a run directory beside its rescheduled copy."""
    name = ctypes.util.find_library("c")
    if not sys.platform.startswith("linux") or not name:
        return None
    prctl = ctypes.CDLL(name, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the worker died before prctl took effect
            os._exit(1)

    return preexec


def _worker_name() -> tuple[str, Any]:
    try:
        from distributed import get_worker

        worker = get_worker()
        return worker.address, worker.name
    except (ImportError, ValueError):
        return "", None


def run_job(job: Job, *prerequisites: JobResult, env: dict[str, str] | None = None,
            gpu_ids: Sequence[str] = ()) -> JobResult:
    """Run one job's command (on a Dask worker), stdout and stderr appended to its log.

    Args:
        job: the job.
        *prerequisites: results of the jobs it needs (passed by Dask only to order the jobs).
        env: extra environment variables.
        gpu_ids: GPUs of a local cluster; the job gets ``CUDA_VISIBLE_DEVICES=gpu_ids[worker name % len]``.

    Returns:
        ``ok``, or ``done`` when the output already exists (e.g. a result recomputed after a lost worker).

    Raises:
        JobFailed: non-zero exit status, or the expected output is missing or not JSON after exit 0.
    """
    del prerequisites
    if job.done():
        return JobResult(job.id, "done", 0.0, str(job.log), "output exists")
    address, name = _worker_name()
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if gpu_ids and isinstance(name, int):
        child_env["CUDA_VISIBLE_DEVICES"] = str(gpu_ids[name % len(gpu_ids)])
    log = Path(job.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("a") as handle:
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        handle.write(f"# job {job.id} on {address or 'local'} at {stamp}"
                     f" (CUDA_VISIBLE_DEVICES={child_env.get('CUDA_VISIBLE_DEVICES', '')})\n# {job.command()}\n")
        handle.flush()
        code = subprocess.run(list(job.argv), stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                              env=child_env, preexec_fn=_die_with_parent(), check=False).returncode
        seconds = time.perf_counter() - start
        handle.write(f"# exit status {code} after {seconds:.1f} s\n")
    if code != 0:
        raise JobFailed(job.id, f"exit status {code}", str(log), seconds)
    try:
        json.loads(Path(job.output).read_text())
    except (OSError, ValueError) as error:
        raise JobFailed(job.id, f"exit status 0 but {job.output} is missing or not JSON ({error})",
                        str(log), seconds) from None
    return JobResult(job.id, "ok", seconds, str(log), "", address)


# ---------------------------------------------------------------------------------------------- the driver


def _gpu_count() -> int:
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - no torch or no driver on that machine: no GPUs
        return 0


def _local_gpu_ids() -> tuple[str, ...]:
    count = _gpu_count()
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return tuple(visible[:count]) if visible else tuple(str(i) for i in range(count))


@contextmanager
def open_client(scheduler: str | None = None, workers: int | None = None, gpus_per_worker: bool = False,
                timeout_s: float = 120.0) -> Iterator[tuple[Any, Placement]]:
    """A Dask client on an existing scheduler, or on a ``LocalCluster`` of this machine (loopback only).

    Args:
        scheduler: address such as ``tcp://host:8786``; None starts a local cluster.
        workers: local workers (default: one per visible GPU, else 1; one job per worker at a time).
        gpus_per_worker: every worker has one GPU: jobs need the resource ``{"GPU": 1}``. Detected when
            the workers (or, locally, this machine) see CUDA devices.
        timeout_s: how long to wait for the scheduler and the first workers.

    Yields:
        (client, placement of the jobs).

    Raises:
        ValueError: GPU jobs but no worker offers the ``GPU`` resource, or ``workers < 1``.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler, timeout=f"{timeout_s}s") as client:
            client.wait_for_workers(1, timeout=timeout_s)
            gpu = gpus_per_worker or any(n > 0 for n in client.run(_gpu_count).values())
            if gpu:
                infos = client.scheduler_info(n_workers=-1)["workers"].values()
                if not any(info.get("resources", {}).get("GPU", 0) >= 1 for info in infos):
                    raise ValueError(f"no worker of {scheduler} offers the GPU resource; start each worker with "
                                     "CUDA_VISIBLE_DEVICES=<i> dask worker ADDRESS --resources GPU=1")
            yield client, Placement(resources={"GPU": 1} if gpu else None)
        return
    gpu_ids = _local_gpu_ids()
    count = workers or max(1, len(gpu_ids))
    if count < 1:
        raise ValueError(f"--workers {count}; expected at least 1")
    gpu = gpus_per_worker or bool(gpu_ids)
    env = {}
    if not gpu_ids and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // count))
    with LocalCluster(n_workers=count, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, memory_limit=0, resources={"GPU": 1} if gpu else None,
                      silence_logs=logging.CRITICAL) as cluster, \
            Client(cluster, timeout=f"{timeout_s}s") as client:
        client.wait_for_workers(count, timeout=timeout_s)
        yield client, Placement(resources={"GPU": 1} if gpu else None, gpu_ids=gpu_ids, env=env)


def _outcome(future: Any, job: Job, key_to_id: dict[str, str]) -> JobResult:
    """The result of a finished future; errors of a prerequisite make the job ``skipped``."""
    from distributed import KilledWorker

    if future.status == "finished":
        return future.result()
    if future.status == "cancelled":
        return JobResult(job.id, "failed", None, str(job.log), "cancelled")
    error = future.exception()
    if isinstance(error, JobFailed):
        if error.job_id != job.id:
            return JobResult(job.id, "skipped", None, str(job.log), f"prerequisite {error.job_id} failed")
        return JobResult(job.id, "failed", error.seconds, error.log, error.reason)
    if isinstance(error, KilledWorker):
        culprit = key_to_id.get(str(error.task), str(error.task))
        if culprit != job.id:
            return JobResult(job.id, "skipped", None, str(job.log), f"prerequisite {culprit} failed")
        return JobResult(job.id, "failed", None, str(job.log), "its worker died while running it")
    return JobResult(job.id, "failed", None, str(job.log), f"{type(error).__name__}: {error}")


def _line(result: JobResult) -> str:
    seconds = "" if result.seconds is None else f"{result.seconds:.1f}"
    detail = result.detail + (f" (log: {result.log})" if result.status == "failed" else "")
    return f"{result.id:44} {result.status:7} {seconds:>8}  {detail}".rstrip()


def run_jobs(jobs: Sequence[Job], client: Any, *, placement: Placement | None = None, retries: int = 0,
             progress: bool = True) -> list[JobResult]:
    """Submit every job whose output is missing, each once its prerequisites finished, and wait for all.

    Args:
        jobs: the jobs (any order; prerequisites must be among them).
        client: a ``distributed.Client``.
        placement: resources, GPU pinning and environment of the jobs.
        retries: times Dask re-runs a failed job.
        progress: a progress bar with one line per finished job (id, status, seconds).

    Returns:
        One result per job, in the order of ``jobs``.

    Raises:
        ValueError: duplicate ids, unknown prerequisites or a dependency cycle.
    """
    from distributed import as_completed
    from tqdm.auto import tqdm

    placement = placement or Placement()
    order = _ordered(jobs)
    results = {j.id: JobResult(j.id, "done", None, str(j.log), "output exists") for j in order if j.done()}
    token = uuid.uuid4().hex[:8]  # fresh keys: a long-lived scheduler must not hand back an old run's result
    futures: dict[str, Any] = {}
    for job in order:
        if job.id in results:
            continue
        prerequisites = [futures[d] for d in job.deps if d in futures]
        futures[job.id] = client.submit(run_job, job, *prerequisites, key=f"{job.id}-{token}", pure=False,
                                        resources=placement.resources, retries=retries or None,
                                        env=placement.env, gpu_ids=placement.gpu_ids)
    key_to_id = {str(f.key): job_id for job_id, f in futures.items()}
    by_id = {j.id: j for j in order}
    with tqdm(total=len(futures), desc="matrix", unit="job", disable=not progress or not futures) as bar:
        for future in as_completed(list(futures.values())):
            job_id = key_to_id[str(future.key)]
            results[job_id] = _outcome(future, by_id[job_id], key_to_id)
            if progress:
                bar.write(_line(results[job_id]), file=sys.stderr)
            bar.update()
    return [results[j.id] for j in jobs]


def format_summary(results: Sequence[JobResult]) -> str:
    """A table of the results (id, status, seconds, detail) and a count per status."""
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "done", "failed", "skipped")}
    lines = [f"{'job':44} {'status':7} {'seconds':>8}  detail", *(_line(r) for r in results)]
    lines.append(f"{len(results)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)
