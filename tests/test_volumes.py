"""load_volume: reorientation, slicing axis, normalisation, resizing and label remapping on real NIfTI files."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from conftest import LAYOUTS
from hypothesis import given, settings
from hypothesis import strategies as st

from shapnas.data.layouts import CaseFiles, DatasetSpec, dataset_spec, list_cases
from shapnas.data.phantoms.writers import write_nifti
from shapnas.data.volumes import CT_WINDOW, load_volume, normalise, resize_slices, to_slices

ACDC = DatasetSpec("acdc", ("cineMRI",), ("background", "RV", "MYO", "LV"), (0, 1, 2, 3), "mri",
                   {"RV": (1,), "MYO": (2,), "LV": (3,)})
KITS = DatasetSpec("kits", ("CT",), ("background", "kidney", "tumor"), (0, 1, 2), "ct",
                   {"kidney": (1,), "tumor": (2,)})


@pytest.mark.parametrize("dataset,variant", LAYOUTS)
def test_load_every_layout(phantom_dir, dataset, variant):
    root = phantom_dir(dataset, variant)
    spec = dataset_spec(dataset, root)
    volume = load_volume(list_cases(dataset, root)[0], spec, 32)
    num_slices = volume.image.shape[0]
    assert volume.image.shape == (num_slices, len(spec.channel_names), 32, 32) and volume.image.dtype == np.float32
    assert volume.label.shape == (num_slices, 32, 32) and volume.label.dtype == np.int64
    assert np.isfinite(volume.image).all()
    assert set(np.unique(volume.label)) <= set(range(len(spec.class_names))) and volume.label.max() > 0
    expected_slices = {"acdc": (8, 10), "brats": (32, 32), "msd": (32, 32), "kits": (24, 24), "amos": (24, 24)}
    assert expected_slices[dataset][0] <= num_slices <= expected_slices[dataset][1], "sliced along the wrong axis"
    assert volume.spacing[2] in {"acdc": (8.0, 10.0), "kits": (5.0,), "amos": (8.0,)}.get(dataset, (2.0,))
    if spec.modality == "ct":
        assert volume.image.min() >= -1 and volume.image.max() <= 1
    else:
        foreground = volume.image[:, 0][volume.image[:, 0] != 0]
        assert abs(foreground.mean()) < 0.2 and 0.8 < foreground.std() < 1.2


def _labels(shape, rng):
    return rng.integers(0, 4, shape).astype(np.uint8)


@pytest.mark.parametrize("axcodes,rotation", [(("R", "A", "S"), 0.0), (("L", "P", "S"), 0.0), (("I", "P", "L"), 0.0),
                                              (("A", "S", "R"), 0.0), (("L", "P", "S"), 25.0)])
def test_reorientation_round_trip(tmp_path, axcodes, rotation):
    """Whatever the on-disk voxel order, the slices equal those of the canonical array (largest spacing: Z)."""
    rng = np.random.default_rng(0)
    canonical = _labels((16, 16, 5), rng)
    image = rng.normal(100, 10, canonical.shape).astype(np.float32)
    spacing = (1.5, 1.5, 8.0)
    write_nifti(tmp_path / "img.nii.gz", image, spacing, axcodes=axcodes, dtype=np.float32, rotation_deg=rotation)
    write_nifti(tmp_path / "lab.nii.gz", canonical, spacing, axcodes=axcodes, dtype=np.uint8, rotation_deg=rotation)
    case = CaseFiles("c", "p", (tmp_path / "img.nii.gz",), tmp_path / "lab.nii.gz")
    volume = load_volume(case, ACDC, 16)
    np.testing.assert_array_equal(volume.label, to_slices(canonical, 2))
    np.testing.assert_allclose(volume.spacing, spacing, rtol=1e-5)
    expected = to_slices(image, 2)
    np.testing.assert_allclose(volume.image[:, 0], (expected - image.mean()) / image.std(), atol=1e-4)


def test_kits19_thin_slices_follow_axis_zero(tmp_path):
    """KiTS19: voxel axis 0 holds the slices even when the slices are thinner than the pixels."""
    rng = np.random.default_rng(1)
    canonical = _labels((16, 16, 6), rng) % 3
    spacing = (2.0, 2.0, 1.0)  # slices thinner than pixels: "largest spacing" would pick an in-plane axis
    write_nifti(tmp_path / "imaging.nii.gz", np.full(canonical.shape, 40.0), spacing, axcodes=("I", "P", "L"),
                dtype=np.float32)
    write_nifti(tmp_path / "segmentation.nii.gz", canonical, spacing, axcodes=("I", "P", "L"), dtype=np.uint8)
    case = CaseFiles("case_00000", "case_00000", (tmp_path / "imaging.nii.gz",), tmp_path / "segmentation.nii.gz", 0)
    volume = load_volume(case, KITS, 16)
    assert volume.label.shape == (6, 16, 16)
    np.testing.assert_array_equal(volume.label, to_slices(canonical, 2))
    spec_mri = DatasetSpec("x", ("a",), KITS.class_names, KITS.label_values, "mri", KITS.eval_regions)
    assert load_volume(CaseFiles("c", "c", case.image_paths, case.label_path), spec_mri, 16).label.shape[0] == 16


def test_brats_labels_are_remapped(phantom_dir):
    root = phantom_dir("brats", "2021")
    for case in list_cases("brats", root):
        on_disk = np.asarray(nib.load(case.label_path).dataobj)
        if 4 in on_disk:
            break
    assert set(np.unique(on_disk)) <= {0, 1, 2, 4} and 4 in on_disk
    volume = load_volume(case, dataset_spec("brats", root), 96)  # native size: no resampling
    counts_disk = [(on_disk == v).sum() for v in (0, 1, 2, 4)]
    assert [(volume.label == k).sum() for k in range(4)] == counts_disk


def test_normalise_ct_window_and_mri_mask():
    hu = np.array([-1000.0, CT_WINDOW[0], sum(CT_WINDOW) / 2, CT_WINDOW[1], 2000.0]).reshape(1, 1, 1, 5)
    np.testing.assert_allclose(normalise(hu, "ct", False).ravel(), [-1, -1, 0, 1, 1])
    rng = np.random.default_rng(0)
    mri = np.zeros((3, 2, 8, 8), dtype=np.float32)
    mri[:, :, 2:6, 2:6] = rng.normal(500, 50, (3, 2, 4, 4))
    out = normalise(mri, "mri", use_mask=True)
    inside = out[:, :, 2:6, 2:6]
    np.testing.assert_allclose(inside.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(inside.std(axis=(0, 2, 3)), 1, atol=1e-4)
    assert (out[:, :, :2] == 0).all(), "outside the nonzero mask stays 0"


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(8, 40), st.integers(8, 40), st.sampled_from([16, 32]), st.integers(0, 2**31 - 1))
def test_resize_properties(num_slices, height, width, size, seed):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 5, (num_slices, height, width))
    constant = np.full((num_slices, 2, height, width), 3.5, dtype=np.float32)
    image, resized = resize_slices(constant, label, size)
    assert image.shape == (num_slices, 2, size, size) and resized.shape == (num_slices, size, size)
    np.testing.assert_allclose(image, 3.5, rtol=1e-5)  # bilinear keeps constants
    assert set(np.unique(resized)) <= set(np.unique(label))  # nearest never invents labels
    if height == width == size:
        np.testing.assert_array_equal(resized, label)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2), st.integers(2, 6), st.integers(2, 6), st.integers(2, 6))
def test_to_slices_is_a_permutation(axis, nx, ny, nz):
    data = np.arange(nx * ny * nz).reshape(nx, ny, nz)
    slices = to_slices(data, axis)
    assert slices.shape[0] == data.shape[axis]
    np.testing.assert_array_equal(np.sort(slices.ravel()), data.ravel())
    np.testing.assert_array_equal(np.sort(slices[0].ravel()), np.sort(np.take(data, 0, axis=axis).ravel()))
