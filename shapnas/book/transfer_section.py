"""The transfer chapter's tables, computed from the results folder: every arm of every transfer run, pooled over
its seeds, with two-level bootstrap intervals and the verdict each interval allows.

``python -m shapnas book`` writes ``book/datasets/transfer.md`` from ``results/`` (the runs of
``python -m shapnas transfer``), which ``book/transfer.md`` includes; without transfer runs it says how to make
them. The arms and the intervals: :mod:`shapnas.experiments.transfer`, :func:`shapnas.experiments.summary.pooled_summary`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shapnas.experiments.intervals import bracket_with_verdict
from shapnas.experiments.intervals import verdict_word as verdict  # better, worse, cannot tell or –

__all__ = ["TRANSFER_FILE", "FIGURE_FILE", "FINDINGS_FILE", "transfer_path", "verdict", "transfer_markdown",
           "signal_and_stability_text", "transfer_findings", "write_transfer_section"]

TRANSFER_FILE = "transfer.md"
FIGURE_FILE = "transfer-dice-vs-n.png"
FINDINGS_FILE = "transfer-findings.md"  # the introduction's paragraph on the transfer setting, beside TRANSFER_FILE


def transfer_path(root: str | Path) -> Path:
    """``<root>/book/datasets/transfer.md`` (generated, not committed)."""
    return Path(root) / "book" / "datasets" / TRANSFER_FILE


def transfer_markdown(pooled: Sequence[Mapping[str, Any]], figure_alt: str = "",
                      notes: Mapping[tuple[str, str, int, str], str] | None = None) -> str:
    """One table per (dataset, backbone, N, profile) of :func:`~shapnas.experiments.summary.pooled_summary` records.

    Args:
        pooled: pooled records of the transfer setting.
        figure_alt: with several N of one dataset, the alt text of the Dice-against-N figure (:data:`FIGURE_FILE`,
            written beside); empty leaves the figure out.
        notes: (dataset, backbone, N, profile) -> a paragraph shown under that group's table
            (:func:`signal_and_stability_text`).

    Returns:
        Markdown: per group a heading, the site shift, the arms table (Dice in points, differences with their
        intervals and verdicts) and the number of seeds and test patients behind them.
    """
    from shapnas.config.names import dataset_label
    from shapnas.experiments.intervals import dice_points, pooled_table_lines
    from shapnas.experiments.summary import pooled_groups

    rows = [r for r in pooled if r["setting"] == "transfer"]
    if not rows:
        return ("*No transfer run in this book's results folder yet: `make book` runs the workshop profile's transfer "
                "plan (`python -m shapnas run` with notebooks 05 and 06), and `python -m shapnas transfer --dataset acdc "
                "--profile workshop --seeds 0 1 2` runs every arm at the profile's own size; then `python -m shapnas "
                "book` shows them here.*\n")
    lines: list[str] = []
    for g, group in pooled_groups(rows):
        drop = next((r["source_drop"] for r in group if r.get("source_drop") is not None), None)
        seeds = sorted({s for r in group for s in r["seeds"]})
        lines += [f"### {dataset_label(g.dataset)}, N = {g.n} labelled target patients ({g.backbone}, "
                  f"`{g.profile}` profile)", "",
                  f"The source backbone loses {dice_points(drop)} Dice points between its own site's test patients and "
                  f"the target site's. Seeds {', '.join(map(str, seeds))}; {min(r['test_patients'] for r in group)} "
                  "target test patients.", "",
                  *pooled_table_lines(group), ""]
        note = (notes or {}).get((g.dataset, g.backbone, g.n, g.profile))
        if note:
            lines += [note, ""]
    lines.append("*Dice: mean patient-level Dice (points) over seeds. Differences: mean paired difference in points "
                 "[95 % two-level bootstrap interval: seeds, then patients within a seed]; better / worse only where "
                 "the interval excludes 0.*")
    if figure_alt:
        lines += ["", f"```{{figure}} datasets/{FIGURE_FILE}", f":alt: {figure_alt}", ":width: 100%", "",
                  "Each arm's test Dice against the number of labelled target patients N (left) and its difference "
                  "from the fine-tuned backbone with the 95 % two-level bootstrap interval (right; 0 = as good as "
                  "fine-tuning every weight).", "```"]
    return "\n".join(lines) + "\n"


def signal_and_stability_text(spans: Sequence[float], stability: Sequence[Mapping[str, Any]]) -> str:
    """What the cells' search had to go on in one transfer group, and how stable its choices were over seeds.

    Args:
        spans: the first Shapley round's |v(N) − v(∅)| of each seed's pruned search (soft Dice on the value batch;
            :func:`shapnas.plots.speed_checks.round_spans`).
        stability: the group's :func:`~shapnas.experiments.stability.report.stability_report` rows (one per policy).

    Returns:
        A paragraph: the spans against the signal threshold, each policy's modal-op agreement against its chance
        level; empty when there is neither.
    """
    from shapnas.config.names import method_label, method_name
    from shapnas.plots.shapley import SIGNAL_MIN_DICE

    parts = []
    if spans:
        above = sum(span >= SIGNAL_MIN_DICE for span in spans)
        parts.append(f"The first Shapley round's span |v(N) − v(∅)| on the value batch was "
                     f"{', '.join(f'{span:.4f}' for span in spans)} over the seeds ({above} of {len(spans)} at or above "
                     f"{SIGNAL_MIN_DICE} Dice, the level under which a round has no signal to prune on).")
    for row in stability:
        chance = row.get("chance_modal_agreement_p95")
        if row.get("num_seeds", 0) < 2 or chance is None:
            continue
        word = "above" if row["modal_agreement"] > chance else "not above"
        parts.append(f"{method_label(method_name(row['policy']))}: modal-op agreement of the cells over "
                     f"{row['num_seeds']} seeds {row['modal_agreement']:.2f}, {word} the 95th percentile of random "
                     f"genotypes ({chance:.2f}).")
    return ("**Signal and stability.** " + " ".join(parts)) if parts else ""


def _group_notes(results_root: Path, profile: str) -> dict[tuple[str, str, int, str], str]:
    """:func:`signal_and_stability_text` of every transfer group of one profile under ``results_root``."""
    from shapnas.experiments.stability.report import stability_report
    from shapnas.plots.speed_checks import round_spans
    from shapnas.runs.files import read_jsonl
    from shapnas.runs.records import collect_stability_records

    records = [r for r in collect_stability_records(results_root, profile=profile, setting=None)
               if r["setting"] == "transfer"]
    report = stability_report(records)
    notes = {}
    for key in sorted({(r["dataset"], r["backbone"], r["target_train_patients"]) for r in records}):
        dataset, backbone, n = key
        spans = []
        for seed_dir in sorted((results_root / dataset / backbone).glob(f"seed-*/transfer-n{n}/search-shapley")):
            history = read_jsonl(seed_dir / "history.jsonl") if (seed_dir / "history.jsonl").exists() else []
            if (first := round_spans(history)[:1]):
                spans += first
        rows = [r for r in report if (r["dataset"], r["backbone"], r["target_train_patients"]) == key]
        notes[(dataset, backbone, n, profile)] = signal_and_stability_text(spans, rows)
    return notes


def transfer_findings(pooled: Sequence[Mapping[str, Any]]) -> str:
    """The introduction's paragraph on the transfer setting: per dataset and N, the Shapley-pruned cell against the
    source backbone and against the fine-tuned one, with the intervals and verdicts of :func:`transfer_markdown`."""
    from shapnas.config.names import dataset_label

    rows = [r for r in pooled if r["setting"] == "transfer" and r["method"] == "iac-shapley"]
    if not rows:
        return ("**A new site with few patients** ({doc}`/book/transfer`): no transfer run in this book's results "
                "folder yet.\n")
    parts = [f"{dataset_label(r['dataset'])}, N = {r['target_train_patients']} ({len(r['seeds'])} seeds): against the "
             f"source backbone {bracket_with_verdict(r.get('dice_vs_backbone'))}, against the fine-tuned one "
             f"{bracket_with_verdict(r.get('dice_vs_finetune'))}" for r in sorted(rows, key=lambda r: (
                 r["dataset"], r["target_train_patients"]))]
    return ("**A new site with few patients** ({doc}`/book/transfer`), Shapley-pruned cells in Dice points "
            "[95 % interval over seeds and patients]: " + "; ".join(parts) + ".\n")


def plan_text(profile: str) -> str:
    """Where a group of the transfer plan comes from: the plan's folder and the values its runs set.

    Args:
        profile: the runs' profile.

    Returns:
        One sentence for the group's table.
    """
    from shapnas.experiments.transfer import transfer_plan

    scale = ", ".join(f"`{key}={value}`" for key, value in transfer_plan(profile).scale.items())
    return (f"**Runs of the `{profile}` transfer plan** (`results/ablations/transfer`, run by `python -m shapnas run` "
            f"with the ablation plan{'; its own values: ' + scale if scale else ''}).")


def _several_n(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether some dataset among ``rows`` has runs with more than one N (a Dice-against-N curve)."""
    return any(len({r["target_train_patients"] for r in rows if r["dataset"] == d}) > 1 for d in {r["dataset"] for r in rows})


def _group_key(record: Mapping[str, Any]) -> tuple[str, str, int, str]:
    return record["dataset"], record["backbone"], record["target_train_patients"], record["profile"]


def write_transfer_section(root: str | Path, results_root: str | Path) -> Path:
    """Compute the transfer tables from ``results_root`` and write them where ``book/transfer.md`` includes them.

    Returns:
        The file written.
    """
    from shapnas.config.stage_configs import PROFILE_NAMES
    from shapnas.experiments.summary import collect_summary, pooled_summary
    from shapnas.experiments.transfer import transfer_plan_root

    pooled: list[dict[str, Any]] = []
    notes: dict[tuple[str, str, int, str], str] = {}
    figure_rows: list[dict[str, Any]] = []  # one folder and profile: a curve never joins two scales
    # the transfer plan's runs (make book) and those of `python -m shapnas transfer` beside the main run; each folder
    # and profile is pooled on its own, never mixed: a group the plan has is not shown again from the main run
    for folder in (transfer_plan_root(results_root), Path(results_root)):
        for profile in (*PROFILE_NAMES, "custom"):
            records = collect_summary(folder, profile=profile, setting=None) if folder.exists() else []
            shown = {_group_key(r) for r in pooled}
            found = [r for r in pooled_summary([r for r in records if r["setting"] == "transfer"])
                     if _group_key(r) not in shown]
            pooled += found
            if not figure_rows and _several_n(found):
                figure_rows = found
            if folder.exists():
                texts = _group_notes(folder, profile)
                if folder != Path(results_root) and profile in PROFILE_NAMES:
                    texts = {key: f"{plan_text(profile)} {text}".strip() for key, text in texts.items()}
                notes = {**texts, **notes}
    path = transfer_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = path.parent / FIGURE_FILE
    figure.unlink(missing_ok=True)
    alt = ""
    if figure_rows:
        from shapnas.plots.transfer import plot_transfer_arms, transfer_alt

        plot_transfer_arms(figure_rows).savefig(figure, dpi=110)
        alt = transfer_alt(figure_rows)
    path.write_text(transfer_markdown(pooled, alt, notes))
    (path.parent / FINDINGS_FILE).write_text(transfer_findings(pooled))
    return path
