"""Dataset layouts: cases and specs found in phantom datasets written in each official layout."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import LAYOUTS

from shapnas.data.layouts import BRATS_CHANNELS, dataset_spec, list_cases

# (dataset, variant) -> (num cases, num channels, class names, label values, image files per case)
EXPECTED = {
    ("acdc", None): (8, ("cineMRI",), ("background", "RV", "MYO", "LV"), (0, 1, 2, 3), 1),
    ("brats", "2021"): (4, BRATS_CHANNELS, ("background", "NCR", "ED", "ET"), (0, 1, 2, 4), 4),
    ("brats", "2020"): (4, BRATS_CHANNELS, ("background", "NCR", "ED", "ET"), (0, 1, 2, 4), 4),
    ("brats", "2023"): (4, BRATS_CHANNELS, ("background", "NETC", "SNFH", "ET"), (0, 1, 2, 3), 4),
    ("kits", "kits23"): (4, ("CT",), ("background", "kidney", "tumor", "cyst"), (0, 1, 2, 3), 1),
    ("kits", "kits21"): (4, ("CT",), ("background", "kidney", "tumor", "cyst"), (0, 1, 2, 3), 1),
    ("kits", "kits19"): (4, ("CT",), ("background", "kidney", "tumor"), (0, 1, 2), 1),
    ("msd", "msd"): (4, ("FLAIR", "T1w", "t1gd", "T2w"),
                     ("background", "edema", "non-enhancing tumor", "enhancing tumour"), (0, 1, 2, 3), 1),
    ("msd", "nnunet"): (4, ("FLAIR", "T1w", "t1gd", "T2w"),
                        ("background", "edema", "non-enhancing tumor", "enhancing tumour"), (0, 1, 2, 3), 4),
}


@pytest.mark.parametrize("dataset,variant", LAYOUTS)
def test_layouts_find_cases_and_spec(phantom_dir, dataset, variant):
    root = phantom_dir(dataset, variant)
    spec, cases = dataset_spec(dataset, root), list_cases(dataset, root)
    if dataset == "amos":
        assert len(cases) == 4 and spec.modality == "ct" and len(spec.class_names) == 16
        assert spec.class_names[8] == "aorta", "the 'arota' typo of the official dataset.json is fixed"
        assert spec.eval_regions["liver"] == (6,)
        return
    num_cases, channels, classes, values, files = EXPECTED[(dataset, variant)]
    assert len(cases) == num_cases
    assert spec.channel_names == channels and spec.class_names == classes and spec.label_values == values
    assert all(len(c.image_paths) == files and c.label_path.is_file() for c in cases)
    assert [c.case_id for c in cases] == sorted(c.case_id for c in cases)
    assert len({c.case_id for c in cases}) == num_cases
    if dataset == "brats":
        assert spec.eval_regions == {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
        assert cases[0].image_paths[0].name.split(".")[0].endswith(("_flair", "-t2f")), "channel 0 is FLAIR"
    else:
        assert set(spec.eval_regions) == set(classes[1:])
    assert all(c.slice_axis_hint == (0 if variant == "kits19" else None) for c in cases)


def test_acdc_frames_patients_and_roots(phantom_dir, tmp_path):
    root = phantom_dir("acdc")
    cases = list_cases("acdc", root)
    assert [c.patient_id for c in cases[:2]] == ["patient001", "patient001"]
    es = int(dict(line.split(": ") for line in (root / "training/patient001/Info.cfg").read_text().splitlines())["ES"])
    assert [c.case_id for c in cases[:2]] == ["patient001_frame01", f"patient001_frame{es:02d}"]
    # data_dir may also be the training folder itself, or the folder holding database/
    assert len(list_cases("acdc", root / "training")) == 8
    shutil.copytree(root, tmp_path / "ACDC" / "database")
    assert len(list_cases("acdc", tmp_path / "ACDC")) == 8


def test_hidden_and_underscore_names_are_skipped(phantom_copy):
    root = phantom_copy("brats", "2021")
    (root / "._BraTS2021_00000").mkdir()
    (root / "._BraTS2021_00000" / "._BraTS2021_00000_flair.nii.gz").write_bytes(b"\x00\x05junk")
    shutil.copytree(root / "BraTS2021_00001", root / "_backup")
    assert [c.case_id for c in list_cases("brats", root)] == [f"BraTS2021_{i:05d}" for i in range(4)]


def test_brats_2023_patient_strips_timepoint(phantom_dir):
    cases = list_cases("brats", phantom_dir("brats", "2023"))
    assert cases[0].case_id == "BraTS-GLI-00000-000" and cases[0].patient_id == "BraTS-GLI-00000"
    assert [p.name[-10:] for p in cases[0].image_paths] == ["t2f.nii.gz", "t1n.nii.gz", "t1c.nii.gz", "t2w.nii.gz"]


def test_amos_keeps_ct_ids_only(phantom_copy):
    root = phantom_copy("amos")
    for folder in ("imagesTr", "labelsTr"):
        shutil.copy(root / folder / "amos_0001.nii.gz", root / folder / "amos_0540.nii.gz")  # id >= 500: MRI
    assert "amos_0540" not in [c.case_id for c in list_cases("amos", root)]


def test_nnunet_v2_regions_and_modality(phantom_copy):
    root = phantom_copy("msd", "nnunet")
    meta = json.loads((root / "dataset.json").read_text())
    meta["channel_names"] = {"0": "CT"}
    meta["labels"] = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3}
    (root / "dataset.json").write_text(json.dumps(meta))
    spec = dataset_spec("msd", root)
    assert spec.modality == "ct" and spec.label_values == (0, 1, 2, 3)
    assert spec.class_names == ("background", "label_1", "label_2", "enhancing tumor")
    assert spec.eval_regions == {"whole tumor": (1, 2, 3), "tumor core": (2, 3), "enhancing tumor": (3,)}


def test_unknown_dataset_and_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="dataset='lits'"):
        list_cases("lits", tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        dataset_spec("acdc", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        dataset_spec("amos", tmp_path)
