"""Run matrix jobs on Dask distributed: placement on workers, one job process per stage, progress.

Each job (:class:`shapnas.experiments.matrix.Job`) runs as a child process of a Dask worker, its output appended to its
log; a job is submitted once its prerequisites finished, and Dask's ``resources`` keep one job per GPU
worker (https://distributed.dask.org/en/stable/resources.html). Progress lines count finished jobs and
estimate the time left.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime
import json
import logging
import os
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

from shapnas.experiments.matrix import Job, JobFailed, JobResult, dependency_order, format_line, write_job_spec

__all__ = ["Placement", "run_job", "open_client", "run_jobs", "progress_text"]

PR_SET_PDEATHSIG = 1  # linux/prctl.h


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
    write_job_spec(job)
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


# Without GPUs the local cluster runs one single-threaded job per core: two 32-px ablation searches at once
# with one thread each took 17.3 s, one alone with two threads 16.1 s (2 cores), so 1.9x the throughput.
# Capped because each workshop job holds about 1 GiB.
MAX_CPU_WORKERS = 8


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under ``taskset`` or a batch scheduler's
    pinning), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextmanager
def open_client(scheduler: str | None = None, workers: int | None = None, gpus_per_worker: bool = False,
                timeout_s: float = 120.0) -> Iterator[tuple[Any, Placement]]:
    """A Dask client on an existing scheduler, or on a ``LocalCluster`` of this machine (loopback only).

    Args:
        scheduler: address such as ``tcp://host:8786``; None starts a local cluster.
        workers: local workers (default: one per visible GPU; without GPUs one per core, at most
            ``MAX_CPU_WORKERS``; one job per worker at a time). On CPUs each job runs ``cores // workers``
            threads (``OMP_NUM_THREADS``).
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
    cores = usable_cores()
    count = (len(gpu_ids) if gpu_ids else min(cores, MAX_CPU_WORKERS)) if workers is None else workers
    if count < 1:
        raise ValueError(f"--workers {count}; expected at least 1")
    gpu = gpus_per_worker or bool(gpu_ids)
    env = {}
    if not gpu_ids:  # the workers share the cores: an inherited OMP_NUM_THREADS would oversubscribe them
        env["OMP_NUM_THREADS"] = str(max(1, cores // count))
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


def progress_text(done: int, total: int, elapsed_s: float) -> str:
    """``"k/n jobs done, ~Xm left"`` (the time left from the mean time per finished job so far).

    Args:
        done: finished jobs.
        total: jobs submitted.
        elapsed_s: seconds since the first submission.

    Returns:
        The progress text; without an estimate while nothing has finished.
    """
    if done <= 0 or done >= total:
        return f"{done}/{total} jobs done"
    left_min = elapsed_s / done * (total - done) / 60
    return f"{done}/{total} jobs done, ~{left_min:.0f}m left" if left_min >= 1 else f"{done}/{total} jobs done, <1m left"


def run_jobs(jobs: Sequence[Job], client: Any, *, placement: Placement | None = None, retries: int = 0,
             progress: bool = True, log: Callable[[str], None] | None = None) -> list[JobResult]:
    """Submit every job whose output is missing, each once its prerequisites finished, and wait for all.

    Args:
        jobs: the jobs (any order; prerequisites must be among them).
        client: a ``distributed.Client``.
        placement: resources, GPU pinning and environment of the jobs.
        retries: times Dask re-runs a failed job.
        progress: a progress bar on stderr with one line per finished job (id, status, seconds) and the count
            of finished jobs with the time left.
        log: instead of the bar, give each such line to this callback (e.g. the notebook runner's log).

    Returns:
        One result per job, in the order of ``jobs``.

    Raises:
        ValueError: duplicate ids, unknown prerequisites or a dependency cycle.
    """
    from distributed import as_completed
    from tqdm.auto import tqdm

    placement = placement or Placement()
    order = dependency_order(jobs)
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
    start = time.perf_counter()
    with tqdm(total=len(futures), desc="matrix", unit="job", file=sys.stderr,
              disable=not progress or log is not None or not futures) as bar:
        for done, future in enumerate(as_completed(list(futures.values())), start=1):
            job_id = key_to_id[str(future.key)]
            results[job_id] = _outcome(future, by_id[job_id], key_to_id)
            line = f"{format_line(results[job_id])}  [{progress_text(done, len(futures), time.perf_counter() - start)}]"
            if log is not None:
                log(line)
            elif progress:
                bar.write(line, file=sys.stderr)
            bar.update()
    return [results[j.id] for j in jobs]
