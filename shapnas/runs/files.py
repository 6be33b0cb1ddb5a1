"""Run directories on disk: paths, atomic JSON, history lines and checkpoints.

Layout (one directory per dataset/backbone/seed, one sub-directory per stage)::

    <results_root>/<dataset>/splits.json                      # shared by every seed and stage
    <results_root>/<dataset>/<backbone>/seed-<k>/<stage>/     # config.json history.jsonl *.pt metrics.json

A stage is complete if and only if its ``metrics.json`` exists; it is written last and atomically. Stage folder
names, and whether a complete stage may be reused for a requested config, belong to ``shapnas.runs.identity``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "json_safe",
    "dataset_dir",
    "run_dir",
    "stage_dir",
    "save_json",
    "load_json",
    "append_jsonl",
    "read_jsonl",
    "is_complete",
    "save_checkpoint",
    "load_checkpoint",
]


def dataset_dir(results_root: str | Path, dataset: str) -> Path:
    """``<results_root>/<dataset>``: holds ``splits.json`` and one folder per backbone."""
    return Path(results_root) / dataset


def run_dir(results_root: str | Path, dataset: str, backbone: str, seed: int) -> Path:
    """``<results_root>/<dataset>/<backbone>/seed-<seed>``."""
    return dataset_dir(results_root, dataset) / backbone / f"seed-{seed}"


def stage_dir(results_root: str | Path, dataset: str, backbone: str, seed: int, stage: str) -> Path:
    """The directory of one stage (e.g. ``pretrain``, ``search-shapley``) of a run."""
    return run_dir(results_root, dataset, backbone, seed) / stage


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON data: NaN/inf become ``None``, tuples lists, 0-d tensors/arrays numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return json_safe(value.item())
    return value


def save_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically (temporary file in the same folder, then rename); NaN/inf become ``null``.

    Args:
        path: destination.
        data: plain data (dicts, lists, numbers, strings; 0-d tensors/arrays allowed).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json_safe(data), indent=2, allow_nan=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_json(path: str | Path) -> Any:
    """Read JSON, with an error naming the file when it is missing or malformed."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON line (one epoch's record) to a history file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(json_safe(record), allow_nan=False) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All records of a JSON-lines file (empty list when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def is_complete(stage_path: str | Path) -> bool:
    """True when the stage's ``metrics.json`` exists (the stage finished)."""
    return (Path(stage_path) / "metrics.json").exists()


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Save a checkpoint atomically; the payload must hold plain types and tensors only,
    so that ``torch.load(path, weights_only=True)`` reads it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; errors name the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - re-raised with the path
        raise ValueError(f"{path}: cannot read checkpoint ({error})") from error
