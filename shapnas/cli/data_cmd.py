"""``python -m shapnas data``: load a dataset (phantom by default), split it and print a summary."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_parser", "run", "format_summary"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``data``."""
    from shapnas.cli.common import add_data_dir_argument
    from shapnas.config.names import DATASET_NAMES

    parser = subparsers.add_parser(
        "data", help="load, split and summarise a dataset",
        description="Load every case as 2D slices (cached under <results>/cache), create or reuse "
                    "<results>/<dataset>/splits.json, and print patients and slices per split, class frequencies "
                    "and intensity ranges. Without --data-dir the phantom data is written and used.",
        epilog="Examples:\n  python -m shapnas data --dataset acdc\n"
               "  python -m shapnas data --dataset kits --data-dir /data/kits23 --slice-size 128\n"
               "  python -m shapnas data --dataset msd --data-dir /data/Task01_BrainTumour --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=DATASET_NAMES, help="dataset name")
    add_data_dir_argument(parser)
    parser.add_argument("--results", default="results", help="results folder (default: results)")
    parser.add_argument("--slice-size", type=int, default=64, help="square slice size, multiple of 16 (default: 64)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def format_summary(summary: dict[str, Any]) -> str:
    """A readable multi-line rendering of :func:`shapnas.data.prepared.summarize`."""
    lines = [f"{summary['dataset']} ({summary['modality']}) from {summary['data_dir']}",
             f"channels: {', '.join(summary['channels'])}; slice size {summary['slice_size']}",
             f"{'split':8} {'patients':>8} {'cases':>6} {'slices':>7}"]
    for name, row in summary["splits"].items():
        lines.append(f"{name:8} {row['patients']:>8} {row['cases']:>6} {row['slices']:>7}")
    lines.append(f"{'class':22} {'pixels':>9} {'slices':>7}")
    for name, share in summary["class_frequencies"].items():
        lines.append(f"{name:22} {share:>9.4%} {summary['slices_with_class'][name]:>7}")
    lines.append(f"{'channel':10} {'min':>8} {'p1':>8} {'p99':>8} {'max':>8}")
    for name, r in summary["intensity"].items():
        lines.append(f"{name:10} {r['min']:>8.3f} {r['p1']:>8.3f} {r['p99']:>8.3f} {r['max']:>8.3f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Prepare the data and print its summary."""
    from shapnas.cli.common import parse_data_dirs
    from shapnas.config.stage_configs import DataConfig
    from shapnas.data.prepared import prepare_data, summarize

    data_dir = parse_data_dirs(args.data_dirs, [args.dataset]).get(args.dataset, "")
    cfg = DataConfig(dataset=args.dataset, data_dir=data_dir, results_root=args.results,
                     slice_size=args.slice_size)
    summary = summarize(prepare_data(cfg))
    print(json.dumps(summary) if args.json else format_summary(summary))
    return 0
