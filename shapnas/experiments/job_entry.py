"""The stage entry point of matrix jobs: ``python -m shapnas.experiments.job_entry <job.json>``.

A job file (written by :func:`shapnas.experiments.matrix.write_job_spec`) holds the stage kind, the evaluation target and
the full config as data; this module builds the typed config from it and calls the stage of
:mod:`shapnas.pipeline` (which runs the stages it needs first and skips finished ones).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shapnas.config.stage_configs import RetrainConfig

__all__ = ["run_stage", "run_job_spec", "main"]


def run_stage(kind: str, cfg: RetrainConfig, target: str = "") -> Path:
    """Run one stage.

    Args:
        kind: ``pretrain``, ``finetune``, ``normtune``, ``scratch``, ``search``, ``retrain``, ``evaluate``, or
            ``arms``: every arm of the transfer setting for ``cfg``'s seed and N
            (:func:`shapnas.experiments.transfer.run_arms`).
        cfg: the stage's config.
        target: for ``evaluate``: an eval target (``backbone``, ``finetune``, ``normtune``, ``scratch`` or a
            policy, ``-joint`` for the joint fine-tune).

    Returns:
        The stage directory (holding ``metrics.json``).

    Raises:
        ValueError: an unknown kind, or ``evaluate`` without a target.
    """
    from shapnas import pipeline

    stages = {"pretrain": pipeline.run_pretrain, "finetune": pipeline.run_finetune,
              "normtune": pipeline.run_normtune, "scratch": pipeline.run_scratch,
              "search": pipeline.run_search, "retrain": pipeline.run_retrain}
    if kind in stages:
        return stages[kind](cfg)
    if kind == "evaluate" and target:
        return pipeline.run_evaluate(cfg, target)
    from shapnas.experiments.transfer import ARMS_JOB, run_arms

    if kind == ARMS_JOB:
        return run_arms(cfg)
    raise ValueError(f"job kind={kind!r}, target={target!r}; expected one of {', '.join(stages)}, evaluate "
                     f"with a target or {ARMS_JOB}")


def run_job_spec(spec: Mapping[str, Any]) -> Path:
    """Run the stage a job file describes (``{"id", "kind", "target", "config"}``); returns its directory."""
    cfg = RetrainConfig.from_dict(spec["config"])
    return run_stage(spec["kind"], cfg, spec.get("target", ""))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job file named by the only argument; print the stage's ``metrics.json`` path.

    Returns:
        0 on success, 2 on a bad job file or config (one line on stderr).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m shapnas.experiments.job_entry JOB.json", file=sys.stderr)
        return 2
    try:
        stage = run_job_spec(json.loads(Path(args[0]).read_text()))
    except (OSError, KeyError, ValueError) as error:
        print(f"error: {args[0]}: {error}", file=sys.stderr)
        return 2
    print(stage / "metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
