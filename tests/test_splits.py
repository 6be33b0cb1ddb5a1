"""Patient-level W/A/V/test splits: partition, determinism, reuse and errors of splits.json."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shapnas.data.splits import (
    SPLIT_NAMES,
    load_or_create_splits,
    load_or_create_transfer_splits,
    make_splits,
    make_transfer_splits,
    min_patients,
)

PATIENTS = [f"patient{i:03d}" for i in range(1, 21)]


def test_make_splits_partitions_patients():
    splits = make_splits(PATIENTS + PATIENTS[:5], seed=0, val_fraction=0.2, test_fraction=0.2)  # duplicates: ACDC
    assert list(splits) == list(SPLIT_NAMES)
    assert [len(splits[n]) for n in SPLIT_NAMES] == [6, 6, 4, 4]
    everyone = [p for n in SPLIT_NAMES for p in splits[n]]
    assert sorted(everyone) == PATIENTS and len(set(everyone)) == len(everyone)
    assert all(splits[n] == sorted(splits[n]) for n in SPLIT_NAMES)


def test_make_splits_deterministic_and_seeded():
    first = make_splits(PATIENTS, 3, 0.2, 0.2)
    assert make_splits(list(reversed(PATIENTS)), 3, 0.2, 0.2) == first, "independent of input order"
    assert make_splits(PATIENTS, 4, 0.2, 0.2) != first


def test_too_few_patients_says_how_many():
    with pytest.raises(ValueError, match="3 patient\\(s\\) found; at least 4 are needed"):
        make_splits(["a", "b", "c"], 0, 0.2, 0.2)
    assert min_patients(0.05, 0.05) == min_patients(0.35, 0.35) == 4
    assert [len(v) for v in make_splits(list("abcde"), 0, 0.35, 0.35).values()] == [1, 1, 1, 2], "W and A kept"
    with pytest.raises(ValueError, match="at least 4"):
        make_splits(["a", "b", "c", "a"], 0, 0.2, 0.2)


@settings(max_examples=30, deadline=None)
@given(st.integers(4, 60), st.floats(0.05, 0.35), st.floats(0.05, 0.35), st.integers(0, 1000))
def test_splits_property(num_patients, val_fraction, test_fraction, seed):
    patients = [f"p{i}" for i in range(num_patients)]
    if num_patients < min_patients(val_fraction, test_fraction):
        with pytest.raises(ValueError):
            make_splits(patients, seed, val_fraction, test_fraction)
        return
    splits = make_splits(patients, seed, val_fraction, test_fraction)
    assert all(splits[n] for n in SPLIT_NAMES)
    assert sorted(p for n in SPLIT_NAMES for p in splits[n]) == sorted(patients)
    assert 0 <= len(splits["train_w"]) - len(splits["train_a"]) <= 1


def test_load_or_create_writes_then_reuses(tmp_path):
    path = tmp_path / "acdc" / "splits.json"
    splits = load_or_create_splits(path, PATIENTS, 0, 0.2, 0.2)
    text = path.read_text()
    stored = json.loads(text)
    assert stored["seed"] == 0 and {n: stored[n] for n in SPLIT_NAMES} == splits
    edited = dict(stored, val=stored["val"] + [stored["test"][0]], test=stored["test"][1:])  # a user's own split
    path.write_text(json.dumps(edited))
    assert load_or_create_splits(path, PATIENTS, 0, 0.2, 0.2)["val"] == edited["val"], "an existing file is reused"
    with pytest.warns(UserWarning, match="reusing splits"):
        load_or_create_splits(path, PATIENTS, 7, 0.2, 0.2)
    other = tmp_path / "again" / "splits.json"
    load_or_create_splits(other, list(reversed(PATIENTS)), 0, 0.2, 0.2)
    assert other.read_text() == text, "same seed -> the same JSON"
    third = tmp_path / "seed1" / "splits.json"
    load_or_create_splits(third, PATIENTS, 1, 0.2, 0.2)
    assert third.read_text() != text


def test_mismatching_file_is_an_error_and_untouched(tmp_path):
    path = tmp_path / "splits.json"
    load_or_create_splits(path, PATIENTS, 0, 0.2, 0.2)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=f"{path}.*names 5 patient\\(s\\) not in the data"):
        load_or_create_splits(path, PATIENTS[:15], 0, 0.2, 0.2)
    with pytest.raises(ValueError, match=f"{path}.*lacks 1 patient"):
        load_or_create_splits(path, PATIENTS + ["patient999"], 0, 0.2, 0.2)
    assert path.read_bytes() == before
    path.write_text(json.dumps({"train_w": ["patient001"], "train_a": [], "val": [], "test": []}))
    with pytest.raises(ValueError, match="empty"):
        load_or_create_splits(path, PATIENTS, 0, 0.2, 0.2)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_or_create_splits(path, PATIENTS, 0, 0.2, 0.2)


TARGET = [f"case_{i:05d}" for i in range(40)]


def test_transfer_splits_carve_w_a_v_from_the_labelled_patients():
    splits = make_transfer_splits(TARGET + TARGET[:3], seed=0, train_patients=8, val_fraction=0.2, min_test=30)
    assert list(splits) == list(SPLIT_NAMES)
    assert [len(splits[n]) for n in SPLIT_NAMES] == [3, 3, 2, 32]
    everyone = [p for n in SPLIT_NAMES for p in splits[n]]
    assert sorted(everyone) == sorted(TARGET), "a partition of the target patients"
    assert make_transfer_splits(list(reversed(TARGET)), 0, 8, 0.2, 30) == splits, "independent of input order"
    assert make_transfer_splits(TARGET, 1, 8, 0.2, 30) != splits, "seeded"
    smallest = make_transfer_splits(TARGET, 0, 3, 0.2, 30)
    assert [len(smallest[n]) for n in SPLIT_NAMES] == [1, 1, 1, 37]


def test_transfer_labelled_sets_are_nested_across_sizes():
    labelled = [{p for n in ("train_w", "train_a", "val") for p in make_transfer_splits(TARGET, 0, k, 0.2, 20)[n]}
                for k in (4, 8, 16)]
    assert labelled[0] < labelled[1] < labelled[2]


@pytest.mark.parametrize("train_patients, min_test, message", [(2, 30, "train_patients=2; expected at least 3"),
                                                               (12, 30, "40 target-site patient(s) found; expected at least 42")])
def test_transfer_splits_errors_name_the_values(train_patients, min_test, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_transfer_splits(TARGET, 0, train_patients, 0.2, min_test)


def test_transfer_splits_file_reused_and_other_parameters_refused(tmp_path):
    path = tmp_path / "splits-target-8.json"
    first = load_or_create_transfer_splits(path, TARGET, 0, 8, 0.2, 30)
    stored = json.loads(path.read_text())
    assert stored["train_patients"] == 8 and stored["seed"] == 0
    assert load_or_create_transfer_splits(path, TARGET, 0, 8, 0.2, 30) == first
    before = path.read_text()
    with pytest.raises(ValueError, match="made with"):
        load_or_create_transfer_splits(path, TARGET, 1, 8, 0.2, 30)
    assert path.read_text() == before, "the file is left as it was"
