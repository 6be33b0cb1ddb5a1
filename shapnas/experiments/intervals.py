"""How a Dice difference and its 95 % interval are written and read: one owner for the text of an interval
(in Dice points) and for the verdict it allows.

Every interval here is a mapping with ``mean``, ``ci_low`` and ``ci_high`` as Dice fractions (a paired bootstrap
over test patients, or a two-level bootstrap over training seeds and patients:
:func:`shapnas.experiments.summary.two_level_bootstrap`). A verdict is drawn only where the interval excludes 0
(Benedykciuk et al., Sci. Rep. 2026, claim IAC "improves or matches" its baselines; :mod:`shapnas.plots.claims`
reads these verdicts against that claim).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

__all__ = ["Verdict", "points", "dice_points", "interval_text", "interval_bracket", "interval_verdict"]

Verdict = Literal["improves", "matches", "worse"]


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
