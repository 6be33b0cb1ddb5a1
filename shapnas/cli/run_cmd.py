"""``python -m shapnas run``: execute the companion notebooks with papermill for one or more datasets."""

from __future__ import annotations

import argparse
import sys

from shapnas.cli.common import add_data_dir_argument, add_set_argument, parse_data_dirs, parse_names
from shapnas.config.names import DATASET_NAMES
from shapnas.config.overrides import parse_overrides
from shapnas.config.stage_configs import PROFILE_NAMES, RetrainConfig

__all__ = ["add_parser", "run"]

EXAMPLES = """Examples:
  python -m shapnas run --datasets acdc --profile smoke
  python -m shapnas run --datasets acdc,brats,kits,amos --profile workshop --seed 0
  python -m shapnas run --datasets acdc --data-dir /data/ACDC/database --profile paper --device cuda
  python -m shapnas run --datasets acdc,kits --data-dir acdc=/data/ACDC/database --data-dir kits=/data/kits23
  python -m shapnas run --datasets kits --profile workshop --notebooks 01,02
  python -m shapnas run --datasets acdc --profile workshop --set shapley_permutations=8"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``run``."""
    parser = subparsers.add_parser(
        "run", help="execute the notebooks (papermill) into the book, datasets side by side on a CPU",
        description="Execute notebooks/01_data ... 04_shapley_pruning for each dataset with the profile's "
                    "parameters (several datasets side by side on a CPU: --workers), then the profile's ablation "
                    "plan (seeds, policies, variants) and transfer plan (every arm of a new site with few labelled "
                    "patients, over seeds) on one local Dask cluster for the datasets they cover, then "
                    "05_ablations and 06_stability, then the "
                    "cross-dataset results page. Executed copies go to book/datasets/<dataset>/ and to "
                    "the run directory's executed/ folder; finished pipeline stages are skipped. Data folders and "
                    "options are checked before anything runs; a notebook that fails leaves the book's page as it "
                    "was and its failing copy (<notebook>.failed.ipynb) in the run directory's executed/ folder. "
                    "Each page names the command that reproduces it and lists the parameters it accepts.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", "--dataset", dest="datasets", required=True,
                        help=f"comma-separated dataset names ({', '.join(DATASET_NAMES)}); --dataset D is the same")
    add_data_dir_argument(parser)
    parser.add_argument("--results", default="results", help="results folder (default: results)")
    parser.add_argument("--profile", default="workshop", choices=PROFILE_NAMES,
                        help="parameter profile (default: workshop)")
    parser.add_argument("--seed", type=int, default=0, help="run seed (default: 0)")
    parser.add_argument("--notebooks", default=None, help="comma-separated selection, e.g. 01,02 (default: all)")
    parser.add_argument("--device", default="auto", help="auto (default: cuda when present), cpu or cuda:i")
    parser.add_argument("--root", default=".", help="book root holding _config.yml, notebooks/ and book/ (default: .)")
    add_set_argument(parser, " (a notebook parameter)")
    parser.add_argument("--timeout", type=int, default=None, help="per-cell time limit in seconds (default: none)")
    parser.add_argument("--workers", type=int, default=None,
                        help="datasets whose notebooks 01-04 run side by side (default: one per CPU core, the cores "
                             "shared out as kernel threads; 1 on a GPU)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Execute the notebooks; a failed cell prints the notebook, the cell, the error and where its failing copy
    was kept, and returns 1 (a wrong data folder or option raises ValueError before anything runs: exit 2)."""
    from shapnas.book.run_notebooks import NotebookError, run_notebooks

    datasets = parse_names(args.datasets, DATASET_NAMES, "--datasets")
    try:
        run_notebooks(datasets, profile=args.profile, seed=args.seed, root=args.root,
                      data_dirs=parse_data_dirs(args.data_dirs, datasets), results_root=args.results,
                      device=args.device, notebooks=args.notebooks,
                      overrides=parse_overrides(args.overrides, RetrainConfig), timeout_s=args.timeout,
                      workers=args.workers,
                      log=lambda line: print(line, file=sys.stderr, flush=True))
    except NotebookError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("all notebooks executed; build the book with: python -m shapnas book")
    return 0
