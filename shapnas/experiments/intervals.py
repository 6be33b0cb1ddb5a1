"""How a Dice difference and its 95 % interval are written and read: one owner for the text of an interval
(in Dice points) and for the verdict it allows.

Every interval here is a mapping with ``mean``, ``ci_low`` and ``ci_high`` as Dice fractions (a paired bootstrap
over test patients, or a two-level bootstrap over training seeds and patients:
:func:`shapnas.experiments.summary.two_level_bootstrap`). A verdict is drawn only where the interval excludes 0
(Benedykciuk et al., Sci. Rep. 2026, claim IAC "improves or matches" its baselines; :mod:`shapnas.plots.claims`
reads these verdicts against that claim).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

__all__ = ["Verdict", "MIN_SEEDS", "VERDICT_WORDS", "points", "dice_points", "interval_text", "interval_bracket",
           "interval_verdict", "verdict_word", "bracket_with_verdict", "pooled_table_rows", "pooled_table_lines"]

Verdict = Literal["improves", "matches", "worse"]

MIN_SEEDS = 3  # an interval over fewer training seeds is shown but marked: it cannot carry the seeds' variance
VERDICT_WORDS = {"improves": "better", "worse": "worse", "matches": "cannot tell", None: "–"}
"""The tables' words for a verdict of :func:`interval_verdict`."""


def points(value: float) -> str:
    """Dice points with a sign and one decimal, never ``-0.0``.

    Args:
        value: a difference already in points.

    Returns:
        e.g. ``+1.9``.
    """
    return f"{round(float(value), 1) + 0.0:+.1f}"


def dice_points(value: float | None, missing: str = "–") -> str:
    """A Dice fraction in points with one decimal (``0.8266`` → ``82.7``), or ``missing`` for None."""
    return missing if value is None else f"{100 * value:.1f}"


def interval_text(interval: Mapping[str, float]) -> str:
    """``+0.1 points (95 % CI −0.2 to +0.4)`` from a Dice-fraction interval (the book's sentences)."""
    return (f"{points(100 * interval['mean'])} points (95 % CI {points(100 * interval['ci_low'])} to "
            f"{points(100 * interval['ci_high'])})")


def interval_bracket(interval: Mapping[str, float] | None, missing: str = "–", *, scale: float = 100.0,
                     digits: int = 1) -> str:
    """``+1.9 [+1.1, +2.6]`` (tables): the mean and its interval, in points by default.

    Args:
        interval: ``mean``, ``ci_low``, ``ci_high`` as Dice fractions, or None.
        missing: the text without an interval.
        scale: 100 writes points; 1 writes Dice fractions.
        digits: decimals.

    Returns:
        The bracketed interval, or ``missing``.
    """
    if not interval:
        return missing

    def signed(value: float) -> str:
        return f"{round(scale * float(value), digits) + 0.0:+.{digits}f}"

    return f"{signed(interval['mean'])} [{signed(interval['ci_low'])}, {signed(interval['ci_high'])}]"


def interval_verdict(interval: Mapping[str, float] | None) -> Verdict | None:
    """``improves`` (95 % interval above 0), ``worse`` (below 0), ``matches`` (includes 0); ``None`` without one."""
    if not interval or interval.get("ci_low") is None or interval.get("ci_high") is None:
        return None
    if interval["ci_low"] > 0:
        return "improves"
    if interval["ci_high"] < 0:
        return "worse"
    return "matches"


def verdict_word(interval: Mapping[str, float] | None) -> str:
    """``better`` / ``worse`` when the 95 % interval excludes 0, ``cannot tell`` when it includes it, ``–`` without
    (:func:`interval_verdict` in the tables' words)."""
    return VERDICT_WORDS[interval_verdict(interval)]


def bracket_with_verdict(interval: Mapping[str, float] | None) -> str:
    """``+1.9 [+1.1, +2.6] (better)``: :func:`interval_bracket` and :func:`verdict_word`, or ``–`` without one."""
    return f"{interval_bracket(interval)} ({verdict_word(interval)})" if interval else "–"


def pooled_table_rows(rows: Sequence[Mapping[str, Any]], first: str = "arm",
                      backbone_column: str = "vs source backbone") -> list[dict[str, str]]:
    """Pooled records (:func:`shapnas.experiments.summary.pooled_summary`) as table rows: per method its seeds, its
    Dice over seeds and its paired differences from the backbone and from the fine-tuned backbone, each with its
    95 % two-level interval and verdict; a method with fewer than :data:`MIN_SEEDS` seeds is marked.

    Args:
        rows: pooled records of one group (one dataset, backbone, setting, N and profile), in display order.
        first: the first column's heading.
        backbone_column: the heading of the differences from the backbone.

    Returns:
        One mapping per record, the columns in order: ``first``, seeds, Dice, ``backbone_column``, vs fine-tuned.
    """
    from shapnas.config.names import method_label

    table = []
    for r in rows:
        few = f" (fewer than {MIN_SEEDS} seeds)" if len(r["seeds"]) < MIN_SEEDS else ""
        table.append({first: f"{method_label(r['method'])}{few}", "seeds": str(len(r["seeds"])),
                      "Dice": dice_points(r["dice_patient_mean"]),
                      backbone_column: bracket_with_verdict(r.get("dice_vs_backbone")),
                      "vs fine-tuned": bracket_with_verdict(r.get("dice_vs_finetune"))})
    return table


def pooled_table_lines(rows: Sequence[Mapping[str, Any]], first: str = "arm",
                       backbone_column: str = "vs source backbone") -> list[str]:
    """:func:`pooled_table_rows` as the lines of a Markdown table (header, rule, one line per record)."""
    table = pooled_table_rows(rows, first, backbone_column)
    columns = [first, "seeds", "Dice", backbone_column, "vs fine-tuned"]
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)] + \
        ["| " + " | ".join(row[c] for c in columns) + " |" for row in table]
