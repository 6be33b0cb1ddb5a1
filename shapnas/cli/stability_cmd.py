"""``python -m shapnas stability``: how stable the searched cells are across seeds, per dataset and policy."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from shapnas.cli.common import add_setting_argument, setting_folder_arg
from shapnas.config.stage_configs import PROFILE_NAMES
from shapnas.runs.files import json_safe

__all__ = ["add_parser", "run"]

COLUMNS = (("modal_agreement", "agree"), ("chance_modal_agreement_p95", "chance"), ("argmax_agreement", "argmax"),
           ("chance_argmax_agreement_p95", "chance"), ("jaccard", "jaccard"), ("chance_jaccard_p95", "chance"),
           ("js", "js"), ("kendall", "kendall"), ("spearman", "spearman"), ("dice_mean", "dice"),
           ("dice_std", "dice_sd"))


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``stability``."""
    parser = subparsers.add_parser(
        "stability", help="stability of the found cells across seeds (per dataset and policy)",
        description="Read every finished search-<policy> stage (genotype, final op probabilities, last Shapley "
                    "round) and its eval-<policy> Dice, and report per (dataset, backbone, policy): modal-op "
                    "agreement, mean pairwise Jaccard of the genotypes, mean pairwise JS divergence of the op "
                    "distributions, rank correlation of Shapley values, mean and std of test Dice, and the chance "
                    "level of each agreement metric (chance_*_p95: 95th percentile over random genotypes of the "
                    "same shape). Cells that differ only by swapping the inputs s0 and s1 count as equal when "
                    "both are made from the skip tensor.",
        epilog="Examples:\n  python -m shapnas stability --results results\n"
               "  python -m shapnas stability --results results --profile workshop --json\n"
               "  python -m shapnas stability --setting transfer-n8   # the searches of a transfer run's seeds",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="results", help="results folder (default: results)")
    parser.add_argument("--json", action="store_true", help="print one JSON list (NaN as null)")
    parser.add_argument("--profile", default=None, choices=(*PROFILE_NAMES, "custom"),
                        help="only searches of this profile (needed when the folder holds several)")
    add_setting_argument(parser)
    parser.set_defaults(handler=run)


def _cell(value: Any) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def run(args: argparse.Namespace) -> int:
    """Print the stability report (a table, or JSON with ``--json``)."""
    from shapnas.experiments.stability.report import stability_report
    from shapnas.runs.records import collect_stability_records

    records = collect_stability_records(args.results, profile=args.profile, setting=setting_folder_arg(args.setting))
    report = stability_report(records)
    if args.json:
        print(json.dumps(json_safe(report)))
        return 0
    if not report:
        print(f"no finished searches under {args.results}")
        return 0
    header = (f"{'dataset':8} {'backbone':10} {'N':>3} {'policy':8} {'seeds':>5} "
              + " ".join(f"{n:>8}" for _, n in COLUMNS))
    print(header)
    for row in report:
        cells = " ".join(f"{_cell(row[key]):>8}" for key, _ in COLUMNS)
        print(f"{row['dataset']:8} {str(row['backbone']):10} {row['target_train_patients'] or '-':>3} "
              f"{row['policy']:8} {row['num_seeds']:>5} {cells}")
    print("N: labelled target patients of a transfer run (- for the same site).")
    print("chance: the 95th percentile of the metric to its left over random genotypes of the same shape.")
    print("agree: modal-op agreement of the genotypes' edges; argmax: of every edge's arg-max op; jaccard: mean "
          "pairwise of (node, src, op) triples; js: mean pairwise JS divergence of the final op distributions; "
          "kendall/spearman: rank correlation of the last Shapley round; dice/dice_sd: test Dice over seeds.")
    return 0
