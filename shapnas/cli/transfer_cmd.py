"""``python -m shapnas transfer``: every arm of the transfer setting over several seeds, pooled with intervals."""

from __future__ import annotations

import argparse
import json

from shapnas.cli.common import add_run_arguments, config_from_args
from shapnas.config.names import TRANSFER_ARMS

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``transfer``."""
    parser = subparsers.add_parser(
        "transfer", help="adapt a source-site backbone to a target site: every arm over seeds, with intervals",
        description="The backbone is pre-trained on the source site (--data-dir, or the phantoms' site a) and "
                    "adapted to the target site (--set target_data_dir=..., or the phantoms' site b) with "
                    "target_train_patients labelled patients (W, A and V), then tested on the target site's other "
                    "patients. Every arm runs for each seed (finished stages are reused): "
                    f"{', '.join(TRANSFER_ARMS)}. The table pools the seeds: mean Dice and the paired differences "
                    "against the source backbone and the fine-tuned one, with 95% two-level bootstrap intervals "
                    "(seeds, then patients within a seed). Stage folders: <results>/<dataset>/<backbone>/seed-<k>/"
                    "transfer-n<N>/.",
        epilog="Examples:\n  python -m shapnas transfer --dataset acdc --profile workshop --seeds 0 1 2\n"
               "  python -m shapnas transfer --dataset kits --profile workshop --seeds 0 1 2 "
               "--set target_train_patients=4\n"
               "  python -m shapnas transfer --dataset acdc --data-dir /data/site_a --profile paper "
               "--set target_data_dir=/data/site_b --seeds 0 1 2",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, policy=False)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="training seeds (default: 0 1 2; at least 3 for intervals that carry the seed variance)")
    parser.add_argument("--arms", nargs="+", default=list(TRANSFER_ARMS), choices=TRANSFER_ARMS,
                        help="arms to run (default: all)")
    parser.add_argument("--json", action="store_true", help="print the pooled records as one JSON list")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the arms and print the pooled table (or JSON)."""
    from shapnas.experiments.transfer import format_transfer_table, run_transfer

    cfg = config_from_args(args).replace(setting="transfer")
    records = run_transfer(cfg, args.seeds, args.arms, report=lambda line: None if args.json else print(line))
    print(json.dumps(records) if args.json else format_transfer_table(records))
    return 0
