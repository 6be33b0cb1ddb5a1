"""How far a workshop backbone gets on each phantom flavour: pre-train until V Dice plateaus, score the test.

We want phantoms a converged tiny U-Net can learn (roughly 0.6–0.9 mean foreground Dice, every
class above 0): this pre-trains the profile's backbone with its step budget and patience (V selection on
whole V volumes, patient-level Dice) and evaluates the selected backbone on the whole test volumes.
Prints one JSON object last: dataset, train_patients, test_patients, val_dice, test dice_mean, dice_per_class,
steps, best_step, stopped, pretrain_s, and the selected backbone's generalisation gap: ``train_slice_dice`` (Dice
pooled over the training slices, W and A) against ``val_slice_dice`` (the same on the V slices). A gap far larger
than the room to a wider backbone means the room is one of generalisation, which nothing trained on the same
training patients (fine-tuning, cells) is placed to close (book, calibration notes, "Is there room for the cells?").

    python benchmarks/backbone_plateau.py --dataset acdc --profile workshop --results results/plateau
"""

from __future__ import annotations

import json
import time

from shapnas.config.arguments import benchmark_config, benchmark_parser
from shapnas.config.stage_configs import RetrainConfig
from shapnas.data.prepared import prepare_data
from shapnas.networks.checkpoints import load_model
from shapnas.pipeline import run_evaluate, run_pretrain
from shapnas.runs.files import load_json
from shapnas.runtime import pick_device
from shapnas.training.train import validation_dice


def main() -> None:
    """Parse arguments, pre-train, evaluate, print the JSON record."""
    args = benchmark_parser(__doc__, results="results/plateau").parse_args()
    cfg = benchmark_config(args, RetrainConfig)
    tick = time.perf_counter()
    pretrain_dir = run_pretrain(cfg)
    pretrain = load_json(pretrain_dir / "metrics.json")
    pretrain_s = time.perf_counter() - tick
    device = pick_device(cfg.device)
    data = prepare_data(cfg)
    backbone, _ = load_model(pretrain_dir / "model.pt", device)
    num_classes = len(data.spec.class_names)
    gap = {"train_slice_dice": validation_dice(backbone, *data.training_slices(), num_classes, device, cfg.batch_size),
           "val_slice_dice": validation_dice(backbone, *data.slices("val"), num_classes, device, cfg.batch_size)}
    tick = time.perf_counter()
    evaluation = load_json(run_evaluate(cfg, "backbone") / "metrics.json")
    patients = {c["patient_id"] for c in evaluation["per_case"]}
    print(json.dumps({
        "dataset": args.dataset, "train_patients": len(data.splits["train_w"]) + len(data.splits["train_a"]),
        "test_patients": len(patients), "val_dice": pretrain["val_dice"], **gap,
        "dice_mean": evaluation["dice_mean"], "dice_per_class": evaluation["dice_per_class"],
        "steps": pretrain.get("steps"), "best_step": pretrain.get("best_step"), "stopped": pretrain.get("stopped"),
        "pretrain_s": pretrain_s, "eval_s": time.perf_counter() - tick}))


if __name__ == "__main__":
    main()
