"""Official on-disk dataset layouts: which files make a case, and what the labels mean.

Layouts (described for users in the book's "Real data" page, ``book/real_data.md``): ACDC (Bernard et al., IEEE TMI 2018), BraTS 2020/2021 and
2023 GLI, KiTS19 and KiTS21/23, AMOS22 and the MSD / nnU-Net raw format (``msd``). Files whose names start
with ``.`` or ``_`` are skipped (macOS ``._*`` files, as nnU-Net's ``convert_MSD_dataset.py`` does).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["DatasetSpec", "CaseFiles", "dataset_spec", "list_cases", "BRATS_CHANNELS", "NIFTI_SUFFIXES", "LAYOUT_HELP",
           "FOLDER_LAYOUTS"]

NIFTI_SUFFIXES = (".nii.gz", ".nii")
LAYOUT_HELP = "see the book's page \"Real data\" (book/real_data.md) for each dataset's folder layout"

# what a dataset folder holds, in one line (the error of a folder that does not fit names it; book/real_data.md
# has more)
FOLDER_LAYOUTS = {
    "acdc": "[database/][training/]patientXXX/ folders, each with Info.cfg and patientXXX_frameNN[_gt].nii.gz",
    "brats": "<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz (2020/2021) or <case>/<case>-{t2f,t1n,t1c,t2w,seg}.nii.gz "
             "(2023) case folders",
    "kits": "[dataset/|data/]case_XXXXX/ folders with imaging.nii.gz and segmentation.nii.gz",
    "amos": "an AMOS22 folder with dataset.json, imagesTr/ and labelsTr/",
    "msd": "an MSD TaskXX_Name or nnU-Net DatasetXXX_Name folder with dataset.json, imagesTr/ and labelsTr/",
}
BRATS_CHANNELS = ("flair", "t1", "t1ce", "t2")  # fixed channel order, whatever the file naming
_BRATS_SUFFIX = {  # naming -> channel -> file suffix (without extension)
    "2021": {"flair": "_flair", "t1": "_t1", "t1ce": "_t1ce", "t2": "_t2", "seg": "_seg"},
    "2023": {"flair": "-t2f", "t1": "-t1n", "t1ce": "-t1c", "t2": "-t2w", "seg": "-seg"},
}
_NAME_FIXES = {"arota": "aorta"}  # known typos in public dataset.json copies (AMOS)


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset's channels and labels are.

    Args:
        name: the dataset key (``acdc brats kits amos msd``).
        channel_names: one name per input channel, in the order the loader stacks them.
        class_names: contiguous classes, index 0 = background.
        label_values: on-disk label value of each contiguous class.
        modality: ``mri`` or ``ct`` (chooses the normalisation).
        eval_regions: region name -> contiguous class ids; one region per foreground class named by the
            class, except BraTS (WT, TC, ET) and nnU-Net region datasets.
    """

    name: str
    channel_names: tuple[str, ...]
    class_names: tuple[str, ...]
    label_values: tuple[int, ...]
    modality: Literal["mri", "ct"]
    eval_regions: dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class CaseFiles:
    """The files of one labelled case (one 3D volume).

    Args:
        case_id: unique case name (e.g. ``patient001_frame01``).
        patient_id: the patient it belongs to (splits are by patient).
        image_paths: one file per channel (in ``spec.channel_names`` order), or a single 4D file.
        label_path: the label file.
        slice_axis_hint: voxel axis of the file that holds the slices when the layout fixes it
            (KiTS19: 0), else ``None`` (the loader decides from the geometry).
    """

    case_id: str
    patient_id: str
    image_paths: tuple[Path, ...]
    label_path: Path
    slice_axis_hint: int | None = None


def _visible(path: Path) -> bool:
    return not path.name.startswith((".", "_"))


def _children(folder: Path, *, dirs: bool) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _visible(p) and p.is_dir() == dirs)


def _find_nifti(folder: Path, stem: str) -> Path | None:
    """``folder/stem.nii.gz`` or ``folder/stem.nii``, whichever exists."""
    for suffix in NIFTI_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def _strip_nifti(name: str) -> str:
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _check_dir(data_dir: Path) -> Path:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: dataset folder not found; {LAYOUT_HELP}")
    return data_dir


def _per_class_regions(class_names: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    return {name: (index,) for index, name in enumerate(class_names) if index > 0}


# ----------------------------------------------------------------------------------------------- specs
def dataset_spec(dataset: str, data_dir: Path) -> DatasetSpec:
    """The spec of ``dataset`` as found in ``data_dir`` (BraTS naming, KiTS version, dataset.json).

    Args:
        dataset: one of ``acdc brats kits amos msd``.
        data_dir: dataset root in its official layout.

    Returns:
        The dataset spec.

    Raises:
        FileNotFoundError: missing folder or dataset.json.
        ValueError: unknown dataset or unreadable dataset.json.
    """
    data_dir = _check_dir(data_dir)
    if dataset == "acdc":
        classes = ("background", "RV", "MYO", "LV")
        return DatasetSpec("acdc", ("cineMRI",), classes, (0, 1, 2, 3), "mri", _per_class_regions(classes))
    if dataset == "brats":
        naming = _brats_naming(data_dir)
        classes = ("background", "NCR", "ED", "ET") if naming == "2021" else ("background", "NETC", "SNFH", "ET")
        values = (0, 1, 2, 4) if naming == "2021" else (0, 1, 2, 3)
        regions = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
        return DatasetSpec("brats", BRATS_CHANNELS, classes, values, "mri", regions)
    if dataset == "kits":
        version = _kits_version(data_dir)
        classes = ("background", "kidney", "tumor") + (("cyst",) if version != "kits19" else ())
        return DatasetSpec("kits", ("CT",), classes, tuple(range(len(classes))), "ct", _per_class_regions(classes))
    if dataset == "amos":
        return _json_spec("amos", data_dir, modality="ct")
    if dataset == "msd":
        return _json_spec("msd", data_dir, modality=None)
    raise ValueError(f"dataset={dataset!r}; expected one of acdc, brats, kits, amos, msd")


def _read_dataset_json(data_dir: Path) -> dict[str, Any]:
    path = data_dir / "dataset.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dataset.json not found (MSD / nnU-Net layout expected); {LAYOUT_HELP}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def _json_spec(name: str, data_dir: Path, modality: str | None) -> DatasetSpec:
    """Spec from an MSD v1 (``"0": "background"``) or nnU-Net v2 (``"background": 0``) dataset.json."""
    meta = _read_dataset_json(data_dir)
    path = data_dir / "dataset.json"
    channels_raw = meta.get("channel_names", meta.get("modality"))
    labels_raw = meta.get("labels")
    if not isinstance(channels_raw, dict) or not isinstance(labels_raw, dict) or not labels_raw:
        raise ValueError(f"{path}: expected 'labels' and 'modality' (MSD) or 'channel_names' (nnU-Net) mappings")
    channels = tuple(str(channels_raw[k]) for k in sorted(channels_raw, key=int))
    names: dict[int, str] = {}
    entries: dict[str, list[int]] = {}  # v2 label name -> values (a region when it lists several)
    for key, value in labels_raw.items():
        if str(key).lstrip("-").isdigit():  # v1: "0": "background"
            names[int(key)] = _NAME_FIXES.get(str(value), str(value))
        elif isinstance(value, (list, tuple)):  # v2 region: "whole tumor": [1, 2, 3]
            entries[str(key)] = [int(v) for v in value]
        else:  # v2: "background": 0
            names[int(value)] = _NAME_FIXES.get(str(key), str(key))
            entries[str(key)] = [int(value)]
    values = sorted(set(names) | {v for r in entries.values() for v in r} | {0})
    class_names = tuple(names.get(v, "background" if v == 0 else f"label_{v}") for v in values)
    if modality is None:
        modality = "ct" if any(c.strip().lower() == "ct" for c in channels) else "mri"
    if any(len(r) > 1 for r in entries.values()):  # nnU-Net region-based dataset: every entry is a region
        regions = {k: tuple(values.index(v) for v in r) for k, r in entries.items() if r != [0]}
    else:
        regions = _per_class_regions(class_names)
    return DatasetSpec(name, channels, class_names, tuple(values), modality, regions)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------- cases
def list_cases(dataset: str, data_dir: Path) -> list[CaseFiles]:
    """Every labelled case of ``dataset`` under ``data_dir``, sorted by case id.

    Args:
        dataset: one of ``acdc brats kits amos msd``.
        data_dir: dataset root in its official layout.

    Returns:
        The cases (possibly empty when the folder holds none).

    Raises:
        FileNotFoundError: missing folder, or a case missing an expected file (named).
        ValueError: unknown dataset.
    """
    data_dir = _check_dir(data_dir)
    listers = {"acdc": _acdc_cases, "brats": _brats_cases, "kits": _kits_cases, "amos": _amos_cases,
               "msd": _msd_cases}
    if dataset not in listers:
        raise ValueError(f"dataset={dataset!r}; expected one of {', '.join(listers)}")
    return sorted(listers[dataset](data_dir), key=lambda case: case.case_id)


def _acdc_cases(data_dir: Path) -> list[CaseFiles]:
    """ACDC: ``[database/][training/]patientXXX/patientXXX_frameNN.nii.gz`` + ``_gt``, ED and ES from Info.cfg."""
    for root in (data_dir, data_dir / "training", data_dir / "database" / "training"):
        patients = [p for p in _children(root, dirs=True) if p.name.startswith("patient")] if root.is_dir() else []
        if patients:
            break
    cases = []
    for folder in patients:
        info = folder / "Info.cfg"
        if not info.is_file():
            raise FileNotFoundError(f"{info}: Info.cfg not found (it names the ED and ES frames)")
        fields = dict(line.split(":", 1) for line in info.read_text().splitlines() if ":" in line)
        for phase in ("ED", "ES"):
            if phase not in fields or not fields[phase].strip().isdigit():
                raise ValueError(f"{info}: expected a line '{phase}: <frame number>'")
        for frame in sorted({int(fields["ED"]), int(fields["ES"])}):
            stem = f"{folder.name}_frame{frame:02d}"
            image, label = _find_nifti(folder, stem), _find_nifti(folder, f"{stem}_gt")
            for found, want in ((image, stem), (label, f"{stem}_gt")):
                if found is None:
                    raise FileNotFoundError(f"{folder / want}.nii.gz: frame named in {info} not found")
            cases.append(CaseFiles(stem, folder.name, (image,), label))  # type: ignore[arg-type]
    return cases


def _brats_case_dirs(data_dir: Path) -> list[Path]:
    """Case folders: children of ``data_dir`` holding a seg file, else one level deeper (HGG/LGG)."""
    def is_case(folder: Path) -> bool:
        return any(_visible(f) and re.search(r"(_flair|-t2f)\.nii(\.gz)?$", f.name) for f in folder.iterdir())

    found = [d for d in _children(data_dir, dirs=True) if is_case(d)]
    if not found:
        found = [d for sub in _children(data_dir, dirs=True) for d in _children(sub, dirs=True) if is_case(d)]
    return found


def _brats_naming(data_dir: Path) -> str:
    folders = _brats_case_dirs(data_dir)
    if not folders:
        raise ValueError(f"{data_dir}: no BraTS case folders found; expected <case>/<case>_flair.nii.gz "
                         f"(2020/2021) or <case>/<case>-t2f.nii.gz (2023); {LAYOUT_HELP}")
    return "2023" if any(f.name.endswith("-t2f.nii.gz") or f.name.endswith("-t2f.nii")
                         for f in folders[0].iterdir()) else "2021"


def _brats_cases(data_dir: Path) -> list[CaseFiles]:
    """BraTS 2020/2021 ``<case>/<case>_{flair,t1,t1ce,t2,seg}`` or 2023 ``<case>/<case>-{t2f,t1n,t1c,t2w,seg}``."""
    folders = _brats_case_dirs(data_dir)
    if not folders:
        return []
    suffix = _BRATS_SUFFIX[_brats_naming(data_dir)]
    cases = []
    for folder in folders:
        images = []
        for channel in BRATS_CHANNELS:
            path = _find_nifti(folder, folder.name + suffix[channel])
            if path is None:
                raise FileNotFoundError(f"{folder / (folder.name + suffix[channel])}.nii.gz: BraTS channel "
                                        f"{channel!r} missing (expected 4 channels {', '.join(BRATS_CHANNELS)})")
            images.append(path)
        label = _find_nifti(folder, folder.name + suffix["seg"])
        if label is None:  # e.g. BraTS 2020 case 355: W39_1998.09.19_Segm.nii
            segs = [f for f in folder.iterdir() if _visible(f) and re.search(r"seg\w*\.nii(\.gz)?$", f.name, re.I)]
            if len(segs) != 1:
                raise FileNotFoundError(f"{folder / (folder.name + suffix['seg'])}.nii.gz: segmentation not found")
            label = segs[0]
        patient = re.sub(r"-\d{3}$", "", folder.name)  # 2023: BraTS-GLI-<patient>-<timepoint>
        cases.append(CaseFiles(folder.name, patient, tuple(images), label))
    return cases


def _kits_case_dirs(data_dir: Path) -> list[Path]:
    for root in (data_dir, data_dir / "dataset", data_dir / "data"):
        if root.is_dir():
            found = [d for d in _children(root, dirs=True) if d.name.startswith("case_")]
            if found:
                return found
    return []


def _kits_version(data_dir: Path) -> str:
    """``kits19`` (``kits.json`` beside the cases, or cases with ``segmentation`` only under ``data/``) or
    ``kits23`` (KiTS21/23: labels 1 kidney, 2 tumor, 3 cyst)."""
    folders = _kits_case_dirs(data_dir)
    if not folders:
        raise ValueError(f"{data_dir}: no KiTS case folders found; expected [dataset/|data/]case_XXXXX/imaging.nii.gz; "
                         f"{LAYOUT_HELP}")
    parent = folders[0].parent
    if (parent / "kits.json").is_file():
        return "kits19"
    has_majority = any((f / "aggregated_MAJ_seg.nii.gz").is_file() for f in folders)
    return "kits19" if parent.name == "data" and not has_majority else "kits23"


def _kits_cases(data_dir: Path) -> list[CaseFiles]:
    """KiTS19 ``data/case_XXXXX/{imaging,segmentation}.nii.gz`` (slices on axis 0), KiTS21
    ``aggregated_MAJ_seg.nii.gz``, KiTS23 ``dataset/case_XXXXX/segmentation.nii.gz``. Unlabelled test cases are
    skipped."""
    folders = _kits_case_dirs(data_dir)
    if not folders:
        return []
    hint = 0 if _kits_version(data_dir) == "kits19" else None
    cases = []
    for folder in folders:
        label = _find_nifti(folder, "aggregated_MAJ_seg") or _find_nifti(folder, "segmentation")
        if label is None:
            continue  # test case without labels (KiTS19 case_00210+)
        image = _find_nifti(folder, "imaging")
        if image is None:
            raise FileNotFoundError(f"{folder / 'imaging.nii.gz'}: image of a labelled KiTS case not found")
        cases.append(CaseFiles(folder.name, folder.name, (image,), label, hint))
    return cases


def _paired_cases(data_dir: Path, keep: Any = None) -> list[CaseFiles]:
    """``imagesTr/<case>.nii.gz`` (3D/4D) or ``imagesTr/<case>_0000.nii.gz ...`` with ``labelsTr/<case>.nii.gz``."""
    images_dir, labels_dir = data_dir / "imagesTr", data_dir / "labelsTr"
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: folder not found (MSD / nnU-Net layout: imagesTr, labelsTr); {LAYOUT_HELP}")
    cases = []
    for label in sorted(p for p in labels_dir.iterdir() if _visible(p) and p.name.endswith(NIFTI_SUFFIXES)):
        case = _strip_nifti(label.name)
        if keep is not None and not keep(case):
            continue
        single = _find_nifti(images_dir, case)
        if single is not None:
            images: tuple[Path, ...] = (single,)
        else:
            channels = sorted(images_dir.glob(f"{case}_[0-9][0-9][0-9][0-9].nii*"))
            if not channels:
                raise FileNotFoundError(f"{images_dir / case}.nii.gz: no image for label {label} "
                                        f"(expected {case}.nii.gz or {case}_0000.nii.gz)")
            images = tuple(channels)
        cases.append(CaseFiles(case, case, images, label))
    return cases


def _amos_cases(data_dir: Path, max_ct_id: int = 500) -> list[CaseFiles]:
    """AMOS22 ``imagesTr/amos_XXXX.nii.gz`` + ``labelsTr``; CT scans only (id < 500, AMOS readme)."""
    def is_ct(case: str) -> bool:
        match = re.search(r"(\d+)$", case)
        return match is not None and int(match.group(1)) < max_ct_id

    return _paired_cases(data_dir, keep=is_ct)


def _msd_cases(data_dir: Path) -> list[CaseFiles]:
    """MSD Task folder (one 4D image per case) or nnU-Net v2 raw folder (``_0000`` channel files)."""
    return _paired_cases(data_dir)
