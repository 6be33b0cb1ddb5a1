"""``python -m shapnas summary``: every finished evaluation under a results folder."""

from __future__ import annotations

import argparse
import json

from shapnas.cli.common import add_setting_argument, setting_folder_arg
from shapnas.config.stage_configs import PROFILE_NAMES

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``summary``."""
    parser = subparsers.add_parser(
        "summary", help="table (or JSON) of every finished evaluation",
        description="One record per finished eval stage: dataset, backbone, seed, method, profile, run_dir (the "
                    "seed folder), model_dir (the stage folder of the evaluated model, what predict --run takes), "
                    "dice_mean, dice_per_class, hd95_mean, search_wall_s, epochs, genotype, test_patients, "
                    "dice_patient_mean; IAC records add dice_vs_backbone and dice_vs_finetune: {mean, ci_low, "
                    "ci_high}, the paired difference in Dice (fraction) with its 95% bootstrap interval over "
                    "the test patients (null where that arm was not evaluated), and dice_vs_baselines the same against each other "
                    "backbone family evaluated on the same dataset and seed (e.g. attention_unet, basic_unet_plus_plus: "
                    "python -m shapnas evaluate --backbone attention_unet --target backbone); setting, target_train_patients and "
                    "source_drop say which setting a record comes from, patient_dice holds its per-patient Dice and "
                    "seeds the training runs behind its interval (1). --pooled pools each method's seeds instead, "
                    "with two-level bootstrap intervals (seeds, then patients). Results of different profiles are "
                    "never mixed: a folder holding several needs --profile.",
        epilog="Examples:\n  python -m shapnas summary --results results\n"
               "  python -m shapnas summary --json --profile smoke\n"
               "  python -m shapnas summary --setting transfer-n8 --pooled",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="results", help="results folder (default: results)")
    parser.add_argument("--json", action="store_true", help="print one JSON list")
    parser.add_argument("--profile", default=None, choices=(*PROFILE_NAMES, "custom"),
                        help="only evaluations of this profile (needed when the folder holds several)")
    add_setting_argument(parser)
    parser.add_argument("--pooled", action="store_true",
                        help="one record per method, pooled over its seeds with two-level bootstrap intervals")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the summary."""
    from shapnas.experiments.intervals import interval_bracket
    from shapnas.experiments.summary import collect_summary, pooled_summary

    setting = setting_folder_arg(args.setting)
    records = collect_summary(args.results, profile=args.profile, setting=setting)
    if args.pooled:
        records = pooled_summary(records)
    if args.json:
        print(json.dumps(records))
        return 0
    if args.pooled:
        from shapnas.experiments.transfer import format_transfer_table

        print(format_transfer_table(records) if records else f"no finished evaluations under {args.results}")
        return 0
    if not records:
        print(f"no finished evaluations under {args.results}")
        return 0
    print(f"{'dataset':8} {'backbone':10} {'N':>3} {'seed':>4} {'method':18} {'dice':>6} {'hd95':>7} {'search_s':>9} {'epochs':>6} "
          f"{'n':>3} {'vs backbone':>22} {'vs finetune':>22}")
    for r in records:
        hd = "nan" if r["hd95_mean"] is None else f"{r['hd95_mean']:.2f}"
        dice = "nan" if r["dice_mean"] is None else f"{r['dice_mean']:.3f}"
        wall = "" if r["search_wall_s"] is None else f"{r['search_wall_s']:.1f}"
        print(f"{r['dataset']:8} {r['backbone']:10} {r['target_train_patients'] or '-':>3} {r['seed']:>4} "
              f"{r['method']:18} {dice:>6} {hd:>7} {wall:>9} "
              f"{r['epochs'] or '':>6} {r.get('test_patients', ''):>3} {interval_bracket(r.get('dice_vs_backbone'), '', scale=1, digits=3):>22} "
              f"{interval_bracket(r.get('dice_vs_finetune'), '', scale=1, digits=3):>22}")
    print("N: labelled target patients of a transfer run (- for the same site); vs backbone / vs finetune: mean "
          "paired Dice difference [95% bootstrap interval] over the n test patients")
    return 0
