"""Shared fixtures: tiny phantom datasets of every flavour and layout, written once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shapnas.data.phantoms import write_phantom_dataset

# (dataset, variant) pairs that cover every official layout the loaders read
LAYOUTS = [("acdc", None), ("brats", "2021"), ("brats", "2020"), ("brats", "2023"), ("kits", "kits23"),
           ("kits", "kits21"), ("kits", "kits19"), ("amos", None), ("msd", "msd"), ("msd", "nnunet")]


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory):
    """``phantom_dir(dataset, variant=None, patients=4)`` -> root of a phantom dataset (shared, do not modify)."""
    root = tmp_path_factory.mktemp("phantoms")
    written: dict[tuple, Path] = {}

    def get(dataset: str, variant: str | None = None, patients: int = 4) -> Path:
        key = (dataset, variant, patients)
        if key not in written:
            out = root / f"{dataset}-{variant or 'default'}-{patients}"
            written[key] = write_phantom_dataset(dataset, out, patients, seed=0, variant=variant)
        return written[key]

    return get


@pytest.fixture
def phantom_copy(phantom_dir, tmp_path):
    """``phantom_copy(dataset, variant=None, patients=4)`` -> a private copy that a test may damage."""
    def get(dataset: str, variant: str | None = None, patients: int = 4) -> Path:
        target = tmp_path / f"copy-{dataset}-{variant or 'default'}"
        shutil.copytree(phantom_dir(dataset, variant, patients), target)
        return target

    return get
