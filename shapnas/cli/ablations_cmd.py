"""``python -m shapnas ablations``: the profile's ablation plan (seeds, policies, variants) on Dask workers."""

from __future__ import annotations

import argparse

from shapnas.cli.common import BACKBONE_HELP, add_plan_arguments, parse_data_dirs, parse_names
from shapnas.config.stage_configs import RetrainConfig

__all__ = ["add_parser", "run"]

EXAMPLES = """Examples:
  python -m shapnas ablations --profile smoke
  python -m shapnas ablations --profile workshop --datasets acdc --list
  python -m shapnas ablations --profile paper --scheduler tcp://head:8786
  python -m shapnas ablations --profile paper --datasets acdc --data-dir acdc=/data/ACDC/database

Runs land in <results>/ablations/main/<dataset>/... (the policies, every seed of the plan) and in
<results>/ablations/<variant>/... (one setting of the shapley search changed); notebooks 05_ablations and
06_stability present them. A finished job is not run again."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``ablations``."""
    parser = subparsers.add_parser(
        "ablations", help="run the profile's ablations and seeds (policies, M, T/r, value, tau, alpha, K) on Dask",
        description="Expand the profile's ablation plan (shapnas.experiments.ablations.ablation_plan) into matrix jobs: every "
                    "policy for every seed of the plan, and the shapley search with one setting changed per "
                    "variant (permutations M, schedule T/r, value function, truncation tau, per-level alpha, "
                    "partial channels K), each re-using the main run's pre-trained backbone; then run them on a "
                    "local Dask cluster or an existing scheduler.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_plan_arguments(parser)
    parser.add_argument("--backbone", default=None, help=BACKBONE_HELP)
    parser.add_argument("--list", action="store_true",
                        help="write the job files and print one row per job (<id> TAB <command>); run nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or per-job lines")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """List or run the plan; print a summary table; 1 if any job failed or was skipped."""
    from shapnas.config.overrides import parse_overrides
    from shapnas.experiments.ablations import ablation_plan, build_ablation_jobs, run_ablations
    from shapnas.experiments.matrix import format_rows, format_summary, write_job_spec

    plan = ablation_plan(args.profile)
    datasets = parse_names(args.datasets, plan.datasets, "--datasets") if args.datasets else list(plan.datasets)
    options = {"backbone": args.backbone, "data_dirs": parse_data_dirs(args.data_dirs, datasets),
               "overrides": parse_overrides(args.overrides, RetrainConfig)}
    if args.list:
        main, variants = build_ablation_jobs(plan, results=args.results, datasets=datasets, **options)
        for job in main + variants:
            write_job_spec(job)
        print(format_rows(main + variants))
        return 0
    results = run_ablations(plan, results=args.results, datasets=datasets,
                            scheduler=args.scheduler, workers=args.workers, progress=not args.no_progress, **options)
    print(format_summary(results))
    return 1 if any(r.status in ("failed", "skipped") for r in results) else 0
