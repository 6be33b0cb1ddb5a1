"""One table of every finished evaluation under a results folder: what the book, the benchmarks and
``python -m shapnas summary`` read (Benedykciuk et al., Sci. Rep. 2026: Dice, HD95, search wall-clock)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shapnas.runs import load_json

__all__ = ["collect_summary", "method_name"]


def method_name(target: str) -> str:
    """``backbone`` and ``finetune`` stay; a policy ``p`` becomes ``iac-p`` (the retrofitted cell it found)."""
    return target if target in ("backbone", "finetune") else f"iac-{target}"


def _search_record(run: Path, target: str) -> dict[str, Any]:
    path = run / f"search-{target}" / "metrics.json"
    if target in ("backbone", "finetune") or not path.exists():
        return {"search_wall_s": None, "epochs": None, "genotype": None}
    search = load_json(path)
    return {"search_wall_s": search["search_wall_s"], "epochs": search["epochs"], "genotype": search["genotype"]}


def collect_summary(results_root: str | Path) -> list[dict[str, Any]]:
    """Records of every ``eval-*`` stage with a ``metrics.json`` under ``results_root``.

    Args:
        results_root: the results folder (``<dataset>/<backbone>/seed-<k>/eval-<target>/``).

    Returns:
        One dict per evaluation: dataset, backbone, seed, method, run_dir, dice_mean, dice_per_class,
        hd95_mean, search_wall_s, epochs, genotype; sorted by dataset, backbone, method, seed.
    """
    records = []
    for path in sorted(Path(results_root).glob("*/*/seed-*/eval-*/metrics.json")):
        metrics = load_json(path)
        run = path.parent.parent
        target = metrics["target"]
        records.append({
            "dataset": metrics["dataset"],
            "backbone": metrics["backbone"],
            "seed": metrics["seed"],
            "method": method_name(target),
            "run_dir": str(run),
            "dice_mean": metrics["dice_mean"],
            "dice_per_class": metrics["dice_per_class"],
            "hd95_mean": metrics["hd95_mean"],
            **_search_record(run, target),
        })
    return sorted(records, key=lambda r: (r["dataset"], r["backbone"], r["method"], r["seed"]))
