"""Bad inputs: every error names the file and what was expected, and nothing already written is damaged."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from shapnas.config.stage_configs import DataConfig
from shapnas.data.layouts import dataset_spec, list_cases
from shapnas.data.prepared import prepare_data
from shapnas.data.volumes import load_volume


def _first(dataset, root):
    return list_cases(dataset, root)[0], dataset_spec(dataset, root)


def _rewrite(path, data=None, affine=None):
    image = nib.load(path)
    data = np.asarray(image.dataobj) if data is None else data
    nib.save(nib.Nifti1Image(data, image.affine if affine is None else affine), path)


def _cfg(dataset, data_dir, results, **kw):
    return DataConfig(dataset=dataset, data_dir=str(data_dir), results_root=str(results), slice_size=32, **kw)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nope'}: dataset folder not found"):
        prepare_data(_cfg("kits", tmp_path / "nope", tmp_path))


def test_missing_files(phantom_copy):
    acdc = phantom_copy("acdc")
    (acdc / "training/patient002/patient002_frame01_gt.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="patient002_frame01_gt.nii.gz: frame named in .*Info.cfg not found"):
        list_cases("acdc", acdc)
    brats = phantom_copy("brats", "2021")
    (brats / "BraTS2021_00002/BraTS2021_00002_t1ce.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="BraTS2021_00002_t1ce.nii.gz: BraTS channel 't1ce' missing "
                                                "\\(expected 4 channels"):
        list_cases("brats", brats)
    kits = phantom_copy("kits", "kits23")
    (kits / "dataset/case_00001/imaging.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="case_00001/imaging.nii.gz: image of a labelled KiTS case"):
        list_cases("kits", kits)


def test_shape_mismatch(phantom_copy):
    root = phantom_copy("kits", "kits23")
    case, spec = _first("kits", root)
    _rewrite(case.label_path, np.asarray(nib.load(case.label_path).dataobj)[:, :100])
    with pytest.raises(ValueError, match=f"{case.label_path}: label shape .* differs from image .*imaging"):
        load_volume(case, spec, 32)


def test_affine_mismatch(phantom_copy):
    root = phantom_copy("acdc")
    case, spec = _first("acdc", root)
    affine = nib.load(case.label_path).affine.copy()
    affine[:3, 3] += 7.5
    _rewrite(case.label_path, affine=affine)
    with pytest.raises(ValueError, match=f"{case.label_path}: label affine differs from image"):
        load_volume(case, spec, 32)


def test_unexpected_label_value(phantom_copy):
    root = phantom_copy("acdc")
    case, spec = _first("acdc", root)
    label = np.asarray(nib.load(case.label_path).dataobj).copy()
    label[0, 0, 0] = 7
    _rewrite(case.label_path, label)
    with pytest.raises(ValueError, match=f"{case.label_path}: unexpected label value\\(s\\) \\[7\\]; expected "
                                         "\\[0, 1, 2, 3\\]"):
        load_volume(case, spec, 32)


def test_non_3d_and_wrong_channel_count(phantom_copy):
    root = phantom_copy("acdc")
    case, spec = _first("acdc", root)
    _rewrite(case.image_paths[0], np.asarray(nib.load(case.image_paths[0]).dataobj)[:, :, 0])
    with pytest.raises(ValueError, match=f"{case.image_paths[0]}: image shape \\(128, 128\\); expected a 3D image"):
        load_volume(case, spec, 32)
    msd = phantom_copy("msd", "msd")
    case, spec = _first("msd", msd)
    _rewrite(case.image_paths[0], np.asarray(nib.load(case.image_paths[0]).dataobj)[..., :3])
    with pytest.raises(ValueError, match="expected a 3D image .* or a 4D image \\(X, Y, Z, 4\\) with channels FLAIR"):
        load_volume(case, spec, 32)


@pytest.mark.parametrize("dataset,variant,damage", [("kits", "kits23", "truncate"), ("brats", "2020", "truncate"),
                                                    ("amos", None, "corrupt")])
def test_truncated_or_corrupted_file(phantom_copy, dataset, variant, damage):
    root = phantom_copy(dataset, variant)
    case, spec = _first(dataset, root)
    path = case.image_paths[-1]
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    else:  # damaged bytes inside the compressed stream (zlib / CRC error)
        middle = len(raw) // 2
        path.write_bytes(raw[:middle] + bytes(range(256))[:64] + raw[middle + 64:])
    with pytest.raises(ValueError, match=f"{path}: cannot read NIfTI"):
        load_volume(case, spec, 32)


@pytest.mark.parametrize("dataset,message", [("acdc", "no labelled acdc cases found"),
                                             ("brats", "no BraTS case folders found"),
                                             ("kits", "no KiTS case folders found"),
                                             ("amos", "dataset.json not found")])
def test_empty_dataset(tmp_path, dataset, message):
    (tmp_path / "empty").mkdir()
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        prepare_data(_cfg(dataset, tmp_path / "empty", tmp_path))


def test_too_few_patients(phantom_dir, tmp_path):
    with pytest.raises(ValueError, match="3 patient\\(s\\) found; at least 4 are needed"):
        prepare_data(_cfg("amos", phantom_dir("amos", patients=3), tmp_path))
    assert not (tmp_path / "amos").exists() and not (tmp_path / "cache").exists()


def test_msd_needs_data_dir(tmp_path):
    with pytest.raises(ValueError, match="'msd' needs --data-dir"):
        prepare_data(DataConfig(dataset="msd", results_root=str(tmp_path)))


def test_failing_call_damages_nothing(phantom_copy, tmp_path):
    root = phantom_copy("kits", "kits23")
    results = tmp_path / "results"
    prepare_data(_cfg("kits", root, results))
    written = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    assert any(p.name == "splits.json" for p in written) and sum(p.suffix == ".npz" for p in written) == 4
    bad = root / "dataset/case_00002/segmentation.nii.gz"
    bad.write_bytes(bad.read_bytes()[:300])
    with pytest.raises(ValueError, match=f"{bad}: cannot read NIfTI"):
        prepare_data(_cfg("kits", root, results))
    after = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    assert after == written, "splits.json and the cache are unchanged, no temporary file is left"
