"""Kidney-tumour CT phantom in the KiTS19, KiTS21 and KiTS23 layouts (Heller et al., MedIA 2021).

The abdominal scene of :mod:`shapnas.data.phantoms.abdomen`, axially centred on the kidneys, plus renal masses:
one or two tumours per patient (round, partly exophytic, heterogeneous, less enhancing than cortex, large
ones with a necrotic core) and one to three simple cysts (near water HU, sharp rim). Sizes (version 2):
tumour radius 12–30 mm, cyst radius 9–18 mm, so that a 64-pixel slice (~5 mm pixels) resolves them. Labels 0 bg,
1 kidney, 2 tumour, 3 cyst; painted kidney, then cyst, then tumour (KiTS23 aggregation order (1, 3, 2)).
KiTS19 has no cyst class: cysts count as kidney there. Arrays are stored as (slices, rows, columns) with the
KiTS affine (voxel axis 0 = inferior-superior), as the challenge files are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from shapnas.data.phantoms.abdomen import abdomen_scene, finish_scene
from shapnas.data.phantoms.common import Grid, blob
from shapnas.data.phantoms.sites import CTSite
from shapnas.data.phantoms.writers import write_json, write_nifti

__all__ = ["kidney_case", "write_kits", "KITS_AXCODES"]

KITS_AXCODES = ("I", "P", "L")  # KiTS affine: voxel axis 0 -> -z, 1 -> -y, 2 -> -x


def _surface_point(rng: np.random.Generator, kidney: tuple, depth: tuple[float, float]) -> np.ndarray:
    center, radii, rotation, _ = kidney
    u = rng.normal(size=3)
    u[2] *= 0.6  # favour the equator and the poles less
    u /= np.linalg.norm(u)
    return center + rotation @ (u * radii * rng.uniform(*depth))


def kidney_case(grid: Grid, rng: np.random.Generator, site: CTSite | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One patient: CT image (X, Y, Z) in HU and label (X, Y, Z) uint8 (0 bg, 1 kidney, 2 tumour, 3 cyst).

    Args:
        grid: the voxel grid.
        rng: the patient's generator.
        site: another site's acquisition; None is site ``a``.

    Returns:
        (image, label).
    """
    scene = abdomen_scene(grid, rng)
    label = np.isin(scene.owner, (2, 3)).astype(np.uint8)
    kidney_mask = label == 1
    for _ in range(int(rng.choice([1, 1, 2, 3]))):  # v2: every patient has a cyst (a per-patient Dice exists)
        kidney = scene.kidneys[int(rng.integers(2))]
        rho = blob(grid, _surface_point(rng, kidney, (0.6, 1.0)), rng.uniform(9, 18, 1).repeat(3) * (1, 1, 1.1),
                   rng, wobble=0.03)
        cyst = (rho < 1) & (kidney_mask | (rho < 0.7))
        scene.paint(cyst, float(rng.uniform(0, 15)))
        label[cyst] = 3
    for index in range(1 if rng.uniform() < 0.8 else 2):
        kidney = scene.kidneys[int(rng.integers(2))]
        radius = float(rng.uniform(12, 30))  # v2: at least ~2 pixels of radius at 64 px
        center = _surface_point(rng, kidney, (0.55, 1.0))
        rho = blob(grid, center, radius * rng.uniform(0.85, 1.15, 3), rng, wobble=0.12, num_waves=5)
        base = rng.uniform(130, 175) if scene.phase == "arterial" else rng.uniform(65, 115)
        tumour = rho < 1
        heterogeneity = 25.0 * np.cos(np.where(tumour, rho, 0) * 9.0 + rng.uniform(0, 6.3))
        scene.paint(tumour, base + heterogeneity)
        if radius > 18:
            scene.paint(rho < rng.uniform(0.3, 0.55), float(rng.uniform(15, 35)))  # necrosis
        label[tumour] = 2
    return np.rint(finish_scene(scene, grid, rng, site)), label  # integer HU (stored as float32, as KiTS does)


def write_kits(out_dir: Path, rngs: list[np.random.Generator],
               variant: Literal["kits23", "kits21", "kits19"] = "kits23", site: CTSite | None = None) -> Path:
    """Write KiTS cases in the layout of ``variant``.

    ``kits23``: ``dataset/case_XXXXX/{imaging,segmentation}.nii.gz``; ``kits21``: ``data/case_XXXXX/{imaging,
    aggregated_MAJ_seg}.nii.gz``; ``kits19``: ``data/case_XXXXX/{imaging,segmentation}.nii.gz`` plus
    ``data/kits.json`` and no cyst label.

    Args:
        out_dir: the repository / dataset folder to fill.
        rngs: one generator per patient.
        variant: the KiTS edition.
        site: another site's acquisition; None (default) is site ``a``.

    Returns:
        ``out_dir`` (the data_dir to use).
    """
    if variant not in ("kits23", "kits21", "kits19"):
        raise ValueError(f"variant={variant!r}; expected kits23, kits21 or kits19")
    root = out_dir / ("dataset" if variant == "kits23" else "data")
    seg_name = "aggregated_MAJ_seg" if variant == "kits21" else "segmentation"
    records = []
    for index, rng in enumerate(rngs):
        name = f"case_{index:05d}"
        pixel = float(rng.uniform(2.5, 2.8))
        if site is not None:  # another site's reconstruction field of view
            pixel *= site.fov_scale
        grid = Grid((128, 128, 24), (pixel, pixel, 5.0), (0.0, 0.0, float(rng.uniform(-15, 15))))
        image, label = kidney_case(grid, rng, site)
        if variant == "kits19":
            label[label == 3] = 1
        write_nifti(root / name / "imaging.nii.gz", image, grid.spacing, axcodes=KITS_AXCODES, dtype=np.float32)
        write_nifti(root / name / f"{seg_name}.nii.gz", label, grid.spacing, axcodes=KITS_AXCODES, dtype=np.uint8)
        records.append({"case_id": name, "tumor_histologic_subtype": "phantom"})
    if variant == "kits19":
        write_json(root / "kits.json", records)
    return out_dir
