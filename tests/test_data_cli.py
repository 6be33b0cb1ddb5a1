"""prepare_data (slices, cache, slice cap, phantom default) and the ``phantoms`` / ``data`` subcommands."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import shapnas.data.prepared
from shapnas.cli import main
from shapnas.config.stage_configs import DataConfig
from shapnas.data.phantoms import phantom_info
from shapnas.data.prepared import cache_dir, prepare_data, select_slices


def _cfg(dataset, data_dir, results, **kw):
    return DataConfig(dataset=dataset, data_dir=str(data_dir), results_root=str(results), slice_size=32, **kw)


@pytest.fixture
def count_decodes(monkeypatch):
    """Counts calls of the real ``load_volume`` made by ``prepare_data`` (NIfTI decodes)."""
    calls = []
    real = shapnas.data.prepared.load_volume

    def counting(case, spec, slice_size):
        calls.append(case.case_id)
        return real(case, spec, slice_size)

    monkeypatch.setattr(shapnas.data.prepared, "load_volume", counting)
    return calls


def test_prepare_data_slices_and_splits(phantom_dir, tmp_path):
    prepared = prepare_data(_cfg("acdc", phantom_dir("acdc"), tmp_path))
    assert (tmp_path / "acdc" / "splits.json").is_file()
    for split, patients in prepared.splits.items():
        volumes = prepared.volumes[split]
        assert sorted({v.patient_id for v in volumes}) == patients and len(volumes) == 2 * len(patients)
        images, labels = prepared.slices(split)
        assert images.dtype == torch.float32 and labels.dtype == torch.int64
        num_slices = sum(v.image.shape[0] for v in volumes)
        assert images.shape == (num_slices, 1, 32, 32) and labels.shape == (num_slices, 1, 32, 32)
        np.testing.assert_array_equal(labels[: volumes[0].label.shape[0], 0].numpy(), volumes[0].label)
    with pytest.raises(ValueError, match="split='train'"):
        prepared.slices("train")


def test_cache_is_reused_and_invalidated(phantom_copy, tmp_path, count_decodes):
    root = phantom_copy("kits", "kits23")
    cfg = _cfg("kits", root, tmp_path)
    first = prepare_data(cfg)
    assert len(count_decodes) == 4
    assert sorted(p.name for p in cache_dir(cfg, root, first.spec).iterdir()) == [f"case_{i:05d}.npz" for i in range(4)]
    second = prepare_data(cfg)
    assert len(count_decodes) == 4, "the second call reads the cache, no NIfTI decoding"
    for split in first.volumes:
        for a, b in zip(first.volumes[split], second.volumes[split]):
            np.testing.assert_array_equal(a.image, b.image)
            np.testing.assert_array_equal(a.label, b.label)
            assert a.spacing == b.spacing
    source = root / "dataset/case_00001/imaging.nii.gz"
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the source changed: decode that case again
    (cache_dir(cfg, root, first.spec) / "case_00003.npz").write_bytes(b"garbage")  # damaged entry: decode again
    prepare_data(cfg)
    assert count_decodes[4:] == ["case_00001", "case_00003"]
    other = prepare_data(cfg.replace(slice_size=48))
    assert other.volumes["test"][0].image.shape[-1] == 48 and len(count_decodes) == 10, "slice size has its own cache"


def test_max_slices_keeps_foreground_rich_training_slices(phantom_dir, tmp_path):
    root = phantom_dir("kits", "kits23")
    full = prepare_data(_cfg("kits", root, tmp_path))
    capped = prepare_data(_cfg("kits", root, tmp_path, max_slices_per_volume=3))
    for split in ("train_w", "train_a", "val"):
        for whole, cut in zip(full.volumes[split], capped.volumes[split]):
            assert cut.label.shape[0] == 3
            foreground = (whole.label > 0).sum(axis=(1, 2))
            kept = select_slices(whole.label, 3)
            np.testing.assert_array_equal(cut.label, whole.label[kept])
            assert foreground[kept].min() >= np.delete(foreground, kept).max()
    assert [v.label.shape for v in capped.volumes["test"]] == [v.label.shape for v in full.volumes["test"]], \
        "test volumes stay whole"


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=30), st.integers(0, 12))
def test_select_slices_property(foreground, max_slices):
    label = np.zeros((len(foreground), 2, 3), dtype=np.int64)
    for i, count in enumerate(foreground):
        label[i].ravel()[:count] = 1
    kept = select_slices(label, max_slices)
    expected = len(foreground) if max_slices == 0 else min(max_slices, len(foreground))
    assert len(kept) == expected and (np.diff(kept) > 0).all(), "unique, in anatomical order"
    counts = np.array(foreground)
    if 0 < max_slices < len(foreground):
        dropped = np.delete(counts, kept)
        assert counts[kept].min() >= dropped.max() or counts[kept].min() == 0 == dropped.max()


def test_phantom_default_written_once(tmp_path):
    cfg = DataConfig(dataset="amos", results_root=str(tmp_path), phantom_patients=4, slice_size=32)
    prepared = prepare_data(cfg)
    root = tmp_path / "phantoms" / "amos"
    assert prepared.data_dir == root and phantom_info(root)["num_patients"] == 4
    marker = (root / "_phantom.json").stat().st_mtime_ns
    prepare_data(cfg)
    assert (root / "_phantom.json").stat().st_mtime_ns == marker, "the phantom data is reused"


def test_cli_phantoms_and_data(tmp_path, capsys):
    out = tmp_path / "acdc"
    assert main(["phantoms", "--dataset", "acdc", "--out", str(out), "--patients", "4", "--seed", "1"]) == 0
    assert f"to {out}" in capsys.readouterr().out
    args = ["data", "--dataset", "acdc", "--data-dir", str(out), "--results", str(tmp_path / "r"), "--slice-size", "32"]
    assert main(args + ["--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"]["train_w"]["patients"] == 1 and summary["splits"]["test"]["cases"] == 2
    assert set(summary["class_frequencies"]) == {"background", "RV", "MYO", "LV"}
    assert sum(summary["class_frequencies"].values()) == pytest.approx(1.0)
    assert summary["intensity"]["cineMRI"]["p1"] < summary["intensity"]["cineMRI"]["p99"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "train_w" in text and "MYO" in text and "cineMRI" in text
    assert main(["data", "--dataset", "kits", "--data-dir", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "missing") in err[0]
    assert main(["phantoms", "--dataset", "brats", "--out", str(tmp_path / "b"), "--variant", "2030"]) == 2


@pytest.mark.parametrize("command", ["phantoms", "data"])
def test_cli_help_has_examples(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "Examples:" in capsys.readouterr().out
