"""Accuracy of the Shapley estimators on the real rounds of a pruned search.

A ``shapley`` search runs one epoch per call (a resumed search ends exactly as an uninterrupted one), and the
supernet state of every epoch that held a Shapley round is kept, with the round's players restored (the
checkpoint is written after pruning; pruning only clears ``active``). On each saved round:

- reference: two independent Monte-Carlo runs of M permutations (default 4) averaged (M = 8);
- estimators against it: ``ig`` (Aumann–Shapley, the round's K points), ``owen`` (Owen sampling with mask
  gradients: the round's K points, ``shapley_samples`` coalitions each) and a third, independent MC M run;
  ``spearman`` (all players), ``within_edge_spearman`` (mean over edges with ≥ 3 ops), ``decision_agreement``
  (fraction of edges whose ``prune_per_round`` lowest ops match the reference's);
- ``noise_ceiling``: the same figures for one MC M run against the other (the reference's two halves);
- controls: softmax α and a random score against the reference;
- exact sub-games: all active ops of each of ``--edges`` (default 0, 5 and 13: into the first, third and
  last node) switch on/off with every other op present; exact Shapley over the 2^m coalitions, the value
  range, the additive R² (least squares of v(S) on the membership bits) and the estimators' errors there.

The last line is one JSON object (means over rounds at the top, every round under ``rounds``). Targets:
``decision_agreement`` ≥ ``noise_ceiling.decision_agreement`` and ``within_edge_spearman`` ≥ 0.9, on rounds
whose values carry signal (see ``value_span`` and the sub-games' ``value_range``).

``--batch-sizes 8,16,32,48`` also estimates every round (the search's estimator and points) on two disjoint
V batches of each size (the most foreground-rich slices and the next ones) and reports how far the two
rankings agree (``value_batches``): whether a round ranks the operations for V or only for its batch.
``--batches-only`` skips the Monte-Carlo comparisons.

    python benchmarks/shapley_accuracy.py --dataset acdc --profile workshop --seed 0
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from shapnas.config.arguments import benchmark_config, benchmark_parser
from shapnas.config.stage_configs import SearchConfig
from shapnas.pipeline import load_search_supernet, run_pretrain, run_search, search_stage_name, stage_path
from shapnas.runs.files import load_checkpoint, read_jsonl
from shapnas.search.loop import STATE_FILE
from shapnas.search.pruning import mean_op_probs, select_ops_to_prune
from shapnas.shapley.aumann import aumann_shapley, owen_gradients
from shapnas.shapley.monte_carlo import exact_shapley, permutation_shapley
from shapnas.shapley.supernet_game import (
    SupernetGame,
    disjoint_value_batches,
    estimate_supernet_shapley,
    foreground_rich_batch,
    round_options,
)

Players = list[tuple[int, int]]


def saved_rounds(cfg: SearchConfig, keep: Path) -> list[dict[str, Any]]:
    """Run the search one epoch per call; keep the checkpoint and record of every epoch with a round."""
    stage = stage_path(cfg, search_stage_name(cfg))
    if (stage / "metrics.json").exists():
        raise ValueError(f"{stage} holds a finished search, whose rounds were not kept; use an empty --results")
    rounds = []
    while not (stage / "metrics.json").exists():
        run_search(cfg, progress=False, stop_after=1)
        record = read_jsonl(stage / "history.jsonl")[-1]
        if record["shapley"] and not any(r["epoch"] == record["epoch"] for r in rounds):
            path = keep / f"round-{len(rounds)}.pt"
            shutil.copy(stage / STATE_FILE, path)
            rounds.append({"epoch": record["epoch"], "path": path, "record": record["shapley"]})
    return rounds


def restore_round(model: torch.nn.Module, path: Path, players: list[list]) -> Players:
    """Load a round's checkpoint and re-activate the ops its round pruned; returns the round's players."""
    from shapnas.networks.ops import PRIMITIVES

    model.load_state_dict(load_checkpoint(path, map_location=next(model.parameters()).device)["model"])
    pairs = [(int(e), PRIMITIVES.index(o) if isinstance(o, str) else int(o)) for e, o in players]
    for arch in model.arch:
        for edge, op in pairs:
            arch.active[edge, op] = True
    restored = model.arch[0].players()
    if restored != pairs:
        raise ValueError(f"{path}: restored players {len(restored)} differ from the round's {len(pairs)}")
    return restored


def by_edge(players: Players, values: np.ndarray) -> dict[int, dict[int, float]]:
    grouped: dict[int, dict[int, float]] = {}
    for (edge, op), value in zip(players, values):
        grouped.setdefault(edge, {})[op] = float(value)
    return grouped


def agreement(estimate: np.ndarray, reference: np.ndarray, players: Players, per_round: int) -> dict[str, float]:
    """Spearman over all players, mean within-edge Spearman (edges with ≥ 3 ops), decision agreement."""
    est, ref = by_edge(players, estimate), by_edge(players, reference)
    within = [spearmanr([est[e][o] for o in ops], [ref[e][o] for o in ops]).statistic
              for e, ops in ref.items() if len(ops) >= 3]
    decided = [e for e, ops in ref.items() if len(ops) >= 2]
    pruned_est = set(select_ops_to_prune({e: est[e] for e in decided}, per_round))
    pruned_ref = set(select_ops_to_prune({e: ref[e] for e in decided}, per_round))
    same = [all(((e, o) in pruned_est) == ((e, o) in pruned_ref) for o in ref[e]) for e in decided]
    return {"spearman": float(spearmanr(estimate, reference).statistic),
            "within_edge_spearman": float(np.nanmean(within)) if within else float("nan"),
            "decision_agreement": float(np.mean(same)) if same else float("nan")}


def sub_game(model, images, labels, players: Players, cfg: SearchConfig, points: int,
             generator: np.random.Generator) -> dict[str, Any]:
    """Exact Shapley of one edge's active ops (every other op present) against ``ig``, ``owen`` and MC."""
    n = len(players)
    game = SupernetGame(model, images, labels, players, value=cfg.shapley_value)
    bits = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(bool)  # (2^n, n)
    table = game(bits)  # (2^n,)
    powers = 1 << np.arange(n)
    exact = exact_shapley(lambda masks: table[masks.astype(np.int64) @ powers], n).mean
    design = np.hstack([np.ones((2**n, 1)), bits.astype(float)])
    fitted = design @ np.linalg.lstsq(design, table, rcond=None)[0]
    total = float(np.sum((table - table.mean()) ** 2))
    ig = aumann_shapley(game.value_and_grad, n, points, value_fn=game).mean
    mc = permutation_shapley(game, n, cfg.shapley_permutations, generator, truncation=cfg.shapley_truncation).mean
    owen = owen_gradients(game.value_and_grad, n, points, cfg.shapley_samples, generator=generator, value_fn=game).mean
    spread = float(exact.max() - exact.min())
    return {"edge": players[0][0], "players": n, "evals_exact": 2**n,
            "value_range": float(table.max() - table.min()), "phi_range": spread,
            "additive_r2": 1.0 - float(np.sum((table - fitted) ** 2)) / total if total > 0 else float("nan"),
            "ig_max_err_over_range": float(np.abs(ig - exact).max() / spread) if spread > 0 else float("nan"),
            "mc_max_err_over_range": float(np.abs(mc - exact).max() / spread) if spread > 0 else float("nan"),
            "owen_max_err_over_range": float(np.abs(owen - exact).max() / spread) if spread > 0 else float("nan"),
            "owen_spearman": float(spearmanr(owen, exact).statistic),
            "ig_spearman": float(spearmanr(ig, exact).statistic), "mc_spearman": float(spearmanr(mc, exact).statistic)}


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def evaluate_round(model, images, labels, players: Players, cfg: SearchConfig, index: int, seed: int,
                   edges: list[int]) -> dict[str, Any]:
    """All comparisons on one saved round (see the module docstring)."""
    rngs = [np.random.default_rng([seed, index, k]) for k in range(6)]
    options = round_options(cfg, index)
    mc = [estimate_supernet_shapley(model, images, labels, players, generator=rngs[k],
                                    **{**options, "estimator": "mc"}) for k in range(3)]
    ig = estimate_supernet_shapley(model, images, labels, players, generator=rngs[3], **{**options, "estimator": "ig"})
    owen = estimate_supernet_shapley(model, images, labels, players, generator=rngs[5],
                                     **{**options, "estimator": "owen"})
    a, b, c = (np.array(r["mean"]) for r in mc)
    reference = 0.5 * (a + b)
    alpha = mean_op_probs([arch.op_probs() for arch in model.arch])
    r = cfg.prune_per_round
    result = {
        "round": index, "players": len(players), "ig_points": options["points"],
        "value_span": ig["value_full"] - ig["value_empty"], "value_full": ig["value_full"],
        "ig": {**agreement(np.array(ig["mean"]), reference, players, r),
               "completeness_gap": _nan(ig["completeness_gap"]), "passes": ig["passes"], "evals": ig["num_evals"],
               "ms": ig["ms"]},
        "owen": {**agreement(np.array(owen["mean"]), reference, players, r),
                 "completeness_gap": _nan(owen["completeness_gap"]), "passes": owen["passes"],
                 "samples": options["samples"], "ms": owen["ms"]},
        "mc": {**agreement(c, reference, players, r), "evals": mc[2]["num_evals"], "ms": mc[2]["ms"],
               "completeness_gap": _nan(mc[2]["completeness_gap"])},
        "noise_ceiling": agreement(a, b, players, r),
        "alpha": agreement(np.array([alpha[e, o] for e, o in players]), reference, players, r),
        "random": agreement(rngs[4].random(len(players)), reference, players, r),
        "evals_reference": mc[0]["num_evals"] + mc[1]["num_evals"],
        "sub_games": [],
    }
    for edge in edges:
        sub = [p for p in players if p[0] == edge]
        if len(sub) >= 2:
            result["sub_games"].append(sub_game(model, images, labels, sub, cfg, options["points"],
                                                np.random.default_rng([seed, index, 100 + edge])))
    return result


def batch_agreement(model, images, labels, players: Players, cfg: SearchConfig, index: int,
                    sizes: list[int]) -> list[dict[str, Any]]:
    """The round's own estimate on two disjoint V batches of each size: does its ranking hold beyond its batch?

    Args:
        model: the supernet at the round.
        images, labels: all V slices (N, C, H, W), (N, 1, H, W) on the model's device.
        players: the round's players.
        cfg: the search config (estimator, points, value).
        index: the round's index (its points).
        sizes: value-batch sizes (each needs 2·size V slices; larger ones are skipped).

    Returns:
        Per size: ``slices``, the agreement of the second batch's values with the first's (``spearman``,
        ``within_edge_spearman``, ``decision_agreement``), each batch's v(N) − v(∅) and the round's ms.
    """
    rows = []
    for size in sizes:
        if 2 * size > images.shape[0]:
            continue
        estimates = [estimate_supernet_shapley(model, x, y, players, generator=np.random.default_rng([index, size]),
                                               **round_options(cfg, index))
                     for x, y in disjoint_value_batches(images, labels, size)]
        first, second = (np.array(e["mean"]) for e in estimates)
        rows.append({"slices": size, **agreement(second, first, players, cfg.prune_per_round),
                     "span_first": estimates[0]["value_full"] - estimates[0]["value_empty"],
                     "span_second": estimates[1]["value_full"] - estimates[1]["value_empty"],
                     "ms": estimates[0]["ms"]})
    return rows


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over rounds of the headline figures (the JSON keys the targets read)."""
    def mean(path: tuple[str, ...]) -> float:
        values = []
        for r in rounds:
            value: Any = r
            for key in path:
                value = value[key]
            values.append(value)
        return float(np.nanmean(values))

    keys = ("spearman", "within_edge_spearman", "decision_agreement")
    subs = [s for r in rounds for s in r["sub_games"]]
    return {
        "players": sum(r["players"] for r in rounds),
        **{k: mean(("ig", k)) for k in keys},
        "noise_ceiling": {k: mean(("noise_ceiling", k)) for k in keys},
        "owen": {**{k: mean(("owen", k)) for k in keys}, "passes": sum(r["owen"]["passes"] for r in rounds),
                 "ms": sum(r["owen"]["ms"] for r in rounds)},
        "mc": {k: mean(("mc", k)) for k in keys},
        "alpha": {k: mean(("alpha", k)) for k in keys},
        "random": {k: mean(("random", k)) for k in keys},
        "completeness_gap_ig": mean(("ig", "completeness_gap")),
        "evals_ig": sum(r["ig"]["evals"] for r in rounds), "passes_ig": sum(r["ig"]["passes"] for r in rounds),
        "ms_ig": sum(r["ig"]["ms"] for r in rounds),
        "evals_mc": sum(r["mc"]["evals"] for r in rounds), "ms_mc": sum(r["mc"]["ms"] for r in rounds),
        "evals_reference": sum(r["evals_reference"] for r in rounds),
        "evals_exact": sum(s["evals_exact"] for s in subs),
        "sub_game_ig_max_err_over_range": max((s["ig_max_err_over_range"] for s in subs), default=float("nan")),
        "sub_game_owen_max_err_over_range": max((s["owen_max_err_over_range"] for s in subs), default=float("nan")),
        "sub_game_additive_r2_min": min((s["additive_r2"] for s in subs), default=float("nan")),
    }


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--edges", default="0,5,13", help="edges of the exact sub-games (13: into the last node)")
    parser.add_argument("--max-rounds", type=int, default=0, help="evaluate only the first N rounds (0: all)")
    parser.add_argument("--batch-sizes", default="",
                        help="also estimate each round on two disjoint V batches of these sizes, e.g. 8,16,32,48, "
                             "and report how well the two rankings agree (value_batches)")
    parser.add_argument("--batches-only", action="store_true",
                        help="with --batch-sizes: skip the estimator comparisons (no Monte-Carlo reference)")
    args = parser.parse_args()

    cfg = benchmark_config(args, SearchConfig, fixed={"policy": "shapley"})
    root = Path(cfg.results_root)
    run_pretrain(cfg)
    keep = root / "rounds"
    keep.mkdir(parents=True, exist_ok=True)
    rounds = saved_rounds(cfg, keep)
    if args.max_rounds:
        rounds = rounds[:args.max_rounds]
    model, data = load_search_supernet(cfg)
    device = next(model.parameters()).device
    images, labels = foreground_rich_batch(*data.slices("val"), cfg.shapley_slices)
    images, labels = images.to(device), labels.to(device)
    edges = [int(e) for e in args.edges.split(",") if e.strip()]
    results = []
    sizes = [int(n) for n in args.batch_sizes.split(",") if n.strip()]
    if args.batches_only and not sizes:
        parser.error("--batches-only needs --batch-sizes")
    val_images, val_labels = (t.to(device) for t in data.slices("val"))
    for index, saved in enumerate(rounds):
        players = restore_round(model, saved["path"], saved["record"]["players"])
        if args.batches_only:
            result = {"round": index, "players": len(players)}
        else:
            result = evaluate_round(model, images, labels, players, cfg, index, args.seed, edges)
            print(f"round {index} (epoch {saved['epoch']}, {len(players)} players, span {result['value_span']:+.5f}): "
                  f"ig {result['ig']}  owen {result['owen']}  mc {result['mc']}  ceiling {result['noise_ceiling']}  "
                  f"alpha {result['alpha']}")
            for sub in result["sub_games"]:
                print(f"  sub-game {sub}")
        result["epoch"] = saved["epoch"]
        if sizes:
            result["value_batches"] = batch_agreement(model, val_images, val_labels, players, cfg, index, sizes)
            for row in result["value_batches"]:
                print(f"round {index} (epoch {saved['epoch']}) two disjoint batches of {row['slices']:3d} slices: "
                      f"spearman {row['spearman']:+.3f}  within-edge {row['within_edge_spearman']:+.3f}  decisions "
                      f"{row['decision_agreement']:.3f}  v(N)-v(0) {row['span_first']:+.5f} / "
                      f"{row['span_second']:+.5f}")
        results.append(result)
    head = {} if args.batches_only else summary(results)
    out = {"dataset": args.dataset, "profile": args.profile, "seed": args.seed, "estimator_search": cfg.shapley_estimator,
           "permutations": cfg.shapley_permutations, "prune_per_round": cfg.prune_per_round, **head,
           "rounds": results}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
