"""Search speed-up of Shapley-guided pruning over the full PC-DARTS search, measured in one process.

On the same data and the same pre-trained backbone, runs the full search (policy ``none``, the profile's
own search length, the one the book's 03_search uses) and the ``shapley`` search (its schedule and estimator
from the profile, ``--set`` to change them), re-trains and tests both discrete cells, and prints the
figures; the last line is one JSON object. With ``--seeds 0,1,2`` every seed runs and the last line holds
each seed's figures and the worst of them (lowest speed-up, highest overhead, largest Dice loss). Targets
(ours: speedup >= 4, shapley_overhead <= 0.15, dice_shapley >= dice_full - 0.01; ``dice_shapley_vs_full`` is
the paired difference over the test patients with its 95 % bootstrap interval (``shapnas.experiments.summary.paired_bootstrap``),
which says whether a Dice difference between the two cells is larger than its noise.

``speedup_if_shapley_free`` counts the Shapley rounds' time as 0 in the same run (what the schedule alone
gives); ``train_s``, ``eval_s``, ``shapley_s`` split the pruned search's wall-clock (the full search's split
is under ``full``). ``speedup_cpu`` is the same ratio in process CPU time, which other jobs sharing the
cores disturb less than wall-clock (run with ``OMP_NUM_THREADS`` fixed).

    python benchmarks/search_speed.py --dataset acdc --profile workshop --seed 0
    python benchmarks/search_speed.py --dataset kits --profile workshop --seeds 0,1,2
"""

from __future__ import annotations

import json
import time
from typing import Any

from shapnas.config.arguments import benchmark_config, benchmark_parser
from shapnas.config.stage_configs import RetrainConfig
from shapnas.experiments.summary import paired_bootstrap
from shapnas.pipeline import run_evaluate, run_pretrain, run_search
from shapnas.runs.files import load_json, read_jsonl
from shapnas.training.evaluate import patient_scores

PRINTED = ("speedup", "shapley_overhead", "speedup_if_shapley_free", "dice_full", "dice_shapley", "epochs_full",
           "epochs_shapley", "estimator", "train_s", "eval_s", "shapley_s", "full_genotype_settled_epoch",
           "shapley_rounds", "shapley_evals", "shapley_passes", "shapley_round_ms", "speedup_cpu")


def settled_epoch(history: list[dict]) -> int:
    """The last epoch at which the derived genotype changed."""
    last, previous = 0, None
    for record in history:
        if record["genotype"] != previous:
            last, previous = record["epoch"], record["genotype"]
    return last


def measure(cfg: RetrainConfig) -> dict[str, Any]:
    """Both searches of one seed on one backbone; re-train, test and compare them.

    Args:
        cfg: the run config (its ``policy`` is ignored; ``none`` and ``shapley`` both run).

    Returns:
        The seed's figures (see the module docstring).
    """
    run_pretrain(cfg)  # shared by both searches, not timed
    walls, cpus, metrics, dice, histories, patients = {}, {}, {}, {}, {}, {}
    for policy in ("none", "shapley"):
        policy_cfg = cfg.replace(policy=policy)
        start, cpu_start = time.perf_counter(), time.process_time()
        stage = run_search(policy_cfg, progress=False)
        walls[policy] = time.perf_counter() - start
        cpus[policy] = time.process_time() - cpu_start
        metrics[policy] = load_json(stage / "metrics.json")
        histories[policy] = read_jsonl(stage / "history.jsonl")
        evaluation = load_json(run_evaluate(policy_cfg, policy) / "metrics.json")
        dice[policy] = evaluation["dice_mean"]
        patients[policy] = patient_scores(evaluation.get("per_case", []))
        print(f"seed {cfg.seed} {policy:8} search {walls[policy]:7.1f} s  epochs {metrics[policy]['epochs']:3d}  "
              f"shapley {metrics[policy]['time_shapley_s']:6.1f} s  test dice {dice[policy]:.4f}")
        print(f"         genotype: {metrics[policy]['genotype_text']}")
    rounds = [h["shapley"] for h in histories["shapley"] if h["shapley"]]
    shap = metrics["shapley"]
    return {
        "dataset": cfg.dataset, "seed": cfg.seed, "estimator": cfg.shapley_estimator,
        "speedup": walls["none"] / walls["shapley"],
        "shapley_overhead": shap["time_shapley_s"] / walls["shapley"],
        "speedup_if_shapley_free": walls["none"] / (walls["shapley"] - shap["time_shapley_s"]),
        "dice_full": dice["none"], "dice_shapley": dice["shapley"],
        # is a Dice difference between the two cells larger than its noise? paired over the test patients
        "dice_shapley_vs_full": paired_bootstrap(patients["shapley"], patients["none"]),
        "epochs_full": metrics["none"]["epochs"], "epochs_shapley": shap["epochs"],
        "train_s": shap["time_train_s"], "eval_s": shap["time_eval_s"], "shapley_s": shap["time_shapley_s"],
        "full": {"train_s": metrics["none"]["time_train_s"], "eval_s": metrics["none"]["time_eval_s"],
                 "shapley_s": metrics["none"]["time_shapley_s"]},
        "full_genotype_settled_epoch": settled_epoch(histories["none"]),
        "wall_full_s": walls["none"], "wall_shapley_s": walls["shapley"],
        "cpu_full_s": cpus["none"], "cpu_shapley_s": cpus["shapley"], "speedup_cpu": cpus["none"] / cpus["shapley"],
        "schedule": {k: getattr(cfg, k) for k in ("search_epochs", "warmup_epochs", "prune_warmup_epochs",
                                                  "prune_interval", "prune_per_round", "settle_epochs",
                                                  "shapley_points_first", "shapley_points", "shapley_samples")},
        "shapley_rounds": len(rounds),
        "shapley_evals": sum(r["num_evals"] for r in rounds),
        "shapley_passes": sum(r.get("passes", 0) for r in rounds),
        "shapley_round_ms": [round(r.get("ms", 1000.0 * r["wall_s"]), 1) for r in rounds],
        "completeness_gap": [r.get("completeness_gap") for r in rounds],
        # |v(N) - v(∅)| of each round: whether the timed rounds ranked operations the cells use
        "round_signal": [round(abs(r["value_full"] - r["value_empty"]), 6) for r in rounds],
        "epoch_s_full": [round(h["time_train_s"], 3) for h in histories["none"]],
        "epoch_s_shapley": [round(h["time_train_s"], 3) for h in histories["shapley"]],
        "genotype_full": metrics["none"]["genotype_text"], "genotype_shapley": shap["genotype_text"],
    }


def worst(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The worst seed on each target: lowest speed-up, highest overhead, largest Dice loss."""
    loss = [r["dice_full"] - r["dice_shapley"] for r in results]
    return {
        "speedup": min(r["speedup"] for r in results),
        "shapley_overhead": max(r["shapley_overhead"] for r in results),
        "speedup_if_shapley_free": min(r["speedup_if_shapley_free"] for r in results),
        "speedup_cpu": min(r.get("speedup_cpu", float("nan")) for r in results),
        "dice_loss": max(loss),
        "seed_of_dice_loss": results[loss.index(max(loss))]["seed"],
        "dice_shapley_vs_full_of_that_seed": results[loss.index(max(loss))].get("dice_shapley_vs_full"),
    }


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--seeds", default="", help="comma-separated seeds (overrides --seed), e.g. 0,1,2")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()] if args.seeds else [args.seed]
    results = []
    for seed in seeds:
        cfg = benchmark_config(args, RetrainConfig, seed=seed)
        result = measure(cfg)
        result["profile"] = args.profile
        for key in PRINTED:
            print(f"{key:28} {result[key]}")
        print(json.dumps(result))
        results.append(result)
    if len(results) == 1:
        return
    summary = {"dataset": args.dataset, "profile": args.profile, "seeds": seeds,
               "estimator": results[0]["estimator"], "worst": worst(results), "per_seed": results}
    print(f"worst over seeds {seeds}: {summary['worst']}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
