"""Cardiac cine-MRI phantom in the ACDC layout (Bernard et al., IEEE TMI 2018).

A short-axis bSSFP stack (bright blood, dark myocardium, bright fat, dark lung) at ED and ES: an ellipsoidal
LV cavity with papillary muscles (labelled LV cavity, as in ACDC), a myocardial ring whose thickness varies
with the angle, an RV crescent hugging the septum with a thin free wall (not labelled, as in ACDC), atria
above the valve plane (not labelled), epicardial fat, lungs, chest wall, liver and descending aorta.
The five ACDC groups change the shape: NOR, MINF (thinned sector, low EF), DCM (large thin LV, low EF),
HCM (thick septum, small cavity, high EF), RV (dilated RV). ES shrinks the cavities, thickens the wall and
pulls the base towards the apex. Thick slices average three sub-slices (partial volume).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from shapnas.data.phantoms.common import Grid, finish_mri
from shapnas.data.phantoms.sites import MRSite, gamma_curve, remap_tissue
from shapnas.data.phantoms.writers import write_nifti, write_text

__all__ = ["write_acdc", "cardiac_case", "GROUPS"]

GROUPS = ("NOR", "MINF", "DCM", "HCM", "RV")
# group: (cavity radius mm, wall mm, EF, RV crescent mm, base descent at ES mm)
_GROUP_SHAPE = {"NOR": (24, 8.5, 0.62, 17, 10), "MINF": (28, 8.0, 0.36, 17, 5), "DCM": (32, 6.5, 0.20, 17, 4),
                "HCM": (19, 13.0, 0.72, 14, 10), "RV": (23, 8.0, 0.56, 30, 9)}
_BLOOD, _MYO, _FAT, _LUNG, _TISSUE, _LIVER = 1.0, 0.27, 0.85, 0.05, 0.36, 0.40
_TISSUES = {"blood": _BLOOD, "myo": _MYO, "fat": _FAT, "lung": _LUNG, "tissue": _TISSUE, "liver": _LIVER}  # site a


@dataclass(frozen=True)
class _Heart:
    group: str
    center: np.ndarray  # (2,) mm at the base
    tilt: np.ndarray  # (2,) in-plane drift per mm of depth
    radius: float  # cavity radius at the base
    wall: float
    length: float  # cavity half-length (base to apex)
    rv_angle: float
    rv_width: float
    rv_depth: float
    base_z: float
    endo: np.ndarray  # (3, 2) harmonic amplitudes and phases (k = 2..4)
    fat: np.ndarray  # (4, 2)
    lung_margin: np.ndarray  # (4, 2)
    chest_y: float
    vessels: np.ndarray  # (V, 3) x, y, radius in mm


def _draw_heart(rng: np.random.Generator, group: str, top_z: float, slice_mm: float) -> _Heart:
    radius, wall, _, rv_depth, _ = _GROUP_SHAPE[group]
    return _Heart(group=group, center=rng.uniform(-12, 12, 2), tilt=rng.uniform(-0.15, 0.15, 2),
                  radius=radius * rng.uniform(0.9, 1.1), wall=wall * rng.uniform(0.88, 1.12),
                  length=(80 if group == "DCM" else 70) * rng.uniform(0.9, 1.1),
                  rv_angle=np.deg2rad(rng.uniform(5, 35)), rv_width=np.deg2rad(rng.uniform(150, 190)),
                  rv_depth=rv_depth * rng.uniform(0.85, 1.15), base_z=top_z - slice_mm * rng.uniform(0.4, 1.3),
                  endo=np.stack([rng.normal(0, 0.035, 3), rng.uniform(0, 2 * np.pi, 3)], 1),
                  fat=np.stack([rng.normal(0, 1.0, 4), rng.uniform(0, 2 * np.pi, 4)], 1),
                  lung_margin=np.stack([rng.normal(0, 1.0, 4), rng.uniform(0, 2 * np.pi, 4)], 1),
                  chest_y=rng.uniform(55, 75),
                  vessels=np.column_stack([rng.uniform(-90, 90, (12, 2)), rng.uniform(1.5, 3.5, 12)]))


def _at_phase(heart: _Heart, phase: str, rng: np.random.Generator) -> _Heart:
    """ES: cavity volume times (1 - EF), myocardial area kept, base pulled towards the apex."""
    if phase == "ED":
        return heart
    _, _, ef, _, descent = _GROUP_SHAPE[heart.group]
    ef = float(np.clip(ef + rng.normal(0, 0.04), 0.1, 0.85))
    radius = heart.radius * np.sqrt((1 - ef) / 0.88)
    area = (heart.radius + heart.wall) ** 2 - heart.radius**2
    wall = float(np.sqrt(radius**2 + area) - radius)
    rv_scale = 0.55 if heart.group != "RV" else 0.8
    return replace(heart, radius=radius, wall=wall, length=heart.length * 0.88, rv_depth=heart.rv_depth * rv_scale,
                   base_z=heart.base_z - descent * rng.uniform(0.8, 1.2))


_NUM_ANGLES = 720


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _harmonics(theta: np.ndarray, coeffs: np.ndarray, start: int = 2) -> np.ndarray:
    return sum(a * np.cos((start + k) * theta + p) for k, (a, p) in enumerate(coeffs))


def _angular_tables(heart: _Heart) -> dict[str, np.ndarray]:
    """Functions of the polar angle around the LV, tabulated on ``_NUM_ANGLES`` bins (looked up per pixel)."""
    theta = -np.pi + (np.arange(_NUM_ANGLES) + 0.5) * 2 * np.pi / _NUM_ANGLES
    septum = _wrap(theta - heart.rv_angle)  # 0 at the septum
    wall = 1 + 0.12 * np.cos(septum)
    if heart.group == "HCM":
        wall = wall * (1 + 0.55 * np.exp(-septum**2 / 0.5))
    if heart.group == "MINF":
        wall = wall * (1 - 0.55 * np.exp(-_wrap(septum - 2.4) ** 2 / 0.25))
    window = np.clip(np.cos(np.pi * septum / heart.rv_width), 0, None) ** 0.6 * (np.abs(septum) < heart.rv_width / 2)
    tables = {"endo": _harmonics(theta, heart.endo), "wall": wall, "window": window,
              "fat": np.clip(_harmonics(theta, heart.fat, start=1), 0, None),
              "margin": 4 + 10 * np.clip(1 + 0.6 * _harmonics(theta, heart.lung_margin, start=1), 0, None)}
    return {k: v.astype(np.float32) for k, v in tables.items()}


def _render_slice(heart: _Heart, tables: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                  z: float) -> tuple[np.ndarray, np.ndarray]:
    """Noiseless intensity and label (X, Y) of the slice at height ``z`` mm."""
    depth = heart.base_z - z  # 0 at the base plane, growing towards the apex
    cx, cy = heart.center + heart.tilt * depth
    dx, dy = (a.astype(np.float32) for a in np.broadcast_arrays(x - np.float32(cx), y - np.float32(cy)))
    rho = np.hypot(dx, dy)
    bins = ((np.arctan2(dy, dx) + np.float32(np.pi)) * np.float32(_NUM_ANGLES / (2 * np.pi))).astype(np.int32)
    bins %= _NUM_ANGLES
    endo, window = tables["endo"][bins], tables["window"][bins]
    shape = lambda half: np.sqrt(np.clip(1 - (depth / half) ** 2, 0, None)) if depth >= 0 else 0.0  # noqa: E731
    cavity_r = heart.radius * shape(heart.length) * (1 + endo)
    outer_r = (heart.radius + heart.wall * tables["wall"][bins]) * shape(heart.length + 0.9 * heart.wall)
    outer_r = outer_r * (1 + 0.5 * endo)
    rv_r = outer_r + heart.rv_depth * window * shape(0.75 * heart.length)
    label = np.zeros(dx.shape, dtype=np.uint8)
    image = np.full(label.shape, _LUNG, dtype=np.float32)
    heart_r = np.where(rv_r - outer_r > 1.0, rv_r + 3.0, outer_r)  # epicardial border incl. RV free wall
    if depth < 0:  # atria above the valve plane: blood and thin walls, not labelled
        atria = np.hypot(dx + 6, dy + 8) < heart.radius * (0.9 + 0.01 * depth)
        atria |= np.hypot(dx - heart.radius * 1.2, dy - 4) < heart.radius * 0.8
        heart_r = np.where(atria, rho + 3.0, 0.0)
        image[np.hypot(dx + 6, dy + 8) < heart.radius * 1.05 + 3] = _MYO
        image[atria] = _BLOOD
    fat = tables["fat"][bins] * (2.5 + 4.0 * (depth < 10))
    margin = tables["margin"][bins]
    body = rho < heart_r + fat + margin
    image[body & (image == _LUNG)] = _TISSUE
    image[(rho >= heart_r) & (rho < heart_r + fat)] = _FAT
    liver = np.hypot(dx - 45, dy + 85) < np.clip(1.8 * (depth - 0.35 * heart.length), 0, 75)
    image[liver & (rho >= heart_r + fat)] = _LIVER
    image[np.hypot(dx + 38, dy + 48) < 11] = _BLOOD * 0.9  # descending aorta
    image[tables["vessels"] & (image == _LUNG)] = 0.7  # pulmonary vessels: small bright dots in the lung
    chest = dy - heart.chest_y + 0.006 * dx**2  # curved anterior chest wall: muscle, then fat
    image[chest > 0] = _MYO
    image[chest > 12] = _FAT
    image[chest > 25] = 0.0
    if depth >= 0:
        rv = (rho >= outer_r) & (rho < rv_r) & (rv_r - outer_r > 1.0)
        image[(rho >= rv_r) & (rho < rv_r + 3.0) & (window > 0.05)] = _MYO  # RV free wall
        image[rv] = _BLOOD * 0.95
        myo = (rho < outer_r) & (rho >= cavity_r)
        image[myo] = _MYO
        cavity = rho < cavity_r
        trabeculae = np.exp(-np.clip(cavity_r - rho, 0, None) / 2.5)  # darker blood near the endocardium
        image[cavity] = (_BLOOD * (1 - 0.35 * trabeculae))[cavity]
        papillary = np.zeros_like(cavity)
        if 0.2 * heart.length < depth < 0.8 * heart.length:
            for offset in (-0.8, 0.8):
                angle = heart.rv_angle + np.pi + offset
                px, py = 0.62 * cavity_r.mean() * np.cos(angle), 0.62 * cavity_r.mean() * np.sin(angle)
                papillary |= np.hypot(dx - px, dy - py) < 0.16 * heart.radius + 1.5
        image[papillary & cavity] = _MYO * 1.2
        label[rv], label[myo], label[cavity] = 1, 2, 3
    return image, label


def _form_image(image: np.ndarray, grid: Grid, rng: np.random.Generator, noise: float,
                site: MRSite | None) -> np.ndarray:
    """Image formation of a noiseless frame: site ``a``'s (``site`` None) or another site's (tissue contrast,
    blur, bias, noise level, transfer curve)."""
    if site is None:
        return finish_mri(image, grid, rng, noise=noise, bias=0.3, blur_vox=(0.6, 0.6, 0.0))
    shifted = remap_tissue(image, _TISSUES, {name: values[0] for name, values in site.tissue})
    formed = finish_mri(shifted, grid, rng, noise=noise * site.noise_scale, bias=site.bias, blur_vox=site.blur_vox)
    return gamma_curve(formed, site.gamma)


def cardiac_case(grid: Grid, rng: np.random.Generator, group: str,
                 site: MRSite | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """ED and ES frames of one patient: phase -> (image (X, Y, Z) float, label (X, Y, Z) uint8 classes 0..3).

    Args:
        grid: the voxel grid.
        rng: the patient's generator.
        group: one of :data:`GROUPS`.
        site: another site's acquisition (:data:`shapnas.data.phantoms.sites.SITE_B`); None is site ``a``.

    Returns:
        phase (``ED``, ``ES``) -> (image, label).
    """
    x, y, z_axis = grid.axes()
    x, y = x[:, None], y[None, :]
    heart = _draw_heart(rng, group, float(z_axis[-1]), grid.spacing[2])
    gain, noise = rng.uniform(250, 450), rng.uniform(0.035, 0.06)
    frames = {}
    for phase in ("ED", "ES"):
        state = _at_phase(heart, phase, rng)
        tables = _angular_tables(state)
        tables["vessels"] = np.zeros(grid.shape[:2], dtype=bool)
        for vx, vy, vr in heart.vessels:
            tables["vessels"] |= np.hypot(x - vx, y - vy) < vr
        image = np.zeros(grid.shape, dtype=np.float32)
        label = np.zeros(grid.shape, dtype=np.uint8)
        for k, z in enumerate(z_axis):
            parts = [_render_slice(state, tables, x, y, float(z) + dz * grid.spacing[2]) for dz in (-0.3, 0.0, 0.3)]
            image[:, :, k] = np.mean([p[0] for p in parts], axis=0)
            label[:, :, k] = parts[1][1]
        image = _form_image(image, grid, rng, noise, site)
        frames[phase] = (image * gain, label)
    return frames


def write_acdc(out_dir: Path, rngs: list[np.random.Generator], site: MRSite | None = None) -> Path:
    """Write ``training/patientXXX/{Info.cfg, patientXXX_frameNN[_gt].nii.gz}`` (ED = frame 01).

    Args:
        out_dir: the ``database`` folder to fill.
        rngs: one generator per patient.
        site: another site's acquisition; None (default) is site ``a``.

    Returns:
        ``out_dir`` (the data_dir to use).
    """
    for index, rng in enumerate(rngs):
        name = f"patient{index + 1:03d}"
        group = GROUPS[index % len(GROUPS)]
        spacing = (float(rng.uniform(1.4, 1.7)),) * 2 + (float(rng.choice([8.0, 10.0])),)
        grid = Grid((128, 128, int(rng.integers(8, 11))), spacing)
        num_frames = int(rng.integers(25, 36))
        es = int(rng.integers(9, 15))
        folder = out_dir / "training" / name
        write_text(folder / "Info.cfg", f"ED: 1\nES: {es}\nGroup: {group}\nHeight: {rng.uniform(150, 195):.1f}\n"
                                        f"NbFrame: {num_frames}\nWeight: {rng.uniform(50, 110):.1f}\n")
        for phase, frame in cardiac_case(grid, rng, group, site).items():
            stem = f"{name}_frame{1 if phase == 'ED' else es:02d}"
            write_nifti(folder / f"{stem}.nii.gz", frame[0], spacing, axcodes=("L", "P", "S"), rotation_deg=20.0)
            write_nifti(folder / f"{stem}_gt.nii.gz", frame[1], spacing, axcodes=("L", "P", "S"), dtype=np.uint8,
                        rotation_deg=20.0)
    return out_dir
