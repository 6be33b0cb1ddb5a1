"""Seeded patient-level splits: train (halves W for weights, A for architecture), V (held out) and test.

W/A/V/test follow the method (``shared/docs/method.md``, "Data splits"); the file is reused once written,
as nnU-Net reuses ``splits_final.json``, so every seed and stage of a dataset sees the same patients.
The transfer setting's target site is split differently (:func:`make_transfer_splits`): W, A and V are carved
from a few labelled patients, every other target-site patient is a test patient.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shapnas.runs.files import load_json, save_json

__all__ = ["SPLIT_NAMES", "make_splits", "load_or_create_splits", "min_patients", "make_transfer_splits",
           "load_or_create_transfer_splits"]

SPLIT_NAMES = ("train_w", "train_a", "val", "test")


def _counts(num_patients: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int, int]:
    num_val = max(1, int(round(num_patients * val_fraction)))
    num_test = max(1, int(round(num_patients * test_fraction)))
    while num_patients - num_val - num_test < 2 and max(num_val, num_test) > 1:  # keep two training patients
        if num_val >= num_test:
            num_val -= 1
        else:
            num_test -= 1
    num_train = num_patients - num_val - num_test
    num_w = (num_train + 1) // 2
    return num_w, num_train - num_w, num_val, num_test


def min_patients(val_fraction: float, test_fraction: float) -> int:
    """The fewest patients for which every split (W, A, V, test) is non-empty."""
    for n in range(4, 100_000):
        if min(_counts(n, val_fraction, test_fraction)) >= 1:
            return n
    raise ValueError(f"val_fraction={val_fraction}, test_fraction={test_fraction} leave no training patients")


def make_splits(patient_ids: Sequence[str], seed: int, val_fraction: float,
                test_fraction: float) -> dict[str, list[str]]:
    """Split patients at random (seeded, independent of input order and duplicates).

    Args:
        patient_ids: patient of each case (duplicates allowed: ACDC has two frames per patient).
        seed: split seed.
        val_fraction: share of patients in V (at least one).
        test_fraction: share of patients in test (at least one).

    Returns:
        ``{"train_w", "train_a", "val", "test"}`` -> sorted patient ids; the train patients are halved
        into W and A (W gets the odd one).

    Raises:
        ValueError: too few patients for four non-empty splits (the message says how many are needed).
    """
    patients = sorted(set(patient_ids))
    counts = _counts(len(patients), val_fraction, test_fraction)
    if len(patients) < 4 or min(counts) < 1:
        need = min_patients(val_fraction, test_fraction)
        raise ValueError(f"{len(patients)} patient(s) found; at least {need} are needed for non-empty "
                         f"W, A, V and test splits (val_fraction={val_fraction}, test_fraction={test_fraction})")
    order = np.random.default_rng(seed).permutation(len(patients))
    shuffled = [patients[i] for i in order]
    splits, start = {}, 0
    for name, count in zip(SPLIT_NAMES, counts):
        splits[name] = sorted(shuffled[start:start + count])
        start += count
    return splits


def _check_file(path: Path, data: Any, patients: set[str]) -> dict[str, list[str]]:
    if not isinstance(data, dict) or any(not isinstance(data.get(k), list) for k in SPLIT_NAMES):
        raise ValueError(f"{path}: expected a JSON object with lists {', '.join(SPLIT_NAMES)}")
    splits = {name: [str(p) for p in data[name]] for name in SPLIT_NAMES}
    listed = [p for name in SPLIT_NAMES for p in splits[name]]
    empty = [name for name in SPLIT_NAMES if not splits[name]]
    if empty:
        raise ValueError(f"{path}: split(s) {', '.join(empty)} are empty; expected every split non-empty")
    if len(listed) != len(set(listed)):
        twice = sorted({p for p in listed if listed.count(p) > 1})
        raise ValueError(f"{path}: patient(s) {twice[:5]} appear in more than one split")
    unknown = sorted(set(listed) - patients)
    if unknown:
        raise ValueError(f"{path}: names {len(unknown)} patient(s) not in the data (e.g. {unknown[:5]}); "
                         "expected splits of this dataset's patients; delete the file or use another results folder")
    missing = sorted(patients - set(listed))
    if missing:
        raise ValueError(f"{path}: lacks {len(missing)} patient(s) of the data (e.g. {missing[:5]}); "
                         "delete the file to split again, or use another results folder")
    return splits


def load_or_create_splits(path: Path, patient_ids: Sequence[str], seed: int, val_fraction: float,
                          test_fraction: float) -> dict[str, list[str]]:
    """Reuse ``path`` when it splits exactly these patients, else create it (atomically).

    Args:
        path: ``<results_root>/<dataset>/splits.json``.
        patient_ids: the patients of the data.
        seed: split seed (used when creating; a differing seed in an existing file only warns).
        val_fraction: share of patients in V.
        test_fraction: share of patients in test.

    Returns:
        ``{"train_w", "train_a", "val", "test"}`` -> patient ids.

    Raises:
        ValueError: the file is malformed, names patients not in the data or lacks some; too few patients.
    """
    path = Path(path)
    patients = set(patient_ids)
    if path.exists():
        data = load_json(path)
        splits = _check_file(path, data, patients)
        stored = (data.get("seed"), data.get("val_fraction"), data.get("test_fraction"))
        if stored != (seed, val_fraction, test_fraction):
            warnings.warn(f"{path}: reusing splits made with (seed, val_fraction, test_fraction)={stored}, "
                          f"not {(seed, val_fraction, test_fraction)}", stacklevel=2)
        return splits
    splits = make_splits(sorted(patients), seed, val_fraction, test_fraction)
    save_json(path, {"seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction, **splits})
    return splits


def _transfer_counts(num_labelled: int, val_fraction: float) -> tuple[int, int, int]:
    """W, A, V counts of ``num_labelled`` labelled patients: V ``round(n * val_fraction)`` (at least 1), the rest
    halved into W and A (W gets the odd one), each at least 1."""
    num_val = min(max(1, int(round(num_labelled * val_fraction))), num_labelled - 2)
    num_train = num_labelled - num_val
    num_w = (num_train + 1) // 2
    return num_w, num_train - num_w, num_val


def make_transfer_splits(patient_ids: Sequence[str], seed: int, train_patients: int, val_fraction: float,
                         min_test: int) -> dict[str, list[str]]:
    """Split a target site's patients for the transfer setting (seeded, independent of input order).

    The labelled patients are the first ``train_patients`` of a seeded permutation, so the labelled sets of
    several ``train_patients`` are nested (4 ⊂ 8 ⊂ 16 for one seed); every other patient is a test patient.

    Args:
        patient_ids: patient of each case (duplicates allowed: ACDC has two frames per patient).
        seed: split seed.
        train_patients: labelled target-site patients, carved into W, A and V (at least 3).
        val_fraction: share of the labelled patients in V (at least one; W and A keep one each).
        min_test: the fewest test patients accepted.

    Returns:
        ``{"train_w", "train_a", "val", "test"}`` -> sorted patient ids.

    Raises:
        ValueError: ``train_patients < 3``, or fewer than ``train_patients + min_test`` patients.
    """
    patients = sorted(set(patient_ids))
    if train_patients < 3:
        raise ValueError(f"train_patients={train_patients}; expected at least 3 (W, A and V each need one)")
    if len(patients) < train_patients + min_test:
        raise ValueError(f"{len(patients)} target-site patient(s) found; expected at least {train_patients + min_test} "
                         f"({train_patients} labelled + {min_test} test patients)")
    order = np.random.default_rng(seed).permutation(len(patients))
    shuffled = [patients[i] for i in order]
    splits, start = {}, 0
    for name, count in zip(SPLIT_NAMES, _transfer_counts(train_patients, val_fraction)):
        splits[name] = sorted(shuffled[start:start + count])
        start += count
    splits["test"] = sorted(shuffled[start:])
    return splits


def load_or_create_transfer_splits(path: Path, patient_ids: Sequence[str], seed: int, train_patients: int,
                                   val_fraction: float, min_test: int) -> dict[str, list[str]]:
    """Reuse ``path`` when it splits exactly these patients with these parameters, else create it (atomically).

    Args:
        path: e.g. ``<results_root>/<dataset>/splits-target-<train_patients>.json``.
        patient_ids: the target site's patients.
        seed: split seed.
        train_patients: labelled target-site patients (W, A, V).
        val_fraction: share of them in V.
        min_test: the fewest test patients accepted.

    Returns:
        ``{"train_w", "train_a", "val", "test"}`` -> patient ids.

    Raises:
        ValueError: the file is malformed, does not cover these patients, or was made with other parameters
            (seed, train_patients, val_fraction), named in the message; too few patients.
    """
    path = Path(path)
    wanted = {"seed": seed, "train_patients": train_patients, "val_fraction": val_fraction}
    if path.exists():
        data = load_json(path)
        splits = _check_file(path, data, set(patient_ids))
        stored = {key: data.get(key) for key in wanted} if isinstance(data, dict) else {}
        if stored != wanted:
            raise ValueError(f"{path}: made with {stored}, not {wanted}; delete the file or use another results "
                             "folder")
        return splits
    splits = make_transfer_splits(patient_ids, seed, train_patients, val_fraction, min_test)
    save_json(path, {**wanted, **splits})
    return splits
