"""Read one case into normalised, resized 2D slices: the loader behind every dataset.

Conventions (``shared/docs/data-layouts.md`` §2, §8): ``nib.as_closest_canonical`` (RAS), then slices along
the axial axis for CT and along the largest-spacing axis otherwise (isotropic: S; KiTS19: voxel axis 0);
MRI per-volume, per-channel z-score (inside the nonzero mask for BraTS and other skull-stripped data, as
nnU-Net's ``ZScoreNormalization`` with ``use_mask_for_norm``); CT clipped to the window ``CT_WINDOW`` HU and
scaled to [-1, 1]; slices resized (images bilinear with antialiasing, labels nearest); labels remapped to
contiguous classes. For an nnU-Net backbone the normalisation is the model's own, applied with nnU-Net's classes
(:func:`network_input`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from shapnas.data.layouts import CaseFiles, DatasetSpec

if TYPE_CHECKING:
    from shapnas.networks.nnunet import NnUNetNormalisation

__all__ = ["Volume", "load_volume", "read_nifti", "slice_axis", "canonical_slice_axis", "to_slices", "normalise",
           "resize_images", "resize_labels", "resize_slices", "network_input", "remap_labels", "CT_WINDOW",
           "MRI_MASK_FRACTION"]

CT_WINDOW = (-200.0, 300.0)  # HU: abdominal soft tissue, kidney and contrast-enhanced vessels
MRI_MASK_FRACTION = 0.75  # MRI z-score inside the nonzero mask when it covers less of the volume (nnU-Net: crop > 25%)


class _NotVolume(ValueError):
    """A readable NIfTI file that is not a 3D/4D volume."""


@dataclass
class Volume:
    """One case as 2D slices.

    Args:
        case_id: the case.
        patient_id: its patient.
        image: (S, C, H, W) float32, normalised.
        label: (S, H, W) int64 contiguous classes.
        spacing: mm of the returned grid: (in-plane x = W, in-plane y = H, slice).
    """

    case_id: str
    patient_id: str
    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]


def read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a NIfTI file fully (so truncation shows here), reoriented with ``nib.as_closest_canonical``.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.

    Returns:
        (canonical data array, the file's own affine, the orientation ``nib.io_orientation`` of that affine).

    Raises:
        FileNotFoundError: no such file.
        ValueError: truncated or corrupted file, naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        image = nib.load(path)
        if len(image.shape) < 3:
            raise _NotVolume(f"{path}: image shape {tuple(image.shape)}; expected a 3D image (X, Y, Z)")
        canonical = nib.as_closest_canonical(image)
        data = np.asanyarray(canonical.dataobj)
    except _NotVolume:
        raise
    except (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError) as error:
        raise ValueError(f"{path}: cannot read NIfTI, truncated or corrupted file? ({type(error).__name__}: "
                         f"{error})") from error
    return data, np.asarray(image.affine, dtype=np.float64), nib.io_orientation(image.affine)


def slice_axis(spacing: np.ndarray, modality: str, native_axis: int | None) -> int:
    """The canonical (RAS) axis to slice along.

    Args:
        spacing: (3,) canonical voxel sizes in mm.
        modality: ``ct`` slices axially (S), whatever the spacing (thin-slice CT stays axial).
        native_axis: canonical image of a layout-fixed slice axis (KiTS19 voxel axis 0), or ``None``.

    Returns:
        0, 1 or 2.
    """
    if native_axis is not None:
        return int(native_axis)
    if modality == "ct" or spacing.max() < 1.1 * spacing.min():
        return 2
    return int(np.argmax(spacing))


def to_slices(data: np.ndarray, axis: int) -> np.ndarray:
    """(X, Y, Z[, C]) canonical array -> (S, H, W[, C]) with rows = the later in-plane axis reversed
    (anterior/superior on top) and columns = the earlier one reversed (patient right on the left)."""
    a, b = [k for k in range(3) if k != axis]
    moved = np.moveaxis(data, (axis, b, a), (0, 1, 2))
    return moved[:, ::-1, ::-1]


def normalise(image: np.ndarray, modality: str, use_mask: bool) -> np.ndarray:
    """Normalise (S, C, H, W) intensities in place-safe fashion.

    Args:
        image: (S, C, H, W) float32.
        modality: ``ct``: clip to ``CT_WINDOW`` and scale to [-1, 1]; ``mri``: z-score per channel.
        use_mask: MRI z-score inside the nonzero mask (outside set to 0).

    Returns:
        (S, C, H, W) float32.
    """
    if modality == "ct":
        low, high = CT_WINDOW
        scaled = (image.astype(np.float32) - np.float32((low + high) / 2)) / np.float32((high - low) / 2)
        return np.clip(scaled, -1.0, 1.0)
    out = np.zeros_like(image, dtype=np.float32)
    for c in range(image.shape[1]):
        channel = image[:, c]
        mask = channel != 0 if use_mask else np.ones(channel.shape, dtype=bool)
        if not mask.any():
            continue
        values = channel[mask]
        out[:, c][mask] = (values - values.mean()) / max(float(values.std()), 1e-8)
    return out


def resize_images(image: np.ndarray, size: int) -> np.ndarray:
    """(S, C, H, W) -> (S, C, size, size) float32, bilinear with antialiasing when shrinking."""
    if image.shape[-2:] == (size, size):
        return image.astype(np.float32)
    img = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    return F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=min(image.shape[-2:]) > size).numpy()


def resize_labels(label: np.ndarray, size: int) -> np.ndarray:
    """(S, H, W) class ids -> (S, size, size) int64 by nearest neighbour (``nearest-exact``)."""
    if label.shape[-2:] == (size, size):
        return label
    lab = torch.from_numpy(np.ascontiguousarray(label)).unsqueeze(1).float()
    return F.interpolate(lab, size=(size, size), mode="nearest-exact").squeeze(1).long().numpy()


def resize_slices(image: np.ndarray, label: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize (S, C, H, W) images bilinearly (antialiased) and (S, H, W) labels by nearest neighbour."""
    return resize_images(image, size), resize_labels(label, size)


def canonical_slice_axis(affine: np.ndarray, ornt: np.ndarray, modality: str,
                         slice_axis_hint: int | None) -> tuple[int, np.ndarray]:
    """The canonical axis to slice a file's volume along, and its canonical voxel sizes.

    Args:
        affine: the file's own affine.
        ornt: ``nib.io_orientation(affine)`` (file voxel axes -> RAS).
        modality: ``ct`` or ``mri`` (see :func:`slice_axis`).
        slice_axis_hint: the file's voxel axis holding the slices (KiTS19: 0), or None (from the geometry).

    Returns:
        (axis 0, 1 or 2 of the canonical array, (3,) canonical spacing in mm).
    """
    spacing = np.empty(3)
    spacing[ornt[:, 0].astype(int)] = nib.affines.voxel_sizes(affine)[:3]  # canonical voxel sizes (3,)
    native = None if slice_axis_hint is None else int(ornt[slice_axis_hint, 0])
    return slice_axis(spacing, modality, native), spacing


def network_input(image: np.ndarray, axis: int, *, modality: str, dataset: str, slice_size: int,
                  normalisation: NnUNetNormalisation | None = None) -> np.ndarray:
    """The network's input slices of a canonical image: the one preprocessing of training and prediction.

    Slices along ``axis`` (:func:`to_slices`), normalises (:func:`normalise`: MRI z-score inside the nonzero
    mask for BraTS or when the nonzero voxels cover less than ``MRI_MASK_FRACTION``, as nnU-Net's
    ``use_mask_for_norm``; CT window), resizes to ``slice_size`` (:func:`resize_images`) and keeps CT inside
    [-1, 1] after resampling.

    With an nnU-Net ``normalisation`` (an nnU-Net backbone), the whole case is normalised first as nnU-Net's
    preprocessing does (:func:`shapnas.networks.nnunet.normalise_volume`: its normaliser classes, statistics of its
    nonzero crop, zero outside the crop), then sliced and resized to ``slice_size``. The in-plane resampling is
    shapnas's, not nnU-Net's: slices go to ``slice_size`` pixels whatever the plan's target spacing (set
    ``slice_size`` near the plan's patch size, a multiple of the network's total stride).

    Args:
        image: (X, Y, Z, C) float32 in closest-canonical (RAS) voxel order.
        axis: the canonical slice axis (:func:`canonical_slice_axis`).
        modality: ``ct`` or ``mri``.
        dataset: the dataset name (``brats`` always uses the nonzero mask).
        slice_size: square in-plane size of the result.
        normalisation: an nnU-Net model's normalisation, used instead of :func:`normalise`. Defaults to None.

    Returns:
        (S, C, slice_size, slice_size) float32, channels first as the network takes them.
    """
    if normalisation is not None:
        from shapnas.networks.nnunet import normalise_volume  # imports nnunetv2 only for nnU-Net backbones

        normalised = normalise_volume(image, normalisation)  # (X, Y, Z, C)
        slices = np.ascontiguousarray(to_slices(normalised, axis).transpose(0, 3, 1, 2))  # (S, C, H, W)
        return resize_images(slices, slice_size)  # (S, C, size, size)
    slices = np.ascontiguousarray(to_slices(image, axis).transpose(0, 3, 1, 2))  # (S, C, H, W)
    use_mask = dataset == "brats" or float((slices != 0).mean()) < MRI_MASK_FRACTION
    resized = resize_images(normalise(slices, modality, use_mask), slice_size)  # (S, C, size, size)
    if modality == "ct":
        resized = np.clip(resized, -1.0, 1.0)  # resampling round-off stays inside the window
    return resized


def remap_labels(label: np.ndarray, spec: DatasetSpec, path: Path) -> np.ndarray:
    """On-disk label values -> contiguous classes (int64); unexpected values raise ``ValueError`` naming ``path``."""
    if np.issubdtype(label.dtype, np.floating):
        rounded = np.rint(label)
        if not np.array_equal(rounded, label):
            raise ValueError(f"{path}: label values must be integers; found non-integer values")
        label = rounded
    values = label.astype(np.int64)
    low, high = int(values.min()), int(values.max())
    found = np.flatnonzero(np.bincount(values.ravel())) if 0 <= low and high < 65536 else np.unique(values)
    unexpected = sorted(set(found.tolist()) - set(spec.label_values))
    if unexpected:
        raise ValueError(f"{path}: unexpected label value(s) {unexpected}; expected {list(spec.label_values)} "
                         f"({', '.join(spec.class_names)})")
    lut = np.zeros(max(spec.label_values) + 1, dtype=np.int64)
    lut[list(spec.label_values)] = np.arange(len(spec.label_values))
    return lut[values]


def _squeeze3(data: np.ndarray) -> np.ndarray:
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    return data


def _read_image(case: CaseFiles, spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, Path]:
    """(X, Y, Z, C) canonical image, its file affine and orientation, and the first image path."""
    num_channels = len(spec.channel_names)
    if len(case.image_paths) == 1:
        path = case.image_paths[0]
        data, affine, ornt = read_nifti(path)
        data = data[..., None] if data.ndim == 3 else data
        if data.ndim != 4 or data.shape[-1] != num_channels:
            raise ValueError(f"{path}: image shape {data.shape}; expected a 3D image (X, Y, Z) or a 4D image "
                             f"(X, Y, Z, {num_channels}) with channels {', '.join(spec.channel_names)}")
        return data.astype(np.float32), affine, ornt, path
    if len(case.image_paths) != num_channels:
        raise ValueError(f"{case.image_paths[0].parent}: case {case.case_id} has {len(case.image_paths)} channel "
                         f"files; expected {num_channels} ({', '.join(spec.channel_names)})")
    channels, affines = [], []
    for path in case.image_paths:
        data, affine, ornt = read_nifti(path)
        data = _squeeze3(data)
        if data.ndim != 3:
            raise ValueError(f"{path}: image shape {data.shape}; expected a 3D image (X, Y, Z)")
        if channels and (data.shape != channels[0].shape or not np.allclose(affine, affines[0], atol=1e-3)):
            raise ValueError(f"{path}: shape {data.shape} / affine differ from {case.image_paths[0]}; "
                             "expected every channel on one grid")
        channels.append(data.astype(np.float32))
        affines.append(affine)
    return np.stack(channels, axis=-1), affines[0], ornt, case.image_paths[0]


def load_volume(case: CaseFiles, spec: DatasetSpec, slice_size: int,
                normalisation: NnUNetNormalisation | None = None) -> Volume:
    """Read, check, reorient, slice, normalise, resize and remap one case.

    Args:
        case: its files.
        spec: the dataset spec (channels, label values, modality).
        slice_size: square in-plane size of the returned slices.
        normalisation: an nnU-Net model's input normalisation instead of shapnas's (:func:`network_input`).
            Defaults to None.

    Returns:
        The volume: image (S, C, slice_size, slice_size) float32, label (S, slice_size, slice_size) int64.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: unreadable file, non-3D image, wrong channel count, image/label shape or affine mismatch,
            unexpected label value; the message names the file and what was expected.
    """
    image, image_affine, ornt, image_path = _read_image(case, spec)
    label, label_affine, _ = read_nifti(case.label_path)
    label = _squeeze3(label)
    if label.ndim != 3:
        raise ValueError(f"{case.label_path}: label shape {label.shape}; expected a 3D label (X, Y, Z)")
    if label.shape != image.shape[:3]:
        raise ValueError(f"{case.label_path}: label shape {label.shape} differs from image {image_path} shape "
                         f"{image.shape[:3]}; expected the same grid")
    if not np.allclose(label_affine, image_affine, rtol=1e-4, atol=1e-2):
        difference = float(np.abs(label_affine - image_affine).max())
        raise ValueError(f"{case.label_path}: label affine differs from image {image_path} (largest difference "
                         f"{difference:.3g}; label origin {np.round(label_affine[:3, 3], 2).tolist()}, image origin "
                         f"{np.round(image_affine[:3, 3], 2).tolist()}); expected the same affine")
    axis, spacing = canonical_slice_axis(image_affine, ornt, spec.modality, case.slice_axis_hint)
    classes = remap_labels(to_slices(label, axis), spec, case.label_path)  # (S, H, W)
    in_plane = [k for k in range(3) if k != axis]
    height, width = classes.shape[-2:]
    resized_image = network_input(image, axis, modality=spec.modality, dataset=spec.name, slice_size=slice_size,
                                  normalisation=normalisation)
    resized_label = resize_labels(classes, slice_size)  # (S, slice_size, slice_size)
    new_spacing = (float(spacing[in_plane[0]]) * width / slice_size, float(spacing[in_plane[1]]) * height / slice_size,
                   float(spacing[axis]))
    return Volume(case.case_id, case.patient_id, resized_image, resized_label, new_spacing)
