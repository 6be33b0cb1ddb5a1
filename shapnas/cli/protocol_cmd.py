"""``python -m shapnas protocol``: the training-protocol study (augmentation × backbone family) on Dask workers."""

from __future__ import annotations

import argparse
import json

from shapnas.cli.common import add_plan_arguments, parse_data_dirs, parse_names
from shapnas.config.stage_configs import RetrainConfig

__all__ = ["add_parser", "run"]

EXAMPLES = """Examples:
  python -m shapnas protocol --profile smoke
  python -m shapnas protocol --profile workshop --datasets kits
  python -m shapnas protocol --profile paper --scheduler tcp://head:8786

Runs land in <results>/ablations/protocol/augmentation-<none|standard>/<dataset>/<backbone>/seed-<k>/; the book's
page "Training as the field does it" shows them. A finished job is not run again."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``protocol``."""
    parser = subparsers.add_parser(
        "protocol", help="augmentation x backbone family: backbone, fine-tuned and IAC arms over seeds, with intervals",
        description="For every augmentation (none, standard), backbone family (e.g. basic_unet, attention_unet, "
                    "basic_unet_plus_plus), dataset and seed of the profile's protocol plan "
                    "(shapnas.experiments.protocol.protocol_plan): pre-train the backbone, fine-tune it, search and "
                    "re-train the Shapley-pruned cell, and evaluate the three on the test patients; then print, per "
                    "dataset, each arm's Dice pooled over seeds, IAC against the backbone and the fine-tuned one, and "
                    "the effect of augmentation on each arm, with 95% two-level bootstrap intervals (seeds, then "
                    "patients).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_plan_arguments(parser)
    parser.add_argument("--table-only", action="store_true", help="print the table of what has run; run nothing")
    parser.add_argument("--json", action="store_true", help="print the pooled records as one JSON list")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the plan (unless ``--table-only``) and print the table (or JSON); 1 if any job failed or was skipped."""
    from shapnas.config.overrides import parse_overrides
    from shapnas.experiments.protocol import (format_protocol_table, protocol_findings, protocol_plan,
                                              protocol_records, run_protocol)
    from shapnas.runs.files import json_safe

    plan = protocol_plan(args.profile)
    datasets = parse_names(args.datasets, plan.datasets, "--datasets") if args.datasets else None
    failed = False
    if not args.table_only:
        results = run_protocol(plan, results=args.results, scheduler=args.scheduler, workers=args.workers,
                               datasets=datasets, data_dirs=parse_data_dirs(args.data_dirs, datasets or plan.datasets),
                               overrides=parse_overrides(args.overrides, RetrainConfig))
        failed = any(r.status in ("failed", "skipped") for r in results)
    records = [r for r in protocol_records(args.results, plan) if datasets is None or r["dataset"] in datasets]
    if args.json:
        print(json.dumps(json_safe(records)))
    else:
        print(format_protocol_table(records))
        for sentence in protocol_findings(records):
            print(sentence)
    return 1 if failed else 0
