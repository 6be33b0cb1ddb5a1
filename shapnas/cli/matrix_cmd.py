"""``python -m shapnas matrix``: every stage of datasets × seeds × policies, on Dask workers (or listed)."""

from __future__ import annotations

import argparse

from shapnas.config import DATASET_NAMES, POLICY_NAMES, PROFILE_NAMES

__all__ = ["add_parser", "run"]

EXAMPLES = """Examples:
  python -m shapnas matrix --datasets acdc --seeds 0 --policies none,shapley --profile smoke
  python -m shapnas matrix --datasets acdc,brats,kits,amos --seeds 0,1,2 --profile workshop --workers 2
  python -m shapnas matrix --datasets acdc,brats --seeds 0,1,2 --profile paper --scheduler tcp://head:8786
  python -m shapnas matrix --datasets acdc --profile paper --data-dir acdc=/data/ACDC/database --gpus-per-worker
  python -m shapnas matrix --datasets acdc,kits --seeds 0,1,2 --profile paper --stages pretrain --list

A finished stage (metrics.json present) is not run again: run the same command to finish what is missing.
Logs: <results>/logs/<job-id>.log. Many machines or SLURM: see the book's "Scale-out" page."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``matrix``."""
    parser = subparsers.add_parser(
        "matrix", help="run (or --list) every stage of datasets x seeds x policies on Dask workers",
        description="Expand datasets x seeds x policies into stage jobs (pretrain, finetune, evaluate backbone and "
                    "finetune; per policy search, retrain, evaluate), each a plain 'python -m shapnas <stage>' "
                    "command, and run them on a local Dask cluster or an existing scheduler, each once its "
                    "prerequisites finished. One job per worker at a time (one per GPU with GPU workers).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", required=True, help=f"comma-separated ({', '.join(DATASET_NAMES)})")
    parser.add_argument("--seeds", default="0", help="comma-separated run seeds (default: 0)")
    parser.add_argument("--policies", default=",".join(POLICY_NAMES),
                        help=f"comma-separated pruning policies (default: {','.join(POLICY_NAMES)})")
    parser.add_argument("--profile", default="workshop", choices=PROFILE_NAMES, help="parameter profile (default: workshop)")
    parser.add_argument("--results", default="results", help="results folder, on a file system every worker "
                                                              "sees at the same path (default: results)")
    parser.add_argument("--backbone", default=None, help="basic_unet (default) or unet")
    parser.add_argument("--data-dir", dest="data_dirs", action="append", default=[], metavar="DATASET=DIR",
                        help="a dataset's root in its official layout (repeatable; default: phantom data)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field in every stage, e.g. --set search_epochs=20 (repeatable)")
    parser.add_argument("--stages", default=None,
                        help="comma-separated stage kinds to keep (pretrain,finetune,search,retrain,evaluate); "
                             "default: all")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="an existing Dask scheduler, e.g. tcp://head:8786 (default: a local cluster)")
    parser.add_argument("--workers", type=int, default=None,
                        help="workers of the local cluster (default: one per GPU, else 1)")
    parser.add_argument("--gpus-per-worker", action="store_true",
                        help="each worker has one GPU: a job needs the worker resource GPU=1 (detected when the "
                             "workers see CUDA devices)")
    parser.add_argument("--retries", type=int, default=0, help="re-run a failed job this many times (default: 0)")
    parser.add_argument("--list", action="store_true",
                        help="print one row per job (<id> TAB <command>) and exit without running")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or per-job lines")
    parser.set_defaults(handler=run)


def _names(text: str, allowed: tuple[str, ...], option: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if not names or unknown:
        raise ValueError(f"{option} {text!r}; expected comma-separated names from {', '.join(allowed)}")
    return list(dict.fromkeys(names))


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds {text!r}; expected comma-separated integers such as 0,1,2") from None
    if not seeds or min(seeds) < 0:
        raise ValueError(f"--seeds {text!r}; expected non-negative integers")
    return list(dict.fromkeys(seeds))


def _data_dirs(items: list[str], datasets: list[str]) -> dict[str, str]:
    dirs = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or name.strip() not in datasets or not path.strip():
            raise ValueError(f"--data-dir {item!r}; expected DATASET=DIR with DATASET one of {', '.join(datasets)}")
        dirs[name.strip()] = path.strip()
    return dirs


def run(args: argparse.Namespace) -> int:
    """List or run the matrix; print a summary table; 1 if any job failed or was skipped."""
    from shapnas.matrix import STAGE_KINDS, build_jobs, format_rows, format_summary, open_client, run_jobs

    datasets = _names(args.datasets, DATASET_NAMES, "--datasets")
    stages = _names(args.stages, STAGE_KINDS, "--stages") if args.stages else None
    if args.retries < 0:
        raise ValueError(f"--retries {args.retries}; expected a non-negative integer")
    jobs = build_jobs(datasets, _seeds(args.seeds), _names(args.policies, POLICY_NAMES, "--policies"),
                      profile=args.profile, results=args.results, backbone=args.backbone, overrides=args.overrides,
                      data_dirs=_data_dirs(args.data_dirs, datasets), stages=stages)
    if args.list:
        print(format_rows(jobs))
        return 0
    if all(job.done() for job in jobs):
        print(f"all {len(jobs)} jobs are done (metrics.json present); nothing to run")
        return 0
    with open_client(args.scheduler, args.workers, args.gpus_per_worker) as (client, placement):
        results = run_jobs(jobs, client, placement=placement, retries=args.retries, progress=not args.no_progress)
    print(format_summary(results))
    return 1 if any(r.status in ("failed", "skipped") for r in results) else 0
