"""The scale of the JS stability rule: per-edge Jensen–Shannon divergences a search actually produces.

IAC-LTH (arXiv 2604.14849) prunes an edge once the JS divergence of its op distribution between now and
``window`` epochs ago falls below a threshold; our first searches measured divergences ~1e-6 against a threshold of
0.01, so ``js`` pruned every edge at once. This reads a finished search's ``history.jsonl`` (a full search,
policy ``none``, shows every op) and prints, last line, one JSON object: the percentiles of the per-edge
window divergences over the epochs after the warm-up, and ``suggested_threshold`` (their 25th percentile:
an edge then counts as settled when it moves less than three quarters of the measured moves).

    python benchmarks/js_scale.py --history results/acdc/basic_unet/seed-0/search-none/history.jsonl --window 2
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from shapnas.runs.files import read_jsonl
from shapnas.search.pruning import js_divergence


def window_divergences(history: list[dict], window: int) -> np.ndarray:
    """Per-edge JS divergences (base 2) between op distributions ``window`` epochs apart.

    Args:
        history: search history records with ``op_probs`` ((E, P) nested lists) and ``phase``.
        window: epochs between the compared distributions.

    Returns:
        (N,) divergences over every edge and every epoch pair after the warm-up.
    """
    probs = [np.asarray(r["op_probs"], dtype=float) for r in history if r.get("phase") != "warmup"]
    values = [js_divergence(probs[t - window] + 1e-12, probs[t] + 1e-12) for t in range(window, len(probs))]
    return np.concatenate(values) if values else np.zeros(0)


def main() -> None:
    """Print the percentiles as one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", required=True, help="a search stage's history.jsonl")
    parser.add_argument("--window", type=int, default=2)
    args = parser.parse_args()
    values = window_divergences(read_jsonl(args.history), args.window)
    if not values.size:
        raise SystemExit(f"{args.history}: fewer than window + 1 = {args.window + 1} epochs after the warm-up")
    p = np.percentile(values, [5, 25, 50, 75, 95])
    print(json.dumps({"history": args.history, "window": args.window, "count": int(values.size),
                      "p05": p[0], "p25": p[1], "p50": p[2], "p75": p[3], "p95": p[4], "max": float(values.max()),
                      "suggested_threshold": p[1]}))


if __name__ == "__main__":
    main()
