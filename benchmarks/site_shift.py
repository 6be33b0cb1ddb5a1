"""How much a backbone trained at one site loses at another: the site shift the transfer setting starts from.

Pre-trains the profile's backbone on the source site (all of today's training patients of ``data_dir`` or of the
phantoms' site ``a``, with the profile's step budget and V selection; ``shapnas.pipeline.run_pretrain``) and
evaluates it, with the package's evaluation (stacked 2D predictions, Dice per class or region on whole test
volumes, mean per patient), on the source site's test patients (``run_evaluate(cfg, "backbone")``) and on the
target site's test patients (``prepare_site_data(cfg, "target")``: ``target_data_dir`` or the phantoms' site
``b``). The phantoms' site ``b`` parameters (``shapnas/data/phantoms/sites.py``) were calibrated on one criterion
only: ``source_drop`` (source minus target patient-level mean foreground Dice) of at least 0.05.

Prints per-class figures, writes ``<results>/<dataset>/site-shift.json`` and prints one JSON object last:
dataset, profile, source_dice, target_dice, source_drop, source_test_patients, target_test_patients,
dice_per_class of each site, site_parameters, pretrain_val_dice, wall times.

    OMP_NUM_THREADS=1 python benchmarks/site_shift.py --dataset acdc --profile workshop --results results/site-shift
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from shapnas.config.arguments import benchmark_config, benchmark_parser
from shapnas.config.stage_configs import RetrainConfig
from shapnas.data.phantoms.sites import site_record
from shapnas.data.prepared import TARGET_PHANTOM_SITE, PreparedData, prepare_site_data
from shapnas.networks.checkpoints import load_model
from shapnas.pipeline import run_evaluate, run_pretrain
from shapnas.runs.files import dataset_dir, load_json, save_json
from shapnas.runtime import pick_device
from shapnas.training.evaluate import evaluate_model, patient_scores


def patient_mean(per_case: list[dict[str, Any]]) -> tuple[float, int]:
    """Mean patient-level Dice of evaluation records and the number of patients it averages.

    Args:
        per_case: ``per_case`` records of :func:`shapnas.training.evaluate.evaluate_model`.

    Returns:
        (mean over patients of :func:`shapnas.training.evaluate.patient_scores`, patients scored).
    """
    scores = list(patient_scores(per_case).values())
    return (float(np.mean(scores)) if scores else float("nan")), len(scores)


def evaluate_target(cfg: RetrainConfig, pretrain_model: Any) -> tuple[dict[str, Any], PreparedData]:
    """Evaluate the source-site backbone on the target site's test patients.

    Args:
        cfg: the run's config (``setting='transfer'``).
        pretrain_model: path of the pre-trained ``model.pt``.

    Returns:
        (the evaluation body of :func:`evaluate_model`, the target site's prepared data).

    Raises:
        ValueError: the target site's classes differ from the backbone's.
    """
    device = pick_device(cfg.device)
    backbone, record = load_model(pretrain_model, device)
    target = prepare_site_data(cfg, "target")
    trained = list(record["spec"]["class_names"])
    if trained != list(target.spec.class_names):
        raise ValueError(f"{target.data_dir}: target-site classes {list(target.spec.class_names)}; expected the "
                         f"backbone's {trained}")
    return evaluate_model(backbone, target.volumes["test"], target.spec, device, cfg.batch_size), target


def site_parameters(cfg: RetrainConfig) -> dict[str, Any]:
    """The target site's description: its folder for real data, the phantoms' site parameters otherwise."""
    if cfg.target_data_dir:
        return {"target_data_dir": cfg.target_data_dir}
    return {"site": TARGET_PHANTOM_SITE, **site_record(cfg.dataset, TARGET_PHANTOM_SITE)}


def main() -> None:
    """Parse arguments, pre-train on the source site, evaluate on both sites, print and save the record."""
    args = benchmark_parser(__doc__, results="results/site-shift").parse_args()
    cfg = benchmark_config(args, RetrainConfig, fixed={"setting": "transfer"})
    source_cfg = cfg.replace(setting="same_site", target_data_dir="")  # the source site's own stages
    tick = time.perf_counter()
    pretrain_dir = run_pretrain(source_cfg)
    pretrain_s = time.perf_counter() - tick
    tick = time.perf_counter()
    source = load_json(run_evaluate(source_cfg, "backbone") / "metrics.json")
    target, target_data = evaluate_target(cfg, pretrain_dir / "model.pt")
    eval_s = time.perf_counter() - tick
    source_dice, source_patients = patient_mean(source["per_case"])
    target_dice, target_patients = patient_mean(target["per_case"])
    for name, body, dice, patients in (("source", source, source_dice, source_patients),
                                       ("target", target, target_dice, target_patients)):
        classes = ", ".join(f"{k} {v:.3f}" for k, v in body["dice_per_class"].items())
        print(f"{name}: patient-level Dice {dice:.4f} over {patients} test patients ({classes})")
    record = {
        "dataset": cfg.dataset, "profile": cfg.profile, "seed": cfg.seed, "source_dice": source_dice,
        "target_dice": target_dice, "source_drop": source_dice - target_dice,
        "source_test_patients": source_patients, "target_test_patients": target_patients,
        "target_train_patients": len({p for name in ("train_w", "train_a", "val") for p in target_data.splits[name]}),
        "source_dice_per_class": source["dice_per_class"], "target_dice_per_class": target["dice_per_class"],
        "site_parameters": site_parameters(cfg),
        "pretrain_val_dice": load_json(pretrain_dir / "metrics.json")["val_dice"],
        "pretrain_s": pretrain_s, "eval_s": eval_s}
    save_json(dataset_dir(cfg.results_root, cfg.dataset) / "site-shift.json", record)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
