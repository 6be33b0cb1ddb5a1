"""Can a measured search speed-up be read? Two checks on the searches' ``history.jsonl``.

- **Signal**: each Shapley round records v(N) and v(∅) of the value batch; a round whose span |v(N) − v(∅)|
  is under :data:`SIGNAL_MIN_DICE` had nothing to rank, so what it pruned (and so the time it saved) says
  nothing about Shapley values.
- **Load**: epochs that do the same work (same phase, same number of active operations) should take about
  the same time; when their training times vary by more than :data:`BUSY_VARIATION` the machine was busy
  and a wall-clock ratio is unreliable. When the search records process CPU time per epoch
  (``cpu_train_s``, ``cpu_shapley_s``, ``cpu_eval_s``), the ratio is given from it too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shapnas.plots.shapley import SIGNAL_MIN_DICE
from shapnas.runs.files import read_jsonl
from shapnas.runs.identity import stage_name

__all__ = ["BUSY_VARIATION", "CPU_FIELDS", "SIGNAL_MIN_DICE", "round_spans", "epoch_variation", "cpu_seconds",
           "search_checks", "checks_text"]

BUSY_VARIATION = 0.30  # (slowest − fastest) / fastest of identical epochs above which the machine was busy
CPU_FIELDS = ("cpu_train_s", "cpu_shapley_s", "cpu_eval_s")  # process CPU seconds per epoch, when recorded


def round_spans(history: Sequence[Mapping[str, Any]]) -> list[float]:
    """|v(N) − v(∅)| of every Shapley round of a search (rounds without both values are skipped).

    Args:
        history: the search's ``history.jsonl`` lines.

    Returns:
        One span per round, in soft Dice.
    """
    rounds = [r["shapley"] for r in history if r.get("shapley")]
    return [abs(float(r["value_full"]) - float(r["value_empty"])) for r in rounds
            if r.get("value_full") is not None and r.get("value_empty") is not None]


def epoch_variation(history: Sequence[Mapping[str, Any]]) -> float | None:
    """The largest (slowest − fastest) / fastest training time over groups of identical epochs (same phase and
    number of active operations, at least two epochs); ``None`` when no group has two epochs."""
    groups: dict[tuple[Any, Any], list[float]] = defaultdict(list)
    for record in history:
        if record.get("time_train_s"):
            groups[(record.get("phase"), record.get("num_active_ops"))].append(float(record["time_train_s"]))
    spreads = [(max(times) - min(times)) / min(times) for times in groups.values() if len(times) >= 2 and min(times) > 0]
    return max(spreads) if spreads else None


def cpu_seconds(history: Sequence[Mapping[str, Any]]) -> float | None:
    """Process CPU seconds of a search (training, Shapley rounds, evaluation), or ``None`` when not recorded."""
    if not history or any(record.get(field) is None for record in history for field in CPU_FIELDS):
        return None
    return float(sum(float(record[field]) for record in history for field in CPU_FIELDS))


def _history(run_dir: str | Path, policy: str) -> list[dict[str, Any]]:
    path = Path(run_dir) / stage_name("search", policy) / "history.jsonl"
    return read_jsonl(path) if path.exists() else []


def search_checks(run_dir: str | Path, policy: str = "shapley") -> dict[str, Any]:
    """Both checks for one run's full and pruned searches.

    Args:
        run_dir: the run directory (``search-none`` and ``search-<policy>`` beside each other).
        policy: the pruning policy compared with the full search.

    Returns:
        ``spans`` (the pruned search's round spans), ``silent`` (rounds under :data:`SIGNAL_MIN_DICE`),
        ``variation`` (the largest of both searches' :func:`epoch_variation`, or ``None``), ``busy``
        (variation above :data:`BUSY_VARIATION`) and ``cpu_speedup`` (full ÷ pruned process CPU time, or
        ``None`` when not recorded).
    """
    full, pruned = _history(run_dir, "none"), _history(run_dir, policy)
    spans = round_spans(pruned)
    variations = [v for v in (epoch_variation(full), epoch_variation(pruned)) if v is not None]
    variation = max(variations) if variations else None
    cpu_full, cpu_pruned = cpu_seconds(full), cpu_seconds(pruned)
    return {"spans": spans, "silent": sum(span < SIGNAL_MIN_DICE for span in spans), "variation": variation,
            "busy": variation is not None and variation > BUSY_VARIATION,
            "cpu_speedup": cpu_full / cpu_pruned if cpu_full and cpu_pruned else None}


def checks_text(checks: Mapping[str, Any], where: str = "") -> str:
    """Sentences on what limits the reading of a speed ratio (empty when nothing does).

    Args:
        checks: :func:`search_checks`.
        where: names the run (e.g. ``"acdc seed 0: "``).

    Returns:
        A sentence for rounds without signal, one for a busy machine (with the CPU-time ratio when recorded).
    """
    parts = []
    spans, silent = checks["spans"], checks["silent"]
    if spans and silent == len(spans):
        parts.append(f"{where}every one of the {len(spans)} pruning round(s) had no signal (|v(N) − v(∅)| at most "
                     f"{max(spans):.4f}, under {SIGNAL_MIN_DICE} Dice): the pruned operations were close to "
                     "arbitrary, so the time saved is that of pruning, not of Shapley values.")
    elif silent:
        parts.append(f"{where}{silent} of {len(spans)} pruning round(s) had no signal (|v(N) − v(∅)| under "
                     f"{SIGNAL_MIN_DICE} Dice).")
    if checks["busy"]:
        cpu = (f" From process CPU time the ratio is {checks['cpu_speedup']:.2f}×." if checks["cpu_speedup"] else
               " Process CPU time is not recorded, so the ratio cannot be corrected for the load.")
        parts.append(f"{where}identical epochs took up to {100 * checks['variation']:.0f} % longer than the "
                     f"fastest (more than {100 * BUSY_VARIATION:.0f} %): the machine was busy and the wall-clock "
                     f"ratio is unreliable.{cpu}")
    return " ".join(part if where else part[0].upper() + part[1:] for part in parts)
