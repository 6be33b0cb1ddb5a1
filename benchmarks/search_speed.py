"""Search speed-up of Shapley-guided pruning over the full PC-DARTS search, measured in one process.

On the same data and the same pre-trained backbone, runs the full search (policy ``none``, the profile's
own search length, the one the book's 03_search uses) and the ``shapley`` search, re-trains and tests both
discrete cells, and prints the figures; the last line is one JSON object. Targets (issue): speedup >= 4,
shapley_overhead <= 0.15, dice_shapley >= dice_full - 0.01.

    python benchmarks/search_speed.py --dataset acdc --profile workshop --seed 0
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from shapnas.config import RetrainConfig, config_from_profile
from shapnas.pipeline import run_evaluate, run_pretrain, run_search
from shapnas.runs import load_json, read_jsonl


def settled_epoch(history: list[dict]) -> int:
    """The last epoch at which the derived genotype changed."""
    last, previous = 0, None
    for record in history:
        if record["genotype"] != previous:
            last, previous = record["epoch"], record["genotype"]
    return last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="acdc")
    parser.add_argument("--profile", default="workshop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default="", help="results folder (default: a temporary one)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    from shapnas.cli.common import parse_overrides

    root = args.results or tempfile.mkdtemp(prefix="shapnas-bench-")
    cfg = config_from_profile(RetrainConfig, args.profile, dataset=args.dataset, seed=args.seed, results_root=root,
                              **parse_overrides(args.overrides))
    run_pretrain(cfg)  # shared by both searches, not timed
    walls, metrics, dice = {}, {}, {}
    for policy in ("none", "shapley"):
        policy_cfg = cfg.replace(policy=policy)
        start = time.perf_counter()
        stage = run_search(policy_cfg, progress=False)
        walls[policy] = time.perf_counter() - start
        metrics[policy] = load_json(stage / "metrics.json")
        dice[policy] = load_json(run_evaluate(policy_cfg, policy) / "metrics.json")["dice_mean"]
        print(f"{policy:8} search {walls[policy]:7.1f} s  epochs {metrics[policy]['epochs']:3d}  "
              f"shapley {metrics[policy]['time_shapley_s']:6.1f} s  test dice {dice[policy]:.4f}")
        print(f"         genotype: {metrics[policy]['genotype_text']}")
    history_full = read_jsonl(Path(root) / args.dataset / cfg.backbone / f"seed-{args.seed}" / "search-none" / "history.jsonl")
    history_shap = read_jsonl(Path(root) / args.dataset / cfg.backbone / f"seed-{args.seed}" / "search-shapley" / "history.jsonl")
    rounds = [h["shapley"] for h in history_shap if h["shapley"]]
    result = {
        "dataset": args.dataset, "profile": args.profile, "seed": args.seed,
        "speedup": walls["none"] / walls["shapley"],
        "shapley_overhead": metrics["shapley"]["time_shapley_s"] / walls["shapley"],
        "dice_full": dice["none"], "dice_shapley": dice["shapley"],
        "epochs_full": metrics["none"]["epochs"], "epochs_shapley": metrics["shapley"]["epochs"],
        "full_genotype_settled_epoch": settled_epoch(history_full),
        "wall_full_s": walls["none"], "wall_shapley_s": walls["shapley"],
        "shapley_rounds": len(rounds), "shapley_evals": sum(r["num_evals"] for r in rounds),
        "shapley_evals_saved": sum(r["evals_saved"] for r in rounds),
        "shapley_eval_ms": (sum(r["eval_ms"] * r["num_evals"] for r in rounds) / max(1, sum(r["num_evals"] for r in rounds))),
        "epoch_s_full": [round(h["time_train_s"], 3) for h in history_full],
        "epoch_s_shapley": [round(h["time_train_s"], 3) for h in history_shap],
    }
    for key in ("speedup", "shapley_overhead", "dice_full", "dice_shapley", "epochs_full", "epochs_shapley",
                "full_genotype_settled_epoch", "shapley_rounds", "shapley_evals", "shapley_evals_saved", "shapley_eval_ms"):
        print(f"{key:28} {result[key]}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
