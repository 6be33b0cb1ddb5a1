"""The one reader of finished runs: which stages finished under a results folder, of which profile, and the
per-seed search records the stability report reads, and where a search spent its time.

``shapnas.experiments.summary.collect_summary`` (evaluations), :func:`collect_stability_records` (searches), the ablation
records, notebooks 05/06 and the book's results page all find finished stages through
:func:`finished_stages` and keep one profile through :func:`select_profile`: results of the smoke, workshop
and paper profiles are never averaged together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shapnas.runs.files import load_json, read_jsonl
from shapnas.runs.identity import STAGE_KINDS, StageKey, parse_setting_folder, stage_name

__all__ = [
    "MixedProfilesError",
    "finished_stages",
    "stage_profile",
    "select_profile",
    "last_shapley_values",
    "cost_split",
    "equivalent_inputs",
    "collect_stability_records",
]

UNRECORDED = "(not recorded)"


class MixedProfilesError(ValueError):
    """Finished runs of several profiles were found and no profile was chosen."""


def finished_stages(results_root: str | Path, kind: str, setting: str | None = "") -> list[tuple[StageKey, Path]]:
    """Every finished stage (``metrics.json`` present) of one kind under a results folder.

    Args:
        results_root: the results folder (``<dataset>/<backbone>/seed-<k>/[transfer-n<N>/]<stage>/``).
        kind: a stage kind (``pretrain``, ``finetune``, ``search``, ``retrain``, ``eval``, ...).
        setting: the setting folder to read: ``""`` the same-site stages (the default: the readers of one setting
            never mix in another's), ``transfer-n<N>`` one transfer folder, None every setting.

    Returns:
        ``(key, stage folder)`` pairs sorted by path; folders whose names no stage kind builds are skipped.
    """
    if kind not in STAGE_KINDS:
        raise ValueError(f"stage kind {kind!r}; expected one of {', '.join(STAGE_KINDS)}")
    name = f"{kind}{'-*' if STAGE_KINDS[kind].variant else ''}/metrics.json"
    folders = {"": ["seed-*/"], None: ["seed-*/", "seed-*/transfer-n*/"]}.get(setting, [f"seed-*/{setting}/"])
    paths = [path for folder in folders for path in Path(results_root).glob(f"*/*/{folder}{name}")]
    found = []
    for path in sorted(paths):
        try:
            key = StageKey.from_path(path.parent)
        except ValueError:
            continue  # not a stage folder (e.g. a policy this version does not know)
        if key.kind == kind:
            found.append((key, path.parent))
    return found


def stage_profile(stage: str | Path, metrics: dict[str, Any] | None = None) -> str | None:
    """The profile a finished stage ran with: from its ``metrics.json``, else its ``config.json``; None when
    neither records one (results of an older version)."""
    stage = Path(stage)
    if metrics and metrics.get("profile"):
        return str(metrics["profile"])
    config = stage / "config.json"
    return load_json(config).get("profile") if config.exists() else None


def select_profile(records: list[dict[str, Any]], profile: str | None, where: str | Path) -> list[dict[str, Any]]:
    """The records of one profile (each record carries ``profile``).

    Args:
        records: records with a ``profile`` key (None: not recorded).
        profile: keep only this profile; None keeps all when they share one profile.
        where: the results folder, for the error message.

    Returns:
        The kept records.

    Raises:
        MixedProfilesError: ``profile`` is None and the records come from several profiles.
    """
    if profile is not None:
        return [r for r in records if r.get("profile") == profile]
    found = sorted({r.get("profile") or UNRECORDED for r in records})
    if len(found) > 1:
        raise MixedProfilesError(f"{where} holds finished runs of several profiles ({', '.join(found)}); results "
                                 "of different profiles are never mixed: choose one (--profile NAME, or profile= "
                                 "in Python) or keep each profile in its own results folder")
    return records


def last_shapley_values(history_path: str | Path) -> dict[str, float] | None:
    """The mean Shapley values of the last round in a search's ``history.jsonl``.

    Args:
        history_path: the search stage's history file (lines with a ``shapley`` field).

    Returns:
        ``"<edge>:<op>" -> mean`` of the last line whose ``shapley`` is not null (keys align players across
        seeds), or None when no round ran (e.g. policy ``none``).
    """
    rounds = [line["shapley"] for line in read_jsonl(history_path) if line.get("shapley")]
    if not rounds:
        return None
    last = rounds[-1]
    return {f"{edge}:{op}": float(value) for (edge, op), value in zip(last["players"], last["mean"], strict=True)}


def cost_split(run_dir: str | Path, policy: str) -> dict[str, float] | None:
    """Seconds a search spent training, in Shapley rounds and evaluating, summed over its ``history.jsonl``.

    Returns:
        ``{"train": s, "shapley": s, "eval": s, "epochs": n}``, or ``None`` without a history.
    """
    path = Path(run_dir) / stage_name("search", policy) / "history.jsonl"
    if not path.exists():
        return None
    history = read_jsonl(path)
    total = {part: float(sum(r.get(f"time_{part}_s") or 0.0 for r in history)) for part in ("train", "shapley", "eval")}
    return {**total, "epochs": float(len(history))}


def equivalent_inputs(config: dict[str, Any]) -> bool:
    """Whether a search's two cell inputs s0, s1 are made from the same tensor (the skip): False when its
    config's ``decoder_input`` is on (s1 is then the decoder feature at the skip's level)."""
    return not bool(config.get("decoder_input", False))


def _stability_record(key: StageKey, stage: Path) -> dict[str, Any]:
    """One search's record: genotype, final op probabilities, last Shapley round, the eval's test Dice."""
    search = load_json(stage / "metrics.json")
    evaluation = stage.parent / stage_name("eval", key.variant) / "metrics.json"
    config = stage / "config.json"
    n = parse_setting_folder(key.setting)
    return {
        "dataset": search["dataset"], "backbone": search["backbone"], "policy": search["policy"],
        "seed": search["seed"], "profile": stage_profile(stage, search),
        "setting": "same_site" if n is None else "transfer", "target_train_patients": n,
        "genotype": search["genotype"], "op_probs": search.get("final_op_probs"),
        "shapley_values": last_shapley_values(stage / "history.jsonl"),
        "dice_mean": load_json(evaluation).get("dice_mean") if evaluation.exists() else None,
        "primitives": search.get("primitives"),
        "equivalent_inputs": equivalent_inputs(load_json(config)) if config.exists() else True,
    }


def collect_stability_records(results_root: str | Path, profile: str | None = None,
                              setting: str | None = "") -> list[dict[str, Any]]:
    """One record per finished search under ``results_root``, as ``shapnas.experiments.stability.report.stability_report`` reads.

    Args:
        results_root: the results folder (``<dataset>/<backbone>/seed-<k>/search-<policy>/metrics.json``).
        profile: keep only searches of this profile; None: all, which must then share one profile.
        setting: ``""`` the same-site searches (default), ``transfer-n<N>`` one transfer folder, None every
            setting (:func:`finished_stages`).

    Returns:
        Records with dataset, backbone, policy, seed, profile, setting (``same_site`` or ``transfer``),
        target_train_patients (N, or None for the same site), genotype, op_probs (final), shapley_values (or
        None), dice_mean (of ``eval-<policy>``, None when not evaluated yet), primitives, equivalent_inputs;
        sorted by dataset, backbone, policy, seed.

    Raises:
        MixedProfilesError: searches of several profiles and no ``profile`` chosen.
    """
    records = [_stability_record(key, stage) for key, stage in finished_stages(results_root, "search", setting)]
    records = select_profile(records, profile, results_root)
    return sorted(records, key=lambda r: (r["dataset"], r["backbone"], r["setting"], r["target_train_patients"] or 0,
                                          r["policy"], r["seed"]))
