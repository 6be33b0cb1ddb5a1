"""Write phantom arrays as NIfTI files in a dataset's on-disk orientation, and small JSON/text metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

__all__ = ["write_nifti", "write_json", "write_text"]


def _disk_orientation(data: np.ndarray, spacing: tuple[float, float, float], axcodes: tuple[str, str, str],
                      rotation_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Canonical RAS (X, Y, Z[, C]) array -> (array in the voxel order of ``axcodes``, its affine)."""
    shape = np.asarray(data.shape[:3])
    ras_affine = np.diag([*spacing, 1.0])
    ras_affine[:3, 3] = -(shape - 1) / 2 * np.asarray(spacing)  # grid centre at the world origin
    transform = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(("R", "A", "S")),
                                                nib.orientations.axcodes2ornt(axcodes))
    disk = nib.orientations.apply_orientation(data, transform)
    affine = ras_affine @ nib.orientations.inv_ornt_aff(transform, data.shape[:3])
    if rotation_deg:
        angle = np.deg2rad(rotation_deg)  # oblique acquisition (e.g. cardiac short axis), about Z
        rotation = np.eye(4)
        rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
        affine = rotation @ affine
    return np.ascontiguousarray(disk), affine


def write_nifti(path: Path, data: np.ndarray, spacing: tuple[float, float, float], *,
                axcodes: tuple[str, str, str] = ("R", "A", "S"), dtype: Any = np.int16,
                rotation_deg: float = 0.0) -> Path:
    """Write a canonical RAS array (X, Y, Z) or (X, Y, Z, C) as NIfTI stored in ``axcodes`` voxel order.

    Args:
        path: ``.nii`` or ``.nii.gz`` destination (folders are created).
        data: the array in canonical RAS order.
        spacing: (X, Y, Z) voxel size in mm.
        axcodes: on-disk orientation of the voxel axes, e.g. ``("I", "P", "L")`` for KiTS19.
        dtype: on-disk data type (integer types are rounded).
        rotation_deg: rotation of the affine about Z (an oblique acquisition).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    disk, affine = _disk_orientation(data, spacing, axcodes, rotation_deg)
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        disk = np.clip(np.rint(disk), info.min, info.max)
    image = nib.Nifti1Image(disk.astype(dtype), affine)
    image.header.set_xyzt_units("mm", "sec")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, path)
    return path


def write_json(path: Path, data: Any) -> Path:
    """Write a pretty-printed JSON file (dataset.json, kits.json)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4) + "\n")
    return path


def write_text(path: Path, text: str) -> Path:
    """Write a small text file (ACDC ``Info.cfg``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
