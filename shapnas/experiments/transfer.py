"""The transfer setting's arms: a source-site backbone adapted to a target site with few labelled patients.

Every arm of one N (``target_train_patients``) and seed runs through the pipeline's stages (each reused when it
finished with the same config), then the arms are pooled over the seeds with two-level bootstrap intervals
against the source backbone and the fine-tuned one (:func:`shapnas.experiments.summary.pooled_summary`). The
arms (Benedykciuk et al., Sci. Rep. 2026 retrofit pre-trained U-Nets under limited data; the controls are the
usual ones of transfer learning):

- ``backbone``: the source backbone as is, on the target site's test patients;
- ``finetune``: every weight fine-tuned on the target patients (learning rate tuned on V);
- ``normtune``: the parameter-efficient control, norms and biases only (learning rate tuned on V);
- ``scratch``: a backbone trained on the target patients alone;
- ``none`` and ``shapley``: IAC cells searched (full search, Shapley-pruned) and re-trained on the frozen
  source backbone;
- ``shapley-joint``: the Shapley-pruned cell re-trained together with the backbone.

Each seed also evaluates the source backbone on the source site's own test patients, so that every record
carries the site shift it starts from (``source_drop``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from shapnas.config.names import TRANSFER_ARMS, method_label
from shapnas.config.stage_configs import RetrainConfig
from shapnas.experiments.intervals import dice_points, interval_bracket
from shapnas.experiments.summary import collect_summary, pooled_summary
from shapnas.runs.identity import method_of_target, setting_folder

__all__ = ["TRANSFER_ARMS", "PooledGroup", "run_transfer", "transfer_records", "pooled_groups",
           "format_transfer_table"]


class PooledGroup(NamedTuple):
    """The runs pooled together: one dataset, backbone, setting, N (0 for the same site) and profile."""

    dataset: str
    backbone: str
    setting: str
    n: int
    profile: str

def run_transfer(cfg: RetrainConfig, seeds: Sequence[int], arms: Sequence[str] = TRANSFER_ARMS, *,
                 report: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run (or reuse) every arm of the transfer setting of ``cfg`` for each seed; return the pooled records.

    Args:
        cfg: the run's config (its ``setting`` is taken as ``transfer``; ``target_train_patients`` is N).
        seeds: training seeds (at least 3 for an interval that carries the seed variance).
        arms: eval targets to run (:data:`TRANSFER_ARMS` by default).
        report: called with one line as each stage finishes.

    Returns:
        :func:`transfer_records` of ``cfg``'s results folder.
    """
    from shapnas.pipeline import run_evaluate

    cfg = cfg.replace(setting="transfer")
    for seed in seeds:
        run = cfg.replace(seed=seed)
        run_evaluate(run.source_site(), "backbone")
        report(f"seed {seed}: source backbone on the source site done")
        for arm in arms:
            run_evaluate(run, arm)
            report(f"seed {seed}: {method_label(method_of_target(arm))} done")
    return transfer_records(cfg)


def transfer_records(cfg: RetrainConfig) -> list[dict[str, Any]]:
    """The pooled records (:func:`shapnas.experiments.summary.pooled_summary`) of ``cfg``'s transfer folder."""
    records = collect_summary(cfg.results_root, profile=cfg.profile, setting=setting_folder(
        cfg.replace(setting="transfer")))
    return pooled_summary([r for r in records if r["dataset"] == cfg.dataset and r["backbone"] == cfg.backbone])


def pooled_groups(records: Sequence[Mapping[str, Any]]) -> list[tuple[PooledGroup, list[Mapping[str, Any]]]]:
    """Pooled records grouped by (dataset, backbone, setting, N, profile), each group's arms in
    :data:`~shapnas.config.names.TRANSFER_ARMS` order (other methods after them, by name).

    Args:
        records: :func:`~shapnas.experiments.summary.pooled_summary` records.

    Returns:
        ``[(group key, records of the group)]``, groups sorted by their key (N as a number); N is 0 for the same site.
    """
    order = {method_of_target(arm): i for i, arm in enumerate(TRANSFER_ARMS)}

    def key(r: Mapping[str, Any]) -> PooledGroup:
        return PooledGroup(r["dataset"], r["backbone"], r["setting"], r.get("target_train_patients") or 0,
                           r.get("profile", ""))

    groups = sorted({key(r) for r in records})
    return [(g, sorted((r for r in records if key(r) == g),
                       key=lambda r: (order.get(r["method"], len(order)), r["method"]))) for g in groups]


def format_transfer_table(records: list[dict[str, Any]]) -> str:
    """Pooled records as text tables, one per dataset, backbone, setting and N: Dice (points) over seeds and the
    differences with their 95 % intervals.

    Args:
        records: :func:`transfer_records` (or any :func:`~shapnas.experiments.summary.pooled_summary` records).

    Returns:
        Per group a title line, a header and one line per arm; a last line on what the intervals carry.
    """
    if not records:
        return "no finished evaluations"
    lines = []
    for group, rows in pooled_groups(records):
        drop = next((r["source_drop"] for r in rows if r.get("source_drop") is not None), None)
        title = (f"transfer, N = {group.n} labelled target patients; source drop {dice_points(drop, '')} Dice points"
                 if group.setting == "transfer" else "same site")
        lines += [f"{group.dataset} {group.backbone}: {title}",
                  f"{'arm':38} {'seeds':>5} {'n':>3} {'Dice':>6} {'vs source backbone':>22} {'vs fine-tuned':>22}"]
        for r in rows:
            lines.append(f"{method_label(r['method']):38} {len(r['seeds']):>5} {r['test_patients']:>3} "
                         f"{dice_points(r['dice_patient_mean'], ''):>6} "
                         f"{interval_bracket(r.get('dice_vs_backbone'), ''):>22} "
                         f"{interval_bracket(r.get('dice_vs_finetune'), ''):>22}")
        lines.append("")
    lines.append("Dice: mean patient Dice (points) over seeds; differences: mean [95 % two-level bootstrap interval: "
                 "seeds, then patients within a seed, paired by patient]")
    return "\n".join(lines)
