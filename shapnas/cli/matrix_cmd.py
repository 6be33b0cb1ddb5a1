"""``python -m shapnas matrix``: every stage of datasets × seeds × policies, on Dask workers (or listed)."""

from __future__ import annotations

import argparse

from shapnas.cli.common import BACKBONE_HELP, add_data_dir_argument, add_set_argument, parse_data_dirs, parse_names
from shapnas.config.names import DATASET_NAMES, POLICY_NAMES
from shapnas.config.stage_configs import PROFILE_NAMES, RetrainConfig

__all__ = ["add_parser", "run"]

EXAMPLES = """Examples:
  python -m shapnas matrix --datasets acdc --seeds 0 --policies none,shapley --profile smoke
  python -m shapnas matrix --datasets acdc,brats,kits,amos --seeds 0,1,2 --profile workshop --workers 2
  python -m shapnas matrix --datasets acdc,brats --seeds 0,1,2 --profile paper --scheduler tcp://head:8786
  python -m shapnas matrix --datasets acdc --profile paper --data-dir acdc=/data/ACDC/database --gpus-per-worker
  python -m shapnas matrix --datasets acdc,kits --seeds 0,1,2 --profile paper --stages pretrain --list

A finished stage (metrics.json present) is not run again: run the same command to finish what is missing.
Each job is written to <results>/jobs/<job-id>.json (stage kind, target, config) and runs as
'python -m shapnas.experiments.job_entry <that file>'; --list writes these files and prints the rows.
Logs: <results>/logs/<job-id>.log. Many machines or SLURM: see the book's "Scale-out" page (book/scale_out.md)."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``matrix``."""
    parser = subparsers.add_parser(
        "matrix", help="run (or --list) every stage of datasets x seeds x policies on Dask workers",
        description="Expand datasets x seeds x policies into stage jobs (pretrain, finetune, evaluate backbone and "
                    "finetune; per policy search, retrain, evaluate), each a stage kind with its config as data, "
                    "and run them on a local Dask cluster or an existing scheduler, each once its "
                    "prerequisites finished. One job per worker at a time (one per GPU with GPU workers).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", required=True, help=f"comma-separated ({', '.join(DATASET_NAMES)})")
    parser.add_argument("--seeds", default="0", help="comma-separated run seeds (default: 0)")
    parser.add_argument("--policies", default=",".join(POLICY_NAMES),
                        help=f"comma-separated pruning policies (default: {','.join(POLICY_NAMES)})")
    parser.add_argument("--profile", default="workshop", choices=PROFILE_NAMES, help="parameter profile (default: workshop)")
    parser.add_argument("--results", default="results", help="results folder, on a file system every worker "
                                                              "sees at the same path (default: results)")
    parser.add_argument("--backbone", default=None, help=BACKBONE_HELP)
    add_data_dir_argument(parser)
    add_set_argument(parser, " in every stage")
    parser.add_argument("--stages", default=None,
                        help="comma-separated stage kinds to keep (pretrain,finetune,search,retrain,evaluate); "
                             "default: all")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="an existing Dask scheduler, e.g. tcp://head:8786 (default: a local cluster)")
    parser.add_argument("--workers", type=int, default=None,
                        help="workers of the local cluster (default: one per GPU, else one per core, at most 8; on CPUs each job gets cores/N threads)")
    parser.add_argument("--gpus-per-worker", action="store_true",
                        help="each worker has one GPU: a job needs the worker resource GPU=1 (detected when the "
                             "workers see CUDA devices)")
    parser.add_argument("--retries", type=int, default=0, help="re-run a failed job this many times (default: 0)")
    parser.add_argument("--list", action="store_true",
                        help="write the job files and print one row per job (<id> TAB <command>); run nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or per-job lines")
    parser.set_defaults(handler=run)


def _seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (non-negative, duplicates dropped); ValueError otherwise."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds {text!r}; expected comma-separated integers such as 0,1,2") from None
    if not seeds or min(seeds) < 0:
        raise ValueError(f"--seeds {text!r}; expected non-negative integers")
    return list(dict.fromkeys(seeds))


def run(args: argparse.Namespace) -> int:
    """List or run the matrix; print a summary table; 1 if any job failed or was skipped."""
    from shapnas.config.overrides import parse_overrides
    from shapnas.experiments.dask_runner import open_client, run_jobs
    from shapnas.experiments.matrix import STAGE_KINDS, build_jobs, format_rows, format_summary, write_job_spec

    datasets = parse_names(args.datasets, DATASET_NAMES, "--datasets")
    stages = parse_names(args.stages, STAGE_KINDS, "--stages") if args.stages else None
    if args.retries < 0:
        raise ValueError(f"--retries {args.retries}; expected a non-negative integer")
    jobs = build_jobs(datasets, _seeds(args.seeds), parse_names(args.policies, POLICY_NAMES, "--policies"),
                      profile=args.profile, results=args.results, backbone=args.backbone,
                      overrides=parse_overrides(args.overrides, RetrainConfig),
                      data_dirs=parse_data_dirs(args.data_dirs, datasets), stages=stages)
    if args.list:
        for job in jobs:
            write_job_spec(job)
        print(format_rows(jobs))
        return 0
    if all(job.done() for job in jobs):
        print(f"all {len(jobs)} jobs are done (metrics.json present); nothing to run")
        return 0
    with open_client(args.scheduler, args.workers, args.gpus_per_worker) as (client, placement):
        results = run_jobs(jobs, client, placement=placement, retries=args.retries, progress=not args.no_progress)
    print(format_summary(results))
    return 1 if any(r.status in ("failed", "skipped") for r in results) else 0
