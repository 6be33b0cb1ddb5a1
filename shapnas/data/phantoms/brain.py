"""Brain-tumour MRI phantom (four channels) in the BraTS layouts, and the MSD Task01 4D layout.

A skull-stripped brain slab (cortex with gyri, white matter, deep grey matter, lateral ventricles,
interhemispheric fissure) holding a glioma: a necrotic core (NCR), an irregular enhancing rim (ET) and
finger-like peritumoral oedema (ED) fading into white matter, with mass effect on the ventricles. Contrasts
follow the four sequences (Menze et al., IEEE TMI 2015): ET bright on T1ce only, oedema bright on FLAIR
and T2, necrosis dark on T1/T1ce and bright on T2, CSF suppressed on FLAIR. Some cases have no necrosis or
no enhancement (lower grade). Labels are contiguous 0 bg, 1 NCR, 2 ED, 3 ET (the writers map them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shapnas.data.phantoms.common import Grid, blob, finish_mri, random_rotation, smooth_field, smoothstep
from shapnas.data.phantoms.sites import MRSite, gamma_curve
from shapnas.data.phantoms.writers import write_nifti

__all__ = ["brain_case", "write_brats", "BRAIN_CHANNELS", "BRAIN_GRID"]

BRAIN_CHANNELS = ("flair", "t1", "t1ce", "t2")
# tissue -> (flair, t1, t1ce, t2) relative intensities
_CONTRAST = {
    "wm": (0.55, 0.95, 0.95, 0.45),
    "gm": (0.72, 0.70, 0.72, 0.68),
    "deep": (0.65, 0.78, 0.80, 0.55),
    "csf": (0.12, 0.25, 0.27, 1.25),
    "edema": (1.05, 0.72, 0.74, 1.02),
    "ncr": (0.55, 0.35, 0.40, 1.15),
    "et": (0.90, 0.70, 1.40, 0.85),
    "net": (0.95, 0.60, 0.63, 0.95),  # non-enhancing solid tumour (label NCR/NET when there is no ET)
}


def _anatomy(grid: Grid, rng: np.random.Generator, tumour_center: np.ndarray,
             tumour_radius: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Brain mask and tissue masks (wm, gm, deep, csf) with mass effect away from the tumour."""
    x, y, z = grid.mesh()
    brain_rho = blob(grid, (0, 5, 0), rng.uniform(0.92, 1.08, 3) * (68, 82, 62), rng, wobble=0.04, num_waves=6)
    brain = brain_rho < 1
    folds = np.cos(x * 0.22 + 1.3 * np.sin(y * 0.07)) * np.cos(y * 0.2 + 1.1 * np.sin(z * 0.09 + x * 0.03))
    cortex = 1 - (6.5 + 4.0 * folds) / 70.0  # cortical ribbon 2.5-10.5 mm, thicker in the gyri
    gm = brain & (brain_rho > cortex)
    sulci = gm & (folds < -0.75) & (brain_rho > 0.9)
    push = -8.0 * tumour_radius / 25 * np.sign(tumour_center[0])  # mass effect: ventricles pushed away
    ventricles = np.zeros(grid.shape, dtype=bool)
    for side in (-1, 1):
        center = (side * rng.uniform(6, 10) + push, rng.uniform(0, 10), rng.uniform(2, 10))
        ventricles |= blob(grid, center, rng.uniform(0.8, 1.2, 3) * (5, 24, 9), rng, wobble=0.15,
                           rotation=random_rotation(rng, (5, 5, 12))) < 1
    deep = np.zeros(grid.shape, dtype=bool)
    for side in (-1, 1):
        deep |= blob(grid, (side * 20 + push, -5, -2), (9, 14, 10), rng, wobble=0.1) < 1
    fissure = (np.abs(x - push * 0.3) < 1.2) & (y > 25) & brain
    csf = brain & (ventricles | sulci | fissure)
    return brain, {"wm": brain & ~gm, "gm": gm & ~csf, "deep": deep & ~ventricles, "csf": csf}


def _tumour(grid: Grid, rng: np.random.Generator, center: np.ndarray, radius: float,
            brain: np.ndarray, csf: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Contiguous label (X, Y, Z) uint8 and oedema strength in [0, 1]; the tumour grade."""
    grade = str(rng.choice(["hgg", "hgg", "hgg", "solid", "lgg"]))
    rotation = random_rotation(rng, (30, 30, 90))
    radii = radius * rng.uniform(0.8, 1.2, 3)
    core = blob(grid, center, radii, rng, wobble=0.14, num_waves=5, rotation=rotation)
    rim = rng.uniform(0.25, 0.55) if grade == "hgg" else 1.0
    edema_rho = blob(grid, center, radii + rng.uniform(8, 22), rng, wobble=0.3, num_waves=7, rotation=rotation)
    label = np.zeros(grid.shape, dtype=np.uint8)
    edema = (edema_rho < 1) & brain & ~csf
    label[edema] = 2
    label[(core < 1) & brain] = 3 if grade != "lgg" else 1
    if grade == "hgg":
        necrosis = blob(grid, center, radii * (1 - rim), rng, wobble=0.2, num_waves=5, rotation=rotation) < 1
        label[necrosis & (core < 1) & brain] = 1
    strength = smoothstep((1 - edema_rho) / 0.35) * edema
    return label, strength.astype(np.float32), grade


def _form_channel(channel: np.ndarray, grid: Grid, rng: np.random.Generator, site: MRSite | None) -> np.ndarray:
    """Image formation of one noiseless channel: site ``a``'s (``site`` None) or another site's (blur, bias,
    noise level, transfer curve)."""
    if site is None:
        return finish_mri(channel, grid, rng, noise=rng.uniform(0.025, 0.045), bias=0.15, blur_vox=(0.7, 0.7, 0.5))
    formed = finish_mri(channel, grid, rng, noise=rng.uniform(0.025, 0.045) * site.noise_scale, bias=site.bias,
                        blur_vox=site.blur_vox)
    return gamma_curve(formed, site.gamma)


def brain_case(grid: Grid, rng: np.random.Generator, site: MRSite | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One patient: image (X, Y, Z, 4) float (channels ``BRAIN_CHANNELS``), label (X, Y, Z) uint8 0..3.

    Args:
        grid: the voxel grid.
        rng: the patient's generator.
        site: another site's acquisition (its tissue contrasts replace ``_CONTRAST``'s); None is site ``a``.

    Returns:
        (image, label).
    """
    contrast = _CONTRAST if site is None else {**_CONTRAST, **site.tissue_values()}
    z_half = grid.shape[2] * grid.spacing[2] / 2
    side = rng.choice([-1, 1])
    center = np.array([side * rng.uniform(18, 40), rng.uniform(-40, 40), rng.uniform(-0.3, 0.3) * z_half])
    radius = rng.uniform(9, 22)
    brain, tissues = _anatomy(grid, rng, center, radius)
    label, edema, grade = _tumour(grid, rng, center, radius, brain, tissues["csf"])
    image = np.zeros(grid.shape + (4,), dtype=np.float32)
    texture = 0.04 * smooth_field(grid, rng, wavelength=25.0, num_waves=6)
    for c in range(4):
        channel = np.zeros(grid.shape, dtype=np.float32)
        for name in ("wm", "deep", "gm", "csf"):
            channel[tissues[name]] = contrast[name][c]
        channel += edema * (contrast["edema"][c] - channel) * (label == 2)
        solid = "net" if grade == "lgg" else "ncr"
        channel[label == 1] = contrast[solid][c]
        channel[label == 3] = contrast["et"][c]
        channel = (channel + texture * brain) * rng.uniform(0.95, 1.05)
        if c == 2:  # T1ce: enhancing choroid plexus and vessels (not tumour)
            channel[tissues["csf"] & (smooth_field(grid, rng, wavelength=18.0) > 1.3)] = 1.3
        noisy = _form_channel(channel, grid, rng, site)
        image[..., c] = np.where(brain, noisy, 0.0) * rng.uniform(400, 1200)
    return image, label


# variant -> (case folder, separator, channel suffixes in BRAIN_CHANNELS order, seg suffix, extension, label values)
_BRATS_FILES = {
    "2021": ("BraTS2021_{:05d}", "_", ("flair", "t1", "t1ce", "t2"), "seg", ".nii.gz", (0, 1, 2, 4)),
    "2020": ("BraTS20_Training_{:03d}", "_", ("flair", "t1", "t1ce", "t2"), "seg", ".nii", (0, 1, 2, 4)),
    "2023": ("BraTS-GLI-{:05d}-000", "-", ("t2f", "t1n", "t1c", "t2w"), "seg", ".nii.gz", (0, 1, 2, 3)),
}
BRAIN_GRID = ((96, 96, 32), (2.0, 2.0, 2.0))  # a 64 mm axial slab of a 1 mm BraTS volume, resampled to 2 mm


def write_brats(out_dir: Path, rngs: list[np.random.Generator], variant: str = "2021",
                site: MRSite | None = None) -> Path:
    """Write BraTS cases: ``2021`` ``BraTS2021_XXXXX/BraTS2021_XXXXX_{flair,t1,t1ce,t2,seg}.nii.gz``,
    ``2020`` ``MICCAI_BraTS2020_TrainingData/BraTS20_Training_XXX/..._{...}.nii`` (uncompressed, one level
    down) or ``2023`` ``BraTS-GLI-XXXXX-000/BraTS-GLI-XXXXX-000-{t2f,t1n,t1c,t2w,seg}.nii.gz``.

    Args:
        out_dir: the folder to fill.
        rngs: one generator per patient.
        variant: ``2021`` (labels 0, 1, 2, 4), ``2020`` (same labels) or ``2023`` (labels 0..3).
        site: another site's acquisition; None (default) is site ``a``.

    Returns:
        ``out_dir`` (the data_dir to use).
    """
    if variant not in _BRATS_FILES:
        raise ValueError(f"variant={variant!r}; expected one of {', '.join(_BRATS_FILES)}")
    pattern, sep, suffixes, seg, ext, values = _BRATS_FILES[variant]
    root = out_dir / "MICCAI_BraTS2020_TrainingData" if variant == "2020" else out_dir
    for index, rng in enumerate(rngs):
        name = pattern.format(index + 1 if variant == "2020" else index)
        grid = Grid(*BRAIN_GRID)
        image, label = brain_case(grid, rng, site)
        for c, suffix in enumerate(suffixes):
            write_nifti(root / name / f"{name}{sep}{suffix}{ext}", image[..., c], grid.spacing, axcodes=("L", "P", "S"))
        disk = np.asarray(values, dtype=np.uint8)[label]
        write_nifti(root / name / f"{name}{sep}{seg}{ext}", disk, grid.spacing, axcodes=("L", "P", "S"), dtype=np.uint8)
    return out_dir
