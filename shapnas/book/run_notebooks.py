"""Execute the companion notebooks with papermill into the book's source tree; on a CPU several datasets side by
side, each kernel with its share of the cores (a second process gains far more than a second thread).

Each notebook's ``parameters`` cell holds smoke-sized defaults whose names equal the fields of its config
(``01_data`` → ``DataConfig`` … ``04_shapley_pruning`` → ``RetrainConfig``); a run injects a profile's values
(``shapnas/profiles/*.yaml``) filtered to those names, plus dataset, seed, data_dir, results_root and device
(papermill). Executed copies go to ``book/datasets/<dataset>/<notebook>.ipynb`` (what the book
renders) and to the run directory's ``executed/`` folder (provenance).

A failure never replaces good output: the data folders are checked before any notebook runs, and a
notebook executes into a temporary file that replaces the book's copy only when every cell succeeded (a
failing copy goes to the results folder as ``<notebook>.failed.ipynb``, named in the error).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shapnas.book.kernel_manager import kernel_manager_options
from shapnas.book.pages import tag_for_book
from shapnas.config.overrides import convert_values
from shapnas.config.stage_configs import (
    BaseConfig,
    DataConfig,
    PretrainConfig,
    RetrainConfig,
    SearchConfig,
    load_profile,
    resolve_config,
)
from shapnas.runs.files import run_dir

__all__ = [
    "NOTEBOOKS",
    "RESULTS_NOTEBOOK",
    "NotebookError",
    "check_data_dirs",
    "reproduce_command",
    "select_notebooks",
    "notebook_parameter_names",
    "notebook_parameters",
    "executed_path",
    "execute_notebook",
    "run_notebooks",
]

# notebook stem -> the config its parameters cell builds (names must equal the config's fields)
NOTEBOOKS: dict[str, type[BaseConfig]] = {
    "01_data": DataConfig,
    "02_retrofit": PretrainConfig,
    "03_search": SearchConfig,
    "04_shapley_pruning": RetrainConfig,
    "05_ablations": RetrainConfig,
    "06_stability": RetrainConfig,
}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # what sets a kernel's PyTorch CPU threads
RESULTS_NOTEBOOK = "results"  # book/results.ipynb: the cross-dataset page, run after the per-dataset ones
EXPERIMENT_NOTEBOOKS = ("05_ablations", "06_stability")  # they present the ablation plan's runs
BASE_PARAMETERS = ("dataset", "seed", "data_dir", "results_root", "device", "profile")


class NotebookError(RuntimeError):
    """A notebook failed: the message names the notebook, the cell (index, source head) and the error."""


def check_data_dirs(datasets: Sequence[str], data_dirs: Mapping[str, str]) -> None:
    """Check every data folder before anything runs: it exists and holds at least one labelled case in its
    dataset's layout (``msd``, which has no phantom data, needs one).

    Args:
        datasets: the selected datasets.
        data_dirs: dataset -> data root (a dataset not named uses phantom data).

    Raises:
        ValueError: a folder given for a dataset not selected, a missing folder, one that does not fit the
            layout, one without labelled cases, or ``msd`` without a folder (the message names the folder
            and what was expected).
    """
    from shapnas.data.layouts import FOLDER_LAYOUTS, LAYOUT_HELP, dataset_spec, list_cases

    stray = sorted(set(data_dirs) - set(datasets))
    if stray:
        raise ValueError(f"data folder given for {', '.join(stray)}, which is not among the datasets "
                         f"{', '.join(datasets)}")
    if "msd" in datasets and not data_dirs.get("msd"):
        raise ValueError(f"dataset msd needs --data-dir msd=DIR ({FOLDER_LAYOUTS['msd']}); it has no phantom data")
    for dataset, folder in data_dirs.items():
        expected = f"expected {FOLDER_LAYOUTS.get(dataset, 'the dataset in its official layout')}; {LAYOUT_HELP}"
        if not Path(folder).is_dir():
            raise ValueError(f"--data-dir {dataset}={folder}: folder not found; {expected}")
        try:
            dataset_spec(dataset, Path(folder))
            cases = list_cases(dataset, Path(folder))
        except (OSError, ValueError) as error:
            raise ValueError(f"--data-dir {dataset}={folder}: does not fit the {dataset} layout ({error}); "
                             f"{expected}") from None
        if not cases:
            raise ValueError(f"--data-dir {dataset}={folder}: no labelled case found; {expected}")


def reproduce_command(datasets: Sequence[str], *, profile: str, seed: int, notebooks: Sequence[str] | None = None,
                      overrides: Mapping[str, Any] | None = None, data_dirs: Sequence[str] = ()) -> str:
    """The command line that reproduces a page (written into its provenance line).

    Args:
        datasets: the datasets the command runs.
        profile: the parameter profile.
        seed: the run seed (left out when 0, the default).
        notebooks: notebook stems (``["03_search"]`` → ``--notebooks 03``); ``None`` runs all.
        overrides: the run's ``--set`` values.
        data_dirs: datasets given a data folder (``--data-dir acdc=DIR``; the folder is the reader's own).

    Returns:
        E.g. ``python -m shapnas run --datasets acdc --profile workshop --notebooks 03 --set search_epochs=20``.
    """
    parts = ["python -m shapnas run", f"--datasets {','.join(datasets)}", f"--profile {profile}"]
    if seed:
        parts.append(f"--seed {seed}")
    if notebooks:
        parts.append("--notebooks " + ",".join(stem.split("_")[0] for stem in notebooks))
    parts += [f"--data-dir {name}=DIR" for name in data_dirs]
    for key, value in (overrides or {}).items():
        text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value).lower() \
            if isinstance(value, bool) else str(value)
        parts.append(f"--set {shlex.quote(f'{key}={text}')}")
    return " ".join(parts)


def select_notebooks(spec: str | Sequence[str] | None) -> list[str]:
    """Notebook stems from a selection such as ``"01,02"`` or ``["03_search"]``; ``None`` selects all.

    Raises:
        ValueError: a selection matching no notebook.
    """
    if spec is None:
        return list(NOTEBOOKS)
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    chosen = []
    for item in filter(None, items):
        matches = [name for name in NOTEBOOKS if name == item or name.split("_")[0] == item.zfill(2)]
        if not matches:
            raise ValueError(f"notebook {item!r}; expected one of {', '.join(NOTEBOOKS)} (or 01..06)")
        chosen.extend(m for m in matches if m not in chosen)
    return [name for name in NOTEBOOKS if name in chosen]  # always in pipeline order


def notebook_parameter_names(path: str | Path) -> list[str]:
    """Names in the ``parameters``-tagged cell of a notebook (``papermill.inspect_notebook``)."""
    import papermill

    return list(papermill.inspect_notebook(str(path)))


def _portable(path: str | Path, start: Path, root: Path) -> str:
    """``path`` relative to ``start`` when it lies inside ``root`` (so executed copies carry no machine path)."""
    absolute = Path(path).resolve()
    if absolute == root or root in absolute.parents:
        return Path(os.path.relpath(absolute, start.resolve())).as_posix()
    return str(absolute)


def notebook_parameters(names: Sequence[str], cfg: RetrainConfig, given: set[str]) -> dict[str, Any]:
    """The values papermill injects into one notebook.

    Args:
        names: the notebook's parameter names.
        cfg: the full run config (profile values, then options, then overrides).
        given: names set by the profile, the options or the overrides; other parameters keep the
            notebook's own defaults (e.g. ``policy`` of ``04_shapley_pruning``).

    Returns:
        ``{name: value}`` for the names in both ``names`` and ``given``.
    """
    values = cfg.to_dict()
    return {name: values[name] for name in names if name in given and name in values}


def executed_path(root: str | Path, dataset: str | None, stem: str) -> Path:
    """Where the book reads an executed notebook: ``book/datasets/<dataset>/<stem>.ipynb``
    (``book/datasets/<stem>.ipynb`` for the cross-dataset page, ``dataset=None``)."""
    base = Path(root) / "book" / "datasets"
    return (base / dataset if dataset else base) / f"{stem}.ipynb"


@contextlib.contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """Kernels started inside inherit ``TQDM_DISABLE=1``: no progress bars in the executed pages."""
    previous = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = previous


def _failure(source: Path, failed_copy: Path | None, label: str, error: BaseException) -> NotebookError:
    index = getattr(error, "cell_index", None)
    head = "\n".join("    " + line for line in (getattr(error, "source", "") or "").splitlines()[:4])
    what = f"{getattr(error, 'ename', type(error).__name__)}: {getattr(error, 'evalue', str(error))}"
    where = f"cell {index}" if index is not None else "a cell"
    kept = (f"  failing copy with the full traceback: {failed_copy}" if failed_copy else
            "  no executed copy was written")
    return NotebookError(f"notebook {source} ({label}) failed in {where}:\n{head}\n  {what}\n{kept}\n"
                         "  the book's page was left as it was")


def execute_notebook(source: str | Path, output: str | Path, parameters: dict[str, Any], *, label: str = "",
                     timeout_s: int | None = None, root: str | Path | None = None, dataset: str | None = None,
                     profile: str | None = None, failed_copy: str | Path | None = None,
                     command: str | None = None, note: str | None = None) -> Path:
    """Execute one notebook with papermill (kernel ``python3``, working directory = the output's folder) into a
    temporary file, which replaces ``output`` only when every cell succeeded.

    Args:
        source: the committed notebook (no outputs).
        output: the executed copy to write (tagged for the book); left untouched when a cell fails.
        parameters: values for the injected-parameters cell.
        label: what the error message calls this run (e.g. the dataset).
        timeout_s: per-cell time limit; ``None`` means none.
        root: the book root (its path is shortened to ``.`` in printed outputs).
        dataset: prefixes the page title for the book (``"ACDC · 1. The data"``).
        profile: the profile named in the page's provenance line.
        failed_copy: where a failing execution is kept (tagged, with its traceback); default
            ``<output stem>.failed.ipynb`` in a new temporary folder.
        command: the command line that reproduces the page (in its provenance line).
        note: where the page's data come from, when not from this run (chapters 5 and 6).

    Returns:
        ``output``.

    Raises:
        NotebookError: a cell raised, the kernel died or a cell timed out (the message names the failing copy).
    """
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    source, output = Path(source), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="shapnas-run-") as scratch:
        partial = Path(scratch) / output.name
        try:
            with _quiet_progress_bars():
                papermill.execute_notebook(str(source), str(partial), parameters=parameters, kernel_name="python3",
                                           cwd=str(output.parent), progress_bar=False, start_timeout=120,
                                           execution_timeout=timeout_s, **kernel_manager_options())
        except (PapermillExecutionError, DeadKernelError, CellTimeoutError) as error:
            kept = None
            if partial.exists():
                tag_for_book(partial, root, dataset=dataset, profile=profile, command=command, note=note)
                kept = Path(failed_copy) if failed_copy else \
                    Path(tempfile.mkdtemp(prefix="shapnas-failed-")) / f"{output.stem}.failed.ipynb"
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(partial, kept)
            raise _failure(source, kept, label, error) from None
        tag_for_book(partial, root, dataset=dataset, profile=profile, command=command, note=note)
        shutil.copyfile(partial, output)  # only now: a failed run leaves the previous page as it was
    return output


@dataclass(frozen=True)
class _Job:
    label: str
    source: Path
    output: Path
    copy_to: Path
    parameters: dict[str, Any]
    dataset: str | None = None
    command: str | None = None
    note: str | None = None

    @property
    def failed_copy(self) -> Path:
        """Where a failing execution is kept: ``<results>/.../executed/<stem>.failed.ipynb``."""
        return self.copy_to.with_name(f"{self.copy_to.stem}.failed.ipynb")


def _jobs(datasets: Sequence[str], stems: Sequence[str], root: Path, cfg_for: Callable[[str], RetrainConfig],
          given: set[str], command_for: Callable[[str, str], str] | None = None) -> list[_Job]:
    """One job per (dataset, notebook), in order, with the parameters papermill injects and the command line
    that reproduces the page (``command_for(dataset, stem)``)."""
    jobs = []
    for dataset in datasets:
        cfg = cfg_for(dataset)
        executed_dir = run_dir(cfg.results_root, dataset, cfg.backbone, cfg.seed) / "executed"
        for stem in stems:
            source = root / "notebooks" / f"{stem}.ipynb"
            if not source.exists():
                raise FileNotFoundError(f"{source}: notebook not found (expected the committed notebooks/ folder)")
            output = executed_path(root, dataset, stem)
            values = notebook_parameters(notebook_parameter_names(source), cfg, given)
            for key in ("results_root", "data_dir"):
                if values.get(key):
                    values[key] = _portable(values[key], output.parent, root)
            command = command_for(dataset, stem) if command_for else None
            jobs.append(_Job(f"{dataset} {stem}", source, output, executed_dir / f"{stem}.ipynb", values, dataset,
                             command, plan_note(cfg.profile) if stem in EXPERIMENT_NOTEBOOKS else None))
    return jobs


def _run_experiments(datasets: Sequence[str], profile: str, base: Mapping[str, Any],
                     data_dirs: Mapping[str, str], log: Callable[[str], None]) -> None:
    """Run (what is missing of) the profile's ablation plan and transfer plan for ``datasets`` on one local Dask
    cluster (one queue: no worker waits between the plans).

    Args:
        datasets: the selected datasets (those the plan covers run).
        profile: the profile, which names the plan.
        base: the run's values (``seed``, ``results_root``, ``device`` and the typed overrides).
        data_dirs: dataset -> data root (others: phantom data).
        log: receives a line per finished job with the count and the time left.
    """
    from shapnas.experiments.ablations import ablation_plan, run_ablations
    from shapnas.experiments.matrix import format_summary
    from shapnas.experiments.transfer import build_transfer_jobs, transfer_plan

    plan = ablation_plan(profile)
    chosen = [d for d in datasets if d in plan.datasets]
    if not chosen:
        log(f"ablations: the {profile} plan covers {', '.join(plan.datasets)}; none of them selected")
        return
    overrides = {k: v for k, v in base.items() if k not in {"seed", "results_root", "device"}}
    log(f"ablations ({profile} plan): {', '.join(chosen)}, seeds {list(plan.seeds)}, policies "
        f"{', '.join(plan.policies)}, {len(plan.variants)} variants ...")
    transfer = transfer_plan(profile)
    # a user's data folder holds one site; its transfer runs need their target site's folder (the Real data page)
    on_phantoms = [d for d in datasets if d in transfer.datasets and d not in data_dirs]
    also = build_transfer_jobs(transfer, results=base["results_root"], datasets=on_phantoms,
                               overrides=overrides) if on_phantoms else []
    if on_phantoms:
        log(f"transfer ({profile} plan, on the same cluster): {', '.join(on_phantoms)}, seeds {list(transfer.seeds)}, "
            f"N = {'; '.join(f'{d} ' + ', '.join(map(str, transfer.ns_for(d))) for d in on_phantoms)}, every arm ...")
    start = time.perf_counter()
    results = run_ablations(plan, results=base["results_root"], datasets=chosen, overrides=overrides,
                            data_dirs={d: data_dirs[d] for d in chosen if d in data_dirs}, progress=False, log=log,
                            also=also)
    failed = [r for r in results if r.status in ("failed", "skipped")]
    log(f"ablation and transfer plans: {len(results)} jobs in {time.perf_counter() - start:.1f} s"
        + (f"; {len(failed)} failed or skipped:\n{format_summary(failed)}" if failed else ""))


def plan_note(profile: str) -> str:
    """Where chapters 5 and 6 get their data: the profile's ablation plan, whose runs have their own values.

    Args:
        profile: the run's profile.

    Returns:
        One sentence for the page's head (the plan's seeds, policies and the values it sets).
    """
    from shapnas.experiments.ablations import ablation_plan

    plan = ablation_plan(profile)
    scale = ", ".join(f"`{key}={value}`" for key, value in plan.scale.items())
    own = (f"those runs use the plan's own values ({scale}; the rest as in the `{profile}` profile)" if scale else
           f"those runs use the `{profile}` profile's values")
    return (f"the runs of the `{profile}` ablation plan (seeds {', '.join(map(str, plan.seeds))}; policies "
            f"{', '.join(plan.policies)}), not the single run configured below; {own}. "
            f"`python -m shapnas ablations --profile {profile}` runs the plan on its own.")


def _execute(job: _Job, number: int, total: int, *, timeout_s: int | None, root: Path, profile: str,
             log: Callable[[str], None]) -> float:
    """Execute one page (:func:`execute_notebook`), copy it to the run's ``executed/`` folder and log it; returns
    its seconds."""
    start = time.perf_counter()
    execute_notebook(job.source, job.output, job.parameters, label=job.label, timeout_s=timeout_s, root=root,
                     dataset=job.dataset, profile=profile, failed_copy=job.failed_copy, command=job.command,
                     note=job.note)
    job.copy_to.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(job.output, job.copy_to)
    job.failed_copy.unlink(missing_ok=True)  # an earlier failure of this page is superseded
    elapsed = time.perf_counter() - start
    log(f"[{number}/{total}] {job.label}: done in {elapsed:.1f} s -> {job.output}")
    return elapsed


def notebook_lanes(workers: int | None, device: str, datasets: int) -> int:
    """How many datasets' notebooks 01–04 run side by side.

    A small CPU model gains little from a second thread (a workshop ACDC pre-training: 72.5 s with one thread,
    59.4 s with two, on 2 cores), and much from a second process: on a CPU every core gets a dataset, each
    kernel single-threaded. On a GPU one dataset runs at a time.

    Args:
        workers: the number asked for (None: the default above).
        device: ``auto``, ``cpu`` or ``cuda[:i]``.
        datasets: datasets to run.

    Returns:
        Between 1 and ``max(datasets, 1)``.

    Raises:
        ValueError: ``workers < 1``.
    """
    if workers is not None:
        if workers < 1:
            raise ValueError(f"workers={workers}; expected at least 1")
        return min(workers, max(datasets, 1))
    from shapnas.runtime import pick_device

    if pick_device(device).type != "cpu":
        return 1
    from shapnas.experiments.dask_runner import usable_cores

    return max(1, min(usable_cores(), datasets))


def lane_threads(lanes: int) -> int:
    """Threads of each side-by-side kernel: the usable cores shared out (at least 1)."""
    from shapnas.experiments.dask_runner import usable_cores

    return max(1, usable_cores() // lanes)


def _log_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _run_dataset(jobs: Sequence[tuple[int, _Job]], total: int, threads: int, timeout_s: int | None, root: Path,
                 profile: str) -> list[Path]:
    """One dataset's pages in order, in a lane's process whose kernels run ``threads`` threads."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)  # the kernels papermill starts from here inherit it
    for number, job in jobs:
        _log_to_stderr(f"[{number}/{total}] {job.label}: running {job.source.name} ...")
        _execute(job, number, total, timeout_s=timeout_s, root=root, profile=profile, log=_log_to_stderr)
    return [job.output for _, job in jobs]


def _run_lanes(jobs: Sequence[tuple[int, _Job]], total: int, lanes: int, *, timeout_s: int | None, root: Path,
               profile: str) -> list[Path]:
    """Every dataset's pages on a pool of ``lanes`` processes, a dataset at a time per process; the first failure
    is raised once the other lanes have finished the dataset they were running."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    by_dataset: dict[str, list[tuple[int, _Job]]] = {}
    for number, job in jobs:
        by_dataset.setdefault(str(job.dataset), []).append((number, job))
    threads = lane_threads(lanes)
    with ProcessPoolExecutor(lanes, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_run_dataset, chain, total, threads, timeout_s, root, profile)
                   for chain in by_dataset.values()]
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            raise errors[0]
        return [path for f in futures for path in f.result()]


def _time_left(seconds: Sequence[float], remaining: int) -> str:
    """``", ~Xm left"`` from the mean time of the notebooks run so far ("" before the first finished)."""
    if not seconds or remaining <= 0:
        return ""
    minutes = sum(seconds) / len(seconds) * remaining / 60
    return f", ~{minutes:.0f}m left" if minutes >= 1 else ", <1m left"


def _without_unplanned(jobs: list[_Job], profile: str, log: Callable[[str], None]) -> list[_Job]:
    """Drop 05/06 of datasets the profile's ablation plan does not cover (and their stale executed copies):
    a chapter with nothing to show is left out of the book rather than shown empty."""
    from shapnas.experiments.ablations import ablation_plan

    covered = ablation_plan(profile).datasets
    dropped = [j for j in jobs if j.source.stem in EXPERIMENT_NOTEBOOKS and j.dataset not in covered]
    for job in dropped:
        job.output.unlink(missing_ok=True)
    if dropped:
        log(f"the {profile} ablation plan covers {', '.join(covered)}: not executing "
            f"{', '.join(j.label for j in dropped)} (left out of the book)")
    return [j for j in jobs if j not in dropped]


def run_notebooks(datasets: Sequence[str], *, profile: str = "smoke", seed: int = 0, root: str | Path = ".",
                  data_dirs: Mapping[str, str] | None = None, results_root: str | Path = "results", device: str = "auto",
                  notebooks: str | Sequence[str] | None = None, overrides: dict[str, Any] | None = None,
                  results_page: bool = True, timeout_s: int | None = None, experiments: bool = True,
                  workers: int | None = None, log: Callable[[str], None] = print) -> list[Path]:
    """Execute the notebooks for each dataset in order, then the cross-dataset results page.

    Notebooks 01–04 run for every dataset first (side by side on a CPU: ``workers``); when 05/06 are selected, the
    profile's ablation plan (:func:`shapnas.experiments.ablations.ablation_plan`: seeds, policies and ablation
    variants) and its transfer plan (:func:`shapnas.experiments.transfer.transfer_plan`, phantom data only) run on one
    Dask cluster for the datasets they cover before them, so they present measured runs; 05/06 of the datasets the plan does
    not cover are not executed (and so left out of the book). Each executed page gets a dataset-prefixed
    title and a provenance line (:func:`shapnas.book.pages.tag_for_book`).

    Args:
        datasets: dataset names, e.g. ``["acdc", "brats"]``.
        profile: ``smoke``, ``workshop`` or ``paper`` (values injected where a notebook has the parameter).
        seed: the run seed.
        root: the book root (holds ``_config.yml``, ``notebooks/`` and ``book/``).
        data_dirs: dataset -> its root in the official layout; a dataset not named uses phantom data.
        results_root: the results folder.
        device: ``auto``, ``cpu`` or ``cuda[:i]``.
        notebooks: a selection such as ``"01,02"``; ``None`` runs all six.
        overrides: further parameter values (config field names), e.g. ``{"search_epochs": 20}``.
        results_page: also execute ``book/results.ipynb`` into ``book/datasets/results.ipynb`` and write the
            introduction's findings table (:mod:`shapnas.book.findings`) and the workshop page's measured
            values (:mod:`shapnas.book.workshop_values`).
        timeout_s: per-cell time limit.
        experiments: run the ablation plan before notebooks 05/06 (False: they show what exists).
        workers: datasets whose notebooks 01–04 run side by side (:func:`notebook_lanes`; None: one per core on a
            CPU, each kernel single-threaded on 2 cores, and one at a time on a GPU). A figure depends on its
            kernel's thread count in its last digits.
        log: where progress lines go (a count, and the time left estimated from the notebooks so far).

    Returns:
        The executed copies in the book's source tree, in execution order.

    Raises:
        ValueError: a bad option (unknown field or value, a data folder of a dataset not selected, a data folder
            missing or not in its dataset's layout), raised before any notebook runs.
        NotebookError: a notebook failed (its path, the cell, the error and the failing copy, kept in the
            results folder, are in the message); the book's copy of that page is left as it was.
    """
    root = Path(root).resolve()
    data_dirs = {name: str(path) for name, path in (data_dirs or {}).items()}
    overrides = convert_values(RetrainConfig, overrides or {})  # unknown names and wrong types fail here
    given = set(load_profile(profile)) | set(BASE_PARAMETERS) | set(overrides)
    check_data_dirs(datasets, data_dirs)  # before any notebook runs: a wrong folder fails in a second
    base = {"seed": seed, "results_root": str(Path(results_root).resolve()), "device": device, **overrides}

    def cfg_for(dataset: str) -> RetrainConfig:
        return resolve_config(RetrainConfig, profile, base, dataset=dataset, data_dir=data_dirs.get(dataset, ""))

    def command_for(dataset: str, stem: str) -> str:
        return reproduce_command([dataset], profile=profile, seed=seed, notebooks=[stem], overrides=overrides,
                                 data_dirs=[dataset] if dataset in data_dirs else [])

    jobs = _jobs(datasets, select_notebooks(notebooks), root, cfg_for, given, command_for)
    jobs.sort(key=lambda job: job.source.stem in EXPERIMENT_NOTEBOOKS)  # stable: 01–04 of every dataset first
    if experiments:
        jobs = _without_unplanned(jobs, profile, log)
    if results_page:
        source = root / "book" / f"{RESULTS_NOTEBOOK}.ipynb"
        output = executed_path(root, None, RESULTS_NOTEBOOK)
        values = {"results_root": _portable(base["results_root"], output.parent, root), "profile": profile}
        command = reproduce_command(datasets, profile=profile, seed=seed, overrides=overrides, data_dirs=list(data_dirs))
        jobs.append(_Job("all datasets results", source, output, Path(base["results_root"]) / "executed" /
                         f"{RESULTS_NOTEBOOK}.ipynb", values, command=command))
    numbered = list(enumerate(jobs, start=1))
    per_dataset = [(n, j) for n, j in numbered if j.dataset is not None and j.source.stem not in EXPERIMENT_NOTEBOOKS]
    lanes = notebook_lanes(workers, device, len({j.dataset for _, j in per_dataset}))
    written: list[Path] = []
    seconds: list[float] = []
    if lanes > 1:  # 01–04 of several datasets side by side, each kernel with its share of the cores
        log(f"notebooks 01–04 of {len({j.dataset for _, j in per_dataset})} datasets, {lanes} side by side, "
            f"{lane_threads(lanes)} thread(s) each (their lines go to standard error) ...")
        written += _run_lanes(per_dataset, len(jobs), lanes, timeout_s=timeout_s, root=root, profile=profile)
        numbered = [(n, j) for n, j in numbered if (n, j) not in per_dataset]
    ran_experiments = not experiments
    for number, job in numbered:
        if not ran_experiments and job.source.stem in EXPERIMENT_NOTEBOOKS:
            _run_experiments(datasets, profile, base, data_dirs, log)
            ran_experiments = True
        log(f"[{number}/{len(jobs)}] {job.label}: running {job.source.name}{_time_left(seconds, len(jobs) - number + 1)}"
            " ...")
        seconds.append(_execute(job, number, len(jobs), timeout_s=timeout_s, root=root, profile=profile, log=log))
        written.append(job.output)
    if results_page:
        from shapnas.book.findings import write_findings
        from shapnas.book.workshop_values import snippet_dir, write_workshop_snippets

        log(f"findings for the introduction -> {write_findings(root, base['results_root'], profile)}")
        write_workshop_snippets(root, base["results_root"], profile)
        log(f"the workshop page's measured values -> {snippet_dir(root)}")
    return written
