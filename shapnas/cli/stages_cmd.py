"""``python -m shapnas pretrain|finetune|normtune|scratch|search|retrain|evaluate``: one stage each, runnable without
notebooks."""

from __future__ import annotations

import argparse
import json

from shapnas.cli.common import add_run_arguments, config_from_args
from shapnas.runs.files import load_json
from shapnas.runs.identity import eval_targets

__all__ = ["add_parser"]

EXAMPLES = {
    "pretrain": "python -m shapnas pretrain --dataset acdc --profile smoke\n"
                "  python -m shapnas pretrain --dataset brats --data-dir /data/BraTS2021 --profile paper --seed 1\n"
                "  python -m shapnas pretrain --dataset acdc --set backbone_checkpoint=my_unet.pt",
    "finetune": "python -m shapnas finetune --dataset acdc --profile smoke\n"
                "  python -m shapnas finetune --dataset acdc --profile smoke --set setting=transfer target_train_patients=4",
    "normtune": "python -m shapnas normtune --dataset acdc --profile smoke --set setting=transfer",
    "scratch": "python -m shapnas scratch --dataset acdc --profile smoke --set setting=transfer",
    "search": "python -m shapnas search --dataset acdc --policy none --profile workshop\n"
              "  python -m shapnas search --dataset kits --policy shapley --profile workshop --set shapley_permutations=8",
    "retrain": "python -m shapnas retrain --dataset acdc --policy shapley --profile workshop",
    "evaluate": "python -m shapnas evaluate --dataset acdc --target shapley --profile workshop\n"
                "  python -m shapnas evaluate --dataset acdc --target finetune --profile workshop\n"
                "  python -m shapnas evaluate --dataset acdc --target shapley-joint --profile smoke --set setting=transfer",
}
HELP = {
    "pretrain": "pre-train the backbone U-Net (or take --set backbone_checkpoint=PATH)",
    "finetune": "fine-tune the backbone for the retrofit's budget (the fair baseline)",
    "normtune": "tune only the backbone's norms and biases (the parameter-efficient control)",
    "scratch": "train a backbone from scratch on the run's training patients alone",
    "search": "implant cells into the frozen backbone and search them (PC-DARTS + pruning policy)",
    "retrain": "re-train the discrete cell found by a search",
    "evaluate": "evaluate a model on the test patients (Dice, HD95 per class)",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the stage subcommands."""
    for name in EXAMPLES:
        parser = subparsers.add_parser(
            name, help=HELP[name], description=HELP[name] + ". A finished stage is reused when its stored config.json "
            "matches the requested config (over the fields the stage reads; results folder and device aside); "
            "otherwise the command stops and names the differing fields. The stages it needs run first.", epilog="Examples:\n  " + EXAMPLES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter)
        add_run_arguments(parser, policy=name in ("search", "retrain"))
        if name == "evaluate":
            parser.add_argument("--target", required=True, choices=eval_targets(),
                                help="which model: the backbone, the fine-tuned baseline, the parameter-efficient "
                                     "control (normtune), the backbone trained from scratch, or a policy's re-trained "
                                     "cell (<policy>-joint: re-trained with the backbone)")
        parser.set_defaults(handler=run, stage=name)


def run(args: argparse.Namespace) -> int:
    """Run the stage and print its metrics.json path and headline numbers."""
    from shapnas.experiments.job_entry import run_stage

    cfg = config_from_args(args)
    stage = run_stage(args.stage, cfg, getattr(args, "target", ""))
    metrics = load_json(stage / "metrics.json")
    headline = {k: metrics[k] for k in ("val_dice", "dice_mean", "hd95_mean", "epochs", "search_wall_s", "genotype_text")
                if k in metrics}
    print(f"{stage / 'metrics.json'}")
    print(json.dumps(headline, indent=1))
    return 0
