"""Accuracy of the Monte-Carlo Shapley estimate against exact Shapley on a real retrofitted supernet.

A short full search (policy ``none``) trains the implanted cells; then a sub-game small enough for exact
Shapley is cut out of the supernet: the ops of ``--edges`` edges (the ``--ops`` strongest by α on each;
every other op stays present). The Monte-Carlo estimator at the default number of permutations
(``shapley_permutations`` of the profile, antithetic) is compared with exact Shapley on the same value
function. Prints figures; the last line is one JSON object. Target: spearman >= 0.9 with evals_mc < evals_exact.

    python benchmarks/shapley_accuracy.py --dataset acdc --profile workshop --seed 0
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from shapnas.config import SearchConfig, config_from_profile
from shapnas.pipeline import load_search_supernet, run_search
from shapnas.shapley import exact_shapley, permutation_shapley
from shapnas.supernet_shapley import SupernetGame, foreground_rich_batch


def sub_game_players(model: torch.nn.Module, num_edges: int, num_ops: int) -> list[tuple[int, int]]:
    """The ``num_ops`` highest-α non-``none`` ops of the ``num_edges`` edges with the highest β."""
    op_probs = model.arch[0].op_probs().detach().cpu()
    edges = torch.argsort(model.arch[0].edge_probs().detach().cpu(), descending=True)[:num_edges].tolist()
    players = []
    for edge in sorted(edges):
        ops = torch.argsort(op_probs[edge, 1:], descending=True)[:num_ops] + 1
        players.extend((edge, int(op)) for op in sorted(ops.tolist()))
    return players


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="acdc")
    parser.add_argument("--profile", default="workshop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--edges", type=int, default=2)
    parser.add_argument("--ops", type=int, default=5, help="ops per edge in the sub-game (players = edges x ops)")
    parser.add_argument("--results", default="", help="results folder (default: a temporary one)")
    args = parser.parse_args()
    root = args.results or tempfile.mkdtemp(prefix="shapnas-bench-")
    cfg = config_from_profile(SearchConfig, args.profile, dataset=args.dataset, seed=args.seed, results_root=root,
                              policy="none")
    run_search(cfg, progress=False)
    model, data = load_search_supernet(cfg)
    device = next(model.parameters()).device
    images, labels = foreground_rich_batch(*data.slices("val"), cfg.shapley_slices)
    players = sub_game_players(model, args.edges, args.ops)
    # the sub-game: the chosen players switch on/off, every other active op stays present
    game = SupernetGame(model, images.to(device), labels.to(device), players, value=cfg.shapley_value)
    start = time.perf_counter()
    exact = exact_shapley(game, len(players))
    exact_s = time.perf_counter() - start
    start = time.perf_counter()
    mc = permutation_shapley(game, len(players), cfg.shapley_permutations, np.random.default_rng(args.seed),
                             truncation=cfg.shapley_truncation)
    mc_s = time.perf_counter() - start
    rho = float(spearmanr(exact.mean, mc.mean).statistic)
    result = {
        "dataset": args.dataset, "profile": args.profile, "seed": args.seed, "players": len(players),
        "spearman": rho, "max_abs_err": float(np.max(np.abs(exact.mean - mc.mean))),
        "value_range": float(np.max(exact.mean) - np.min(exact.mean)),
        "evals_mc": int(mc.num_evals), "evals_exact": int(exact.num_evals),
        "evals_saved_by_truncation": int(mc.evals_saved_by_truncation),
        "permutations": cfg.shapley_permutations, "truncation": cfg.shapley_truncation,
        "exact_s": exact_s, "mc_s": mc_s,
    }
    for name, e, m in zip(["%d:%d" % p for p in players], exact.mean, mc.mean):
        print(f"player {name:6} exact {e:+.6f}  mc {m:+.6f}")
    for key in ("players", "spearman", "max_abs_err", "value_range", "evals_mc", "evals_exact"):
        print(f"{key:14} {result[key]}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
