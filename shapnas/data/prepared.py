"""Prepared data of a run: every case loaded as 2D slices (cached), grouped by the patient-level splits.

``prepare_data(cfg)`` resolves the dataset (the phantom data under ``<results_root>/phantoms/<dataset>``
when ``cfg.data_dir`` is empty), loads each case through :func:`shapnas.data.volumes.load_volume` with a slice
cache, and reads or writes ``<results_root>/<dataset>/splits.json`` (W, A, V, test by patient; method.md).

The input is normalised as :func:`shapnas.data.volumes.normalise` does, or for an nnU-Net backbone with the
model's own nnU-Net normalisation (:func:`input_normaliser`); the cache key tells the two apart.

``prepare_site_data(cfg, site)`` gives either site of the transfer setting through the same loaders and caches:
``source`` is ``prepare_data(cfg)``; ``target`` reads ``cfg.target_data_dir`` (or the phantoms' second site under
``<results_root>/phantoms/<dataset>-site-b``) split by ``<results_root>/<dataset>/splits-target-<n>.json``
(W, A, V from ``n = cfg.target_train_patients`` labelled patients, every other patient a test patient).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from shapnas.config.stage_configs import MIN_TARGET_TEST_PATIENTS, DataConfig
from shapnas.data.layouts import LAYOUT_HELP, CaseFiles, DatasetSpec, dataset_spec, list_cases
from shapnas.data.phantoms import PHANTOM_VARIANTS, phantom_info, phantom_marker, write_phantom_dataset
from shapnas.data.splits import SPLIT_NAMES, load_or_create_splits, load_or_create_transfer_splits
from shapnas.data.volumes import Volume, load_volume
from shapnas.runs.files import dataset_dir

if TYPE_CHECKING:
    from shapnas.networks.nnunet import NnUNetNormalisation

__all__ = ["PreparedData", "prepare_data", "prepare_site_data", "resolve_data_dir", "resolve_site_data_dir",
           "target_splits_path", "cache_dir", "input_normaliser", "select_slices", "summarize", "restrict_classes",
           "CACHE_VERSION", "SITES", "TARGET_PHANTOM_SITE"]

CACHE_VERSION = 1  # bump when load_volume's output changes
SITES = ("source", "target")  # the transfer setting's two sites
TARGET_PHANTOM_SITE = "b"  # the phantoms' acquisition site that stands for the target site


@dataclass
class PreparedData:
    """Loaded volumes of one dataset, by split.

    Args:
        spec: the dataset spec.
        data_dir: the dataset root that was read.
        splits: split name (``train_w train_a val test``) -> patient ids.
        volumes: split name -> volumes of its patients' cases, sorted by case id (training and V volumes
            capped to ``max_slices_per_volume`` slices; test volumes whole).
        val_whole: the V volumes with every slice (patient-level model selection); empty means
            ``volumes["val"]`` (nothing was capped).
    """

    spec: DatasetSpec
    data_dir: Path
    splits: dict[str, list[str]]
    volumes: dict[str, list[Volume]]
    val_whole: list[Volume] = field(default_factory=list)

    def selection_volumes(self) -> list[Volume]:
        """The whole V volumes that every arm is selected on (patient-level Dice)."""
        return self.val_whole or self.volumes["val"]

    def slices(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """All slices of a split: images (N, C, H, W) float32 and labels (N, 1, H, W) int64 (new tensors)."""
        if split not in self.volumes:
            raise ValueError(f"split={split!r}; expected one of {', '.join(self.volumes)}")
        if not self.volumes[split]:
            raise ValueError(f"split {split!r} holds no volumes")
        return _stack_slices(self.volumes[split])

    def selection_slices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every slice of :meth:`selection_volumes` (the whole V volumes): images (N, C, H, W) float32, labels
        (N, 1, H, W) int64 (new tensors)."""
        return _stack_slices(self.selection_volumes())

    def training_slices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All training slices, W then A: images (N, C, H, W) float32 and labels (N, 1, H, W) int64 (what every
        training stage fits: pre-training, the fine-tuned control, the re-training)."""
        (w_images, w_labels), (a_images, a_labels) = self.slices("train_w"), self.slices("train_a")
        return torch.cat([w_images, a_images]), torch.cat([w_labels, a_labels])


def _stack_slices(volumes: list[Volume]) -> tuple[torch.Tensor, torch.Tensor]:
    """The volumes' slices stacked: images (N, C, H, W) float32 and labels (N, 1, H, W) int64."""
    images = np.concatenate([v.image for v in volumes])  # (N, C, H, W)
    labels = np.concatenate([v.label for v in volumes])[:, None]  # (N, 1, H, W)
    return torch.from_numpy(images.astype(np.float32)), torch.from_numpy(labels.astype(np.int64))


def resolve_data_dir(cfg: DataConfig) -> Path:
    """``cfg.data_dir``, or the phantom dataset under ``<results_root>/phantoms/<dataset>`` (written when it is
    missing or was written with other parameters)."""
    if cfg.data_dir:
        return Path(cfg.data_dir)
    if cfg.dataset == "msd":
        raise ValueError("dataset 'msd' needs --data-dir (an MSD TaskXX_Name or nnU-Net DatasetXXX_Name folder); "
                         "only acdc, brats, kits and amos have embedded phantom data")
    return _phantom_root(cfg.dataset, Path(cfg.results_root) / "phantoms" / cfg.dataset, cfg.phantom_patients,
                         cfg.phantom_seed, "a")


def _phantom_root(dataset: str, root: Path, num_patients: int, seed: int, site: str) -> Path:
    """``root``, (re)written with the phantoms of these parameters unless its marker already says so."""
    variant = PHANTOM_VARIANTS[dataset][0]
    if phantom_info(root) != phantom_marker(dataset, variant, num_patients, seed, site):
        write_phantom_dataset(dataset, root, num_patients, seed, site=site)
    return root


def _check_site(cfg: DataConfig, site: str) -> None:
    if site not in SITES:
        raise ValueError(f"site={site!r}; expected one of {', '.join(SITES)}")
    if site == "target" and cfg.setting != "transfer":
        raise ValueError(f"site='target' with setting={cfg.setting!r}; a target site exists only with "
                         "setting='transfer'")


def resolve_site_data_dir(cfg: DataConfig, site: Literal["source", "target"]) -> Path:
    """The dataset root of a site: ``source`` :func:`resolve_data_dir`; ``target`` ``cfg.target_data_dir``, or
    the phantoms' second site under ``<results_root>/phantoms/<dataset>-site-b`` (``cfg.target_patients``
    patients, seed ``cfg.phantom_seed`` in that site's own stream; written when missing or different).

    Raises:
        ValueError: an unknown site, or ``target`` without ``setting='transfer'``.
    """
    _check_site(cfg, site)
    if site == "source":
        return resolve_data_dir(cfg)
    if cfg.target_data_dir:
        return Path(cfg.target_data_dir)
    root = Path(cfg.results_root) / "phantoms" / f"{cfg.dataset}-site-{TARGET_PHANTOM_SITE}"
    return _phantom_root(cfg.dataset, root, cfg.target_patients, cfg.phantom_seed, TARGET_PHANTOM_SITE)


def target_splits_path(cfg: DataConfig) -> Path:
    """``<results_root>/<dataset>/splits-target-<target_train_patients>.json``."""
    return dataset_dir(cfg.results_root, cfg.dataset) / f"splits-target-{cfg.target_train_patients}.json"


def input_normaliser(cfg: DataConfig, spec: DatasetSpec) -> NnUNetNormalisation | None:
    """The nnU-Net normalisation the network's input gets (``cfg.input_normalisation()`` is ``nnunet:<checkpoint>``:
    read from the plans beside the checkpoint, with ``slice_size`` and the channels checked against the model), or
    None for shapnas's own (:func:`shapnas.data.volumes.normalise`).

    Raises:
        ValueError: an unknown scheme, or a slice size or channel count the nnU-Net model cannot take (named).
    """
    scheme = cfg.input_normalisation()
    if scheme == "shapnas":
        return None
    if not scheme.startswith("nnunet:"):
        raise ValueError(f"input normalisation {scheme!r}; expected 'shapnas' or 'nnunet:<checkpoint>'")
    from shapnas.networks.nnunet import read_normalisation  # imports nnunetv2 only for nnU-Net backbones

    return read_normalisation(scheme.removeprefix("nnunet:"), cfg.slice_size, len(spec.channel_names))


def cache_dir(cfg: DataConfig, data_dir: Path, spec: DatasetSpec,
              normalisation: NnUNetNormalisation | None = None) -> Path:
    """``<results_root>/cache/<dataset>-<hash of resolved data_dir, slice_size, spec, input normalisation,
    CACHE_VERSION>``: slices normalised by shapnas and by an nnU-Net model (:func:`input_normaliser`) never mix."""
    key = f"{Path(data_dir).resolve()}|{cfg.slice_size}|{spec.label_values}|{spec.modality}|{CACHE_VERSION}"
    if normalisation is not None:  # shapnas's own normalisation keeps the key it always had
        key += f"|nnunet:{json.dumps(dataclasses.asdict(normalisation), sort_keys=True)}"
    return Path(cfg.results_root) / "cache" / f"{cfg.dataset}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def _stamp(case: CaseFiles) -> str:
    """Size and modification time of every source file: a cached case is reused only while they match."""
    parts = []
    for path in (*case.image_paths, case.label_path):
        stat = Path(path).stat()
        parts.append(f"{Path(path).name}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


def _read_cache(path: Path, case: CaseFiles, stamp: str) -> Volume | None:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if str(archive["stamp"]) != stamp:
                return None
            spacing = tuple(float(s) for s in archive["spacing"])
            return Volume(case.case_id, case.patient_id, archive["image"].astype(np.float32),
                          archive["label"].astype(np.int64), spacing)  # type: ignore[arg-type]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # missing or damaged cache entry: decode again


def _write_cache(path: Path, volume: Volume, stamp: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            label = volume.label.astype(np.uint8 if volume.label.max(initial=0) < 256 else np.int32)
            np.savez(handle, image=volume.image, label=label, spacing=np.asarray(volume.spacing),
                     stamp=np.asarray(stamp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_cached(case: CaseFiles, spec: DatasetSpec, slice_size: int, folder: Path,
                 normalisation: NnUNetNormalisation | None = None) -> Volume:
    stamp = _stamp(case)
    path = folder / f"{case.case_id}.npz"
    volume = _read_cache(path, case, stamp)
    if volume is None:
        extra = () if normalisation is None else (normalisation,)  # shapnas's own: the three-argument call
        volume = load_volume(case, spec, slice_size, *extra)
        _write_cache(path, volume, stamp)
    return volume


def select_slices(label: np.ndarray, max_slices: int) -> np.ndarray:
    """Indices of at most ``max_slices`` slices: the most foreground-rich first, then evenly spaced others,
    returned in anatomical (ascending) order.

    Args:
        label: (S, H, W) contiguous classes.
        max_slices: the cap; 0 keeps every slice.

    Returns:
        (K,) sorted int64 indices.
    """
    num_slices = label.shape[0]
    if max_slices <= 0 or num_slices <= max_slices:
        return np.arange(num_slices)
    foreground = (label > 0).reshape(num_slices, -1).sum(1)
    order = np.argsort(-foreground, kind="stable")
    chosen = [int(i) for i in order[:max_slices] if foreground[i] > 0]
    rest = np.setdiff1d(np.arange(num_slices), chosen)
    if len(chosen) < max_slices:
        picks = np.unique(np.linspace(0, len(rest) - 1, max_slices - len(chosen)).round().astype(int))
        chosen += rest[picks].tolist()
    return np.sort(np.asarray(chosen, dtype=np.int64))


def _subsample(volume: Volume, max_slices: int) -> Volume:
    keep = select_slices(volume.label, max_slices)
    if len(keep) == volume.label.shape[0]:
        return volume
    return Volume(volume.case_id, volume.patient_id, volume.image[keep], volume.label[keep], volume.spacing)


def restrict_classes(spec: DatasetSpec, keep: tuple[str, ...]) -> tuple[DatasetSpec, np.ndarray]:
    """A spec with only the foreground classes named in ``keep`` (in the spec's order), and the lookup table
    that maps the full spec's class ids to the reduced ones (dropped classes become background, 0).

    Args:
        spec: the dataset's full spec (one evaluation region per foreground class).
        keep: foreground class names to keep.

    Returns:
        (reduced spec, (K,) int64 lookup table from old to new class ids).

    Raises:
        ValueError: an unknown class name, or a spec with composite regions (BraTS WT/TC/ET).
    """
    unknown = [name for name in keep if name not in spec.class_names[1:]]
    if unknown:
        raise ValueError(f"keep_classes {unknown} not in {spec.name}'s classes {list(spec.class_names[1:])}")
    if any(len(ids) > 1 for ids in spec.eval_regions.values()):
        raise ValueError(f"keep_classes needs one region per class; {spec.name} scores regions "
                         f"{list(spec.eval_regions)}")
    kept = [0] + [i for i, name in enumerate(spec.class_names) if i > 0 and name in keep]
    lut = np.zeros(len(spec.class_names), dtype=np.int64)
    lut[kept] = np.arange(len(kept))
    names = tuple(spec.class_names[i] for i in kept)
    reduced = DatasetSpec(spec.name, spec.channel_names, names, tuple(spec.label_values[i] for i in kept),
                          spec.modality, {name: (index,) for index, name in enumerate(names) if index > 0})
    return reduced, lut


def _relabel(volume: Volume, lut: np.ndarray) -> Volume:
    return Volume(volume.case_id, volume.patient_id, volume.image, lut[volume.label], volume.spacing)


def prepare_data(cfg: DataConfig) -> PreparedData:
    """Load the dataset of ``cfg`` as slices, split by patient.

    ``cfg.max_slices_per_volume`` caps the slices of the training and V volumes (the most foreground-rich,
    kept in anatomical order); test volumes stay whole, so evaluation is per patient on full volumes, and
    the whole V volumes are kept beside (``val_whole``) for patient-level model selection.

    Args:
        cfg: the data config (dataset, data_dir, results_root, slice_size, phantom and split settings).

    Returns:
        The prepared data.

    Raises:
        FileNotFoundError: missing dataset folder or file.
        ValueError: no cases, too few patients, a bad file (named), or a splits.json that does not match.
    """
    return _prepare(cfg, resolve_data_dir(cfg), lambda patients: load_or_create_splits(
        dataset_dir(cfg.results_root, cfg.dataset) / "splits.json", patients, cfg.split_seed, cfg.val_fraction,
        cfg.test_fraction))


def prepare_site_data(cfg: DataConfig, site: Literal["source", "target"]) -> PreparedData:
    """The prepared data of one site of the transfer setting, through the same loaders and caches.

    ``source``: :func:`prepare_data` (today's splits of ``data_dir`` or of the phantoms' site ``a``; the
    backbone is pre-trained on its W and A). ``target``: the target site's cases (:func:`resolve_site_data_dir`)
    split into W, A, V carved from ``cfg.target_train_patients`` labelled patients and a test split of every
    other patient (at least ``MIN_TARGET_TEST_PATIENTS``), saved as :func:`target_splits_path`.

    Args:
        cfg: the data config (``setting='transfer'`` for the target site).
        site: ``source`` or ``target``.

    Returns:
        The prepared data (test volumes whole, training and V volumes capped as in :func:`prepare_data`).

    Raises:
        ValueError: an unknown site, ``target`` without ``setting='transfer'``, too few target-site patients, or
            the errors of :func:`prepare_data`.
    """
    _check_site(cfg, site)
    if site == "source":
        return prepare_data(cfg)
    return _prepare(cfg, resolve_site_data_dir(cfg, "target"), lambda patients: load_or_create_transfer_splits(
        target_splits_path(cfg), patients, cfg.split_seed, cfg.target_train_patients, cfg.val_fraction,
        MIN_TARGET_TEST_PATIENTS))


def _prepare(cfg: DataConfig, data_dir: Path,
             make_splits: Callable[[Sequence[str]], dict[str, list[str]]]) -> PreparedData:
    """Load every case of ``data_dir`` (cached) and group it by the splits ``make_splits`` gives its patients."""
    spec = full_spec = dataset_spec(cfg.dataset, data_dir)
    lut = None
    if cfg.keep_classes.get(cfg.dataset):
        spec, lut = restrict_classes(full_spec, tuple(cfg.keep_classes[cfg.dataset]))
    cases = list_cases(cfg.dataset, data_dir)
    if not cases:
        raise ValueError(f"{data_dir}: no labelled {cfg.dataset} cases found; check the folder layout "
                         f"({LAYOUT_HELP})")
    normalisation = input_normaliser(cfg, full_spec)
    splits = make_splits([c.patient_id for c in cases])
    folder = cache_dir(cfg, data_dir, full_spec, normalisation)
    split_of = {patient: name for name in SPLIT_NAMES for patient in splits[name]}
    volumes: dict[str, list[Volume]] = {name: [] for name in SPLIT_NAMES}
    val_whole: list[Volume] = []
    for case in cases:
        volume = _load_cached(case, full_spec, cfg.slice_size, folder, normalisation)
        volume = volume if lut is None else _relabel(volume, lut)
        split = split_of[case.patient_id]
        volumes[split].append(volume if split == "test" else _subsample(volume, cfg.max_slices_per_volume))
        if split == "val":
            val_whole.append(volume)
    return PreparedData(spec, data_dir, splits, volumes, val_whole)


def _percentiles(values: np.ndarray, limit: int = 2_000_000) -> dict[str, float]:
    sample = values[:: max(1, values.size // limit)]
    p1, p99 = np.percentile(sample, [1, 99])
    return {"min": float(values.min()), "p1": float(p1), "p99": float(p99), "max": float(values.max())}


def summarize(prepared: PreparedData) -> dict[str, Any]:
    """Counts and statistics of prepared data (for the CLI and the data notebook).

    Returns:
        ``dataset, data_dir, modality, channels, classes, slice_size``; ``splits``: split -> ``{patients, cases,
        slices}``; ``class_frequencies``: class -> share of all pixels; ``slices_with_class``: class -> slices
        containing it; ``intensity``: channel -> ``{min, p1, p99, max}`` of the normalised images.
    """
    spec = prepared.spec
    volumes = [v for name in SPLIT_NAMES for v in prepared.volumes[name]]
    labels = np.concatenate([v.label for v in volumes])  # (N, H, W)
    images = np.concatenate([v.image for v in volumes])  # (N, C, H, W)
    counts = np.bincount(labels.ravel(), minlength=len(spec.class_names))
    present = [(labels == k).any(axis=(1, 2)).sum() for k in range(len(spec.class_names))]
    return {
        "dataset": spec.name, "data_dir": str(prepared.data_dir), "modality": spec.modality,
        "channels": list(spec.channel_names), "classes": list(spec.class_names), "slice_size": int(labels.shape[-1]),
        "splits": {name: {"patients": len(prepared.splits[name]), "cases": len(prepared.volumes[name]),
                          "slices": int(sum(v.label.shape[0] for v in prepared.volumes[name]))}
                   for name in SPLIT_NAMES},
        "class_frequencies": {n: float(c) / max(int(counts.sum()), 1) for n, c in zip(spec.class_names, counts)},
        "slices_with_class": {n: int(c) for n, c in zip(spec.class_names, present)},
        "intensity": {n: _percentiles(images[:, c].ravel()) for c, n in enumerate(spec.channel_names)},
    }
