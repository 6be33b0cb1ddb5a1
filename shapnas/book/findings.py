"""The introduction's findings table, computed from the run: one row per claim of the paper with this run's
intervals and the verdict (:func:`shapnas.plots.claims.claims_table`).

``python -m shapnas run`` writes it to ``book/datasets/findings.md`` after the results page, and the
introduction includes that file before it says how to reproduce the run; ``python -m shapnas book`` writes a
placeholder when no run has written one (so a fresh checkout still builds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["FINDINGS_FILE", "findings_path", "findings_markdown", "placeholder_markdown", "write_findings",
           "ensure_findings"]

FINDINGS_FILE = "findings.md"
PLACEHOLDER_MARK = "<!-- shapnas findings: placeholder -->"


def findings_path(root: str | Path) -> Path:
    """``<root>/book/datasets/findings.md`` (generated, beside the executed pages; not committed)."""
    return Path(root) / "book" / "datasets" / FINDINGS_FILE


def _cell(text: Any) -> str:
    """Text safe in a Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def findings_markdown(records: Sequence[Mapping[str, Any]], seed_records: Sequence[Mapping[str, Any]] | None = None,
                      *, profile: str | None = None, results_page: bool = True) -> str:
    """The findings table of a run.

    Args:
        records: ``collect_summary`` records of the main runs.
        seed_records: records of the ablation plan's runs (several seeds; the stability claim).
        profile: the run's profile (named in the lead-in).
        results_page: link the cross-dataset results page for the reasons.

    Returns:
        Markdown: a lead-in, a table (claim, the paper, this run with its intervals, verdict) and, on phantom
        data, a sentence saying the verdicts check the pipeline rather than the paper.
    """
    from shapnas.plots.claims import claims_table
    from shapnas.plots.results import data_sources

    claims = claims_table(records, seed_records=seed_records)
    where = "the {doc}`results page </book/datasets/results>`" if results_page else "the results page"
    ran = f"the `{profile}` profile's run" if profile else "this run"
    lines = [f"Computed from {ran} when the book's notebooks were executed; every verdict is read from the "
             "95 % paired intervals over test patients, or, in the rows *over training seeds*, from a two-level "
             f"bootstrap over the seed plan's seeds and their patients (the reasons are on {where}).", "",
             "| claim | the paper | this run | verdict |", "|---|---|---|---|"]
    for claim, row in claims.iterrows():
        lines.append(f"| {_cell(claim)} | {_cell(row['paper'])} | {_cell(row['measured'])} | "
                     f"**{_cell(row['agreement'])}** |")
    phantom = sorted(d for d, kind in data_sources(records).items() if kind != "real")
    if phantom:
        lines += ["", f"*Phantom data for {', '.join(phantom)}: these verdicts check that the pipeline runs end to "
                      "end, not the paper.*"]
    return "\n".join(lines) + "\n"


def placeholder_markdown() -> str:
    """What the introduction shows before any run: how to produce the findings."""
    return (f"{PLACEHOLDER_MARK}\n*No run has been executed into this book yet: `python -m shapnas run --datasets "
            "acdc --profile smoke` (or `make book`) computes this table from its own runs.*\n")


def write_findings(root: str | Path, results_root: str | Path, profile: str | None = None) -> Path:
    """Compute the findings from a results folder and write them where the introduction includes them.

    Args:
        root: the book root.
        results_root: the results folder (main runs; the ablation plan's under ``ablations/main``).
        profile: keep the runs of this profile.

    Returns:
        The file written.
    """
    from shapnas.experiments.ablations import ablation_root
    from shapnas.experiments.summary import collect_summary

    records = collect_summary(results_root, profile)
    plan_root = ablation_root(results_root)
    seed_records = collect_summary(plan_root, profile) if plan_root.exists() else []
    path = findings_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    results_page = (path.parent / "results.ipynb").exists()
    path.write_text(findings_markdown(records, seed_records, profile=profile, results_page=results_page))
    return path


def ensure_findings(root: str | Path) -> Path:
    """Write the placeholder when no run has written the findings (the introduction always includes them)."""
    path = findings_path(root)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(placeholder_markdown())
    return path
