"""Contrast-enhanced abdominal CT phantom (HU) in the AMOS22 layout; the scene KiTS builds on.

An axial stack through the upper abdomen: body wall (subcutaneous fat, muscle), spine with discs, psoas
and paraspinal muscles, ribs, and the AMOS organs (Ji et al., NeurIPS 2022) placed by anatomy: liver,
spleen, kidneys (cortex, medulla, sinus fat), gallbladder, oesophagus, stomach (wall, fluid, gas),
aorta, IVC, pancreas, adrenals, duodenum, plus unlabelled small bowel and colon loops. HU follow an
arterial or portal-venous phase; pancreas, duodenum, bowel and IVC are close in HU (low-contrast
boundaries). Bladder and prostate/uterus (labels 14, 15) lie below this field of view and are absent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shapnas.data.phantoms.common import Grid, blob, finish_ct, random_rotation, smooth_field, tube
from shapnas.data.phantoms.sites import CTSite, finish_ct_site
from shapnas.data.phantoms.writers import write_json, write_nifti

__all__ = ["AMOS_LABELS", "Scene", "abdomen_scene", "finish_scene", "write_amos"]

AMOS_LABELS = ("background", "spleen", "right kidney", "left kidney", "gall bladder", "esophagus", "liver",
               "stomach", "arota", "postcava", "pancreas", "right adrenal gland", "left adrenal gland",
               "duodenum", "bladder", "prostate/uterus")  # "arota" as in the official dataset.json
_ID = {name: index for index, name in enumerate(AMOS_LABELS)}
# phase -> organ -> HU (Hounsfield units, typical enhanced values)
_HU = {
    "arterial": {"liver": 75, "spleen": 130, "cortex": 210, "medulla": 110, "aorta": 260, "ivc": 95,
                 "pancreas": 115, "portal": 150, "bowel_wall": 85},
    "venous": {"liver": 115, "spleen": 120, "cortex": 175, "medulla": 165, "aorta": 160, "ivc": 150,
               "pancreas": 100, "portal": 170, "bowel_wall": 95},
}


@dataclass
class Scene:
    """A noiseless CT scene: HU (X, Y, Z), AMOS organ ids (X, Y, Z) and the kidneys' geometry."""

    hu: np.ndarray
    owner: np.ndarray
    phase: str
    kidneys: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    # (center (3,), radii (3,), rotation (3, 3), rho field (X, Y, Z)) per kidney: right, left

    def paint(self, mask: np.ndarray, hu: float | np.ndarray, owner: str | None = None) -> None:
        """Set HU (scalar or full-size array) and, if given, the AMOS organ id inside ``mask``."""
        mask = np.broadcast_to(mask, self.hu.shape)
        self.hu[mask] = hu if np.isscalar(hu) else np.broadcast_to(np.asarray(hu, dtype=np.float32), mask.shape)[mask]
        if owner is not None:
            self.owner[mask] = _ID[owner]


def _body(scene: Scene, grid: Grid, rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """Body wall, muscles, spine and ribs; returns the abdominal cavity mask, body half-depth and spine y."""
    x, y, z = grid.mesh()
    a, b, fat = rng.uniform(140, 170), rng.uniform(100, 125), rng.uniform(10, 30)
    ellipse = lambda sa, sb: (x / sa) ** 2 + ((y - 5) / sb) ** 2 + 0 * z < 1  # noqa: E731
    scene.paint(ellipse(a, b), -100.0)
    scene.paint(ellipse(a - fat, b - fat), 50.0)
    cavity = ellipse(a - fat - 9, b - fat - 9)
    scene.paint(cavity, -90.0)
    spine_y = -b + fat + 48
    scene.paint(((x / 30) ** 2 + ((y - spine_y + 35) / 24) ** 2 + 0 * z < 1) | (np.hypot(x - 38, y - spine_y + 28) < 22)
                | (np.hypot(x + 38, y - spine_y + 28) < 22), 55.0)  # paraspinal muscles
    psoas_r = 7 + 0.15 * np.clip(40 - z, 0, None)
    scene.paint((np.hypot(x - 30, y - spine_y - 4) < psoas_r) | (np.hypot(x + 30, y - spine_y - 4) < psoas_r), 50.0)
    disc = np.abs(((z - rng.uniform(0, 32)) % 32) - 16) > 12.5
    body_r = np.hypot(x, y - spine_y)
    scene.paint(body_r < 20, np.where(disc, 90.0, 600.0) + 0 * x)
    scene.paint(body_r < 18, np.where(disc, 90.0, 240.0) + 0 * x)
    scene.paint(((x / 24) ** 2 + ((y - spine_y + 30) / 9) ** 2 + 0 * z < 1), 450.0)  # posterior arch
    scene.paint(np.hypot(x, y - spine_y + 22) < 6 + 0 * z, 20.0)  # spinal canal
    for angle in np.deg2rad([-150, -125, -100, -75, -50, -30, 210, 235, 260]):  # ribs: posterolateral arcs
        rx, ry = (a - fat - 5) * np.cos(angle), 5 + (b - fat - 5) * np.sin(angle)
        scene.paint((np.hypot(x - rx, y - ry) < 5) & (np.abs(((z + angle * 12) % 30) - 15) < 5) & (z > -20), 500.0)
    return cavity & np.ones(grid.shape, dtype=bool), b, spine_y


def _kidneys(scene: Scene, grid: Grid, rng: np.random.Generator, spine_y: float, hu: dict[str, float]) -> None:
    for side, name in ((1, "right kidney"), (-1, "left kidney")):
        center = np.array([side * rng.uniform(62, 75), spine_y + rng.uniform(15, 25),
                           rng.uniform(-18, -4) if side > 0 else rng.uniform(-2, 12)])
        radii = rng.uniform(0.9, 1.1, 3) * (26, 19, 50)
        rotation = random_rotation(rng, (8, 12, 0)) @ random_rotation(rng, (0, 0, 8))
        hilum = np.deg2rad(side * -35.0)  # hilum faces antero-medially
        turn = np.array([[np.cos(hilum), -np.sin(hilum), 0], [np.sin(hilum), np.cos(hilum), 0], [0, 0, 1]])
        rotation = turn @ rotation
        rho = blob(grid, center, radii, rng, wobble=0.05, num_waves=3, rotation=rotation)
        scene.paint(rho < 1, hu["cortex"], name)
        scene.paint(rho < 0.78, hu["medulla"], name)
        medial = center + rotation @ np.array([-side * radii[0] * 0.75, 0, 0])
        sinus = blob(grid, medial, (radii[0] * 0.5, radii[1] * 0.45, radii[2] * 0.4), rng, rotation=rotation) < 1
        scene.paint(sinus, -70.0, "background")
        scene.paint(blob(grid, medial, (7, 6, 10), rng, rotation=rotation) < 1, 10.0, "background")  # pelvis
        scene.kidneys.append((center, radii, rotation, rho))


def _vessels(scene: Scene, grid: Grid, rng: np.random.Generator, spine_y: float, hu: dict[str, float]) -> None:
    top, bottom = grid.axes()[2][[-1, 0]] + np.array([20.0, -20.0])
    drift = rng.uniform(-4, 4)
    scene.paint(tube(grid, [(-12, spine_y + 32, top), (-12 + drift, spine_y + 30, bottom)], [12, 11], rng) < 1,
                hu["aorta"], "arota")
    ivc = tube(grid, [(24, spine_y + 34, top), (22 + drift, spine_y + 28, bottom)], [11, 11], rng)
    scene.paint(ivc < 1, hu["ivc"], "postcava")
    for center, _, _, _ in scene.kidneys:  # renal veins to the IVC
        scene.paint(tube(grid, [(center[0] * 0.6, center[1] + 8, center[2] + 5), (22, spine_y + 30, center[2] + 8)],
                         [5, 5], rng) < 1, hu["ivc"])


def _gut(scene: Scene, grid: Grid, rng: np.random.Generator, cavity: np.ndarray, hu: dict[str, float]) -> None:
    """Unlabelled small bowel and colon (wall, fluid or gas with stool), then duodenum and stomach."""
    _, y, _ = grid.mesh()
    stool = smooth_field(grid, rng, wavelength=15.0, num_waves=6)
    for _ in range(int(rng.integers(6, 11))):
        rho = blob(grid, rng.uniform([-80, -10, -90], [80, 60, 30]), rng.uniform(11, 17, 3), rng, wobble=0.12)
        scene.paint((rho < 1) & cavity, hu["bowel_wall"])
        scene.paint((rho < 0.7) & cavity, float(rng.choice([15.0, 25.0, -900.0])))
    colon = [[(88, 5, -110), (85, 15, 10), (60, 70, 30), (-20, 75, 35), (-80, 45, 55), (-88, 0, 10),
              (-85, 5, -110)]]
    rho = tube(grid, colon[0], [22] * 7, rng, wobble=0.15)
    scene.paint((rho < 1) & cavity, hu["bowel_wall"])
    scene.paint((rho < 0.82) & cavity, np.where(stool > 0.2, 10.0 + 60 * stool, -850.0))
    path = [(12, 48, 52), (42, 30, 40), (48, 10, 15), (36, 4, -12), (0, 8, -20), (-25, 15, -12)]
    rho = tube(grid, path, [11] * 6, rng, wobble=0.12)
    scene.paint(rho < 1, hu["bowel_wall"], "duodenum")
    scene.paint(rho < 0.6, float(rng.choice([15.0, 20.0, -900.0])), "duodenum")
    path = [(-22, 12, 128), (-55, 25, 112), (-60, 45, 85), (-28, 60, 62), (5, 52, 55)]
    rho = tube(grid, path, np.array([16, 32, 36, 26, 14]) * rng.uniform(0.85, 1.15), rng, wobble=0.1)
    level = rng.uniform(20, 55)
    scene.paint(rho < 1, hu["bowel_wall"] - 10, "stomach")
    scene.paint(rho < 0.85, np.where(y > level, -900.0, 10.0 + 25 * stool), "stomach")


def abdomen_scene(grid: Grid, rng: np.random.Generator) -> Scene:
    """A noiseless abdominal CT scene on ``grid`` (world z = 0 at the renal hila)."""
    phase = str(rng.choice(["arterial", "venous"]))
    hu = _HU[phase]
    scene = Scene(np.full(grid.shape, -1000.0, dtype=np.float32), np.zeros(grid.shape, dtype=np.uint8), phase)
    cavity, _, spine_y = _body(scene, grid, rng)
    _gut(scene, grid, rng, cavity, hu)
    shift = rng.uniform(-10, 10, 3)
    liver = np.minimum(blob(grid, (72, -8, 110) + shift, (72, 82, 85), rng, wobble=0.06,
                            rotation=random_rotation(rng, (5, 5, 10))),
                       blob(grid, (10, 45, 120) + shift, (50, 30, 40), rng, wobble=0.1))
    scene.paint((liver < 1) & cavity, hu["liver"], "liver")
    scene.paint(blob(grid, (30, 20, 95) + shift, (8, 8, 30), rng) < 1, hu["portal"])  # portal vein (unlabelled)
    scene.paint(blob(grid, (48, 40, 42) + shift, (14, 16, 32), rng, rotation=random_rotation(rng, (20, 20, 20))) < 1,
                10.0, "gall bladder")
    spleen = blob(grid, (-88, -38, 95) + shift, (28, 55, 52), rng, wobble=0.08,
                  rotation=random_rotation(rng, (10, 10, 50)))
    scene.paint((spleen < 1) & cavity, hu["spleen"], "spleen")
    path = [(30, 10, 15), (5, 28, 25), (-30, 22, 35), (-70, -8, 50)]
    scene.paint(tube(grid, path, np.array([16, 10, 11, 9]) * rng.uniform(0.85, 1.15), rng, wobble=0.15) < 1,
                hu["pancreas"], "pancreas")
    _kidneys(scene, grid, rng, spine_y, hu)
    for side, name in ((1, "right adrenal gland"), (-1, "left adrenal gland")):
        center = scene.kidneys[0 if side > 0 else 1][0] + np.array([-side * 28, 18, 55])
        scene.paint(blob(grid, center, (3.5, 13, 14), rng, wobble=0.15,
                         rotation=random_rotation(rng, (10, 10, 30))) < 1, 45.0, name)
    _vessels(scene, grid, rng, spine_y, hu)
    path = [(-8, spine_y + 48, 230), (-14, spine_y + 55, 150), (-22, 12, 128)]
    scene.paint(tube(grid, path, [8, 8, 9], rng) < 1, 45.0, "esophagus")
    return scene


def finish_scene(scene: Scene, grid: Grid, rng: np.random.Generator, site: CTSite | None = None) -> np.ndarray:
    """Organ texture, partial-volume blur and quantum noise: the CT image (X, Y, Z) in HU.

    Args:
        scene: the noiseless scene.
        grid: its voxel grid.
        rng: the patient's generator.
        site: another site's acquisition (:func:`shapnas.data.phantoms.sites.finish_ct_site`); None is site ``a``.

    Returns:
        The CT image in HU.
    """
    soft = (scene.hu > -200) & (scene.hu < 300)
    texture = 8.0 * smooth_field(grid, rng, wavelength=20.0, num_waves=5)
    hu = scene.hu + texture * soft
    if site is not None:
        return finish_ct_site(hu, grid, rng, site, noise=float(rng.uniform(12, 25)))
    return finish_ct(hu, rng, noise=float(rng.uniform(12, 25)), blur_vox=(0.7, 0.7, 0.4))


def write_amos(out_dir: Path, rngs: list[np.random.Generator], site: CTSite | None = None) -> Path:
    """Write ``{dataset.json, imagesTr/amos_XXXX.nii.gz, labelsTr/amos_XXXX.nii.gz}`` (CT ids < 500).

    Args:
        out_dir: the ``amos22`` folder to fill.
        rngs: one generator per patient.
        site: another site's acquisition; None (default) is site ``a``.

    Returns:
        ``out_dir``.
    """
    training = []
    for index, rng in enumerate(rngs):
        name = f"amos_{index + 1:04d}"
        pixel = float(rng.uniform(2.5, 2.8))
        if site is not None:  # another site's reconstruction field of view
            pixel *= site.fov_scale
        grid = Grid((128, 128, 24), (pixel, pixel, 8.0), (0.0, 0.0, float(rng.uniform(20, 50))))
        scene = abdomen_scene(grid, rng)
        image = finish_scene(scene, grid, rng, site)
        write_nifti(out_dir / "imagesTr" / f"{name}.nii.gz", image, grid.spacing, axcodes=("L", "P", "S"))
        write_nifti(out_dir / "labelsTr" / f"{name}.nii.gz", scene.owner, grid.spacing, axcodes=("L", "P", "S"),
                    dtype=np.uint8)
        training.append({"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"})
    write_json(out_dir / "dataset.json", {
        "name": "AMOS", "description": "synthetic phantom in the AMOS22 layout (not real data)",
        "tensorImageSize": "3D", "reference": "shapnas phantom", "licence": "CC-BY-SA 4.0", "release": "phantom",
        "modality": {"0": "CT"}, "labels": {str(i): n for i, n in enumerate(AMOS_LABELS)},
        "numTraining": len(training), "numTest": 0, "training": training, "validation": [], "test": []})
    return out_dir
