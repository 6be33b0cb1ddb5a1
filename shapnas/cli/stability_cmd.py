"""``python -m shapnas stability``: how stable the searched cells are across seeds, per dataset and policy."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run", "collect_stability_records", "last_shapley_values", "equivalent_inputs"]

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
               "  python -m shapnas stability --results results --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="results", help="results folder (default: results)")
    parser.add_argument("--json", action="store_true", help="print one JSON list (NaN as null)")
    parser.set_defaults(handler=run)


def last_shapley_values(history_path: str | Path) -> dict[str, float] | None:
    """The mean Shapley values of the last round in a search's ``history.jsonl``.

    Args:
        history_path: the search stage's history file (lines with a ``shapley`` field, see CONTRACTS).

    Returns:
        ``"<edge>:<op>" -> mean`` of the last line whose ``shapley`` is not null (keys align players across
        seeds), or None when no round ran (e.g. policy ``none``).
    """
    from shapnas.runs import read_jsonl

    rounds = [line["shapley"] for line in read_jsonl(history_path) if line.get("shapley")]
    if not rounds:
        return None
    last = rounds[-1]
    return {f"{edge}:{op}": float(value) for (edge, op), value in zip(last["players"], last["mean"], strict=True)}


def equivalent_inputs(config: dict[str, Any]) -> bool:
    """Whether a search's two cell inputs s0, s1 are made from the same tensor (the skip): False when its
    config's ``decoder_input`` is on (s1 is then the decoder feature at the skip's level)."""
    return not bool(config.get("decoder_input", False))


def collect_stability_records(results_root: str | Path) -> list[dict[str, Any]]:
    """One record per finished search under ``results_root``, as ``shapnas.stability.stability_report`` reads.

    Args:
        results_root: the results folder (``<dataset>/<backbone>/seed-<k>/search-<policy>/metrics.json``).

    Returns:
        Records with dataset, backbone, policy, seed, genotype, op_probs (final), shapley_values (or None),
        dice_mean (of ``eval-<policy>``, None when not evaluated yet), sorted by dataset, backbone, policy, seed.
    """
    from shapnas.runs import load_json

    records = []
    for path in sorted(Path(results_root).glob("*/*/seed-*/search-*/metrics.json")):
        search = load_json(path)
        policy = search["policy"]
        evaluation = path.parent.parent / f"eval-{policy}" / "metrics.json"
        config = path.parent / "config.json"
        records.append({
            "dataset": search["dataset"], "backbone": search["backbone"], "policy": policy, "seed": search["seed"],
            "genotype": search["genotype"], "op_probs": search.get("final_op_probs"),
            "shapley_values": last_shapley_values(path.parent / "history.jsonl"),
            "dice_mean": load_json(evaluation).get("dice_mean") if evaluation.exists() else None,
            "primitives": search.get("primitives"),
            "equivalent_inputs": equivalent_inputs(load_json(config)) if config.exists() else True,
        })
    return sorted(records, key=lambda r: (r["dataset"], r["backbone"], r["policy"], r["seed"]))


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _cell(value: Any) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def run(args: argparse.Namespace) -> int:
    """Print the stability report (a table, or JSON with ``--json``)."""
    from shapnas.stability import stability_report

    records = collect_stability_records(args.results)
    report = stability_report(records)
    if args.json:
        print(json.dumps(_plain(report)))
        return 0
    if not report:
        print(f"no finished searches under {args.results}")
        return 0
    header = f"{'dataset':8} {'backbone':10} {'policy':8} {'seeds':>5} " + " ".join(f"{n:>8}" for _, n in COLUMNS)
    print(header)
    for row in report:
        cells = " ".join(f"{_cell(row[key]):>8}" for key, _ in COLUMNS)
        print(f"{row['dataset']:8} {str(row['backbone']):10} {row['policy']:8} {row['num_seeds']:>5} {cells}")
    print("chance: the 95th percentile of the metric to its left over random genotypes of the same shape.")
    print("agree: modal-op agreement of the genotypes' edges; argmax: of every edge's arg-max op; jaccard: mean "
          "pairwise of (node, src, op) triples; js: mean pairwise JS divergence of the final op distributions; "
          "kendall/spearman: rank correlation of the last Shapley round; dice/dice_sd: test Dice over seeds.")
    return 0
