"""The page "Training as the field does it", computed from the results folder: the protocol study's arms
(augmentation × backbone family) pooled over seeds, with two-level bootstrap intervals.

``python -m shapnas book`` writes ``book/datasets/protocol.md`` from ``results/ablations/protocol`` (the runs of
``python -m shapnas protocol``), which ``book/protocol.md`` includes; without those runs it says how to make them.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PROTOCOL_FILE", "protocol_path", "protocol_markdown", "write_protocol_section"]

PROTOCOL_FILE = "protocol.md"


def protocol_path(root: str | Path) -> Path:
    """``<root>/book/datasets/protocol.md`` (generated, not committed)."""
    return Path(root) / "book" / "datasets" / PROTOCOL_FILE


def protocol_markdown(results_root: str | Path, figure: Path | None = None) -> str:
    """Per profile with protocol runs under ``results_root``: its plan in words, what it says, its figure and its
    tables.

    Args:
        results_root: the results folder (``<results_root>/ablations/protocol/augmentation-*/``).
        figure: the folder of the generated page, where each profile's figure (``protocol-<profile>.png``) is
            written; None leaves the figures out.

    Returns:
        Markdown (a sentence with the command when nothing has run).
    """
    from shapnas.config.stage_configs import PROFILE_NAMES
    from shapnas.experiments.protocol import (format_protocol_table, protocol_findings, protocol_plan,
                                              protocol_records)

    parts = []
    for profile in PROFILE_NAMES:
        plan = protocol_plan(profile)
        pooled = protocol_records(results_root, plan)
        if not pooled:
            continue
        parts += [f"**`{profile}` plan**: backbones {', '.join(f'`{b}`' for b in plan.backbones)}; augmentation "
                  f"{' and '.join(f'`{a}`' for a in plan.augmentations)}; seeds {', '.join(map(str, plan.seeds))}"
                  + (f"; every run at {', '.join(f'`{k}={v}`' for k, v in plan.scale.items())}" if plan.scale else "")
                  + f" (`python -m shapnas protocol --profile {profile}`).", "",
                  "**What it says**, counting each comparison's verdict:", "",
                  *(f"- {sentence}" for sentence in protocol_findings(pooled)), ""]
        if figure is not None:
            from shapnas.plots.protocol import plot_protocol_arms, protocol_alt

            name = f"protocol-{profile}.png"
            plot_protocol_arms(pooled).savefig(figure / name, dpi=110)
            parts += [f"```{{figure}} datasets/{name}", f":alt: {protocol_alt(pooled)}", ":width: 100%", "",
                      "IAC's Shapley-pruned cells against their own backbone (left) and against the fine-tuned "
                      "backbone (right), per dataset, backbone family and augmentation: mean over seeds and its 95 % "
                      "two-level interval; green above 0, red below, grey includes 0.", "```", ""]
        parts += [format_protocol_table(pooled, markdown=True), ""]
    if not parts:
        return ("*No protocol run in this book's results folder yet: `python -m shapnas protocol --profile workshop` "
                "runs every arm, then `python -m shapnas book` shows them here.*\n")
    return "\n".join(parts) + "\n"


def write_protocol_section(root: str | Path, results_root: str | Path) -> Path:
    """Write :func:`protocol_markdown` of ``results_root`` where ``book/protocol.md`` includes it.

    Returns:
        The file written.
    """
    path = protocol_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob("protocol-*.png"):
        stale.unlink()
    path.write_text(protocol_markdown(results_root, figure=path.parent))
    return path
