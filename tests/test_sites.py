"""The phantoms' acquisition sites: site a unchanged byte for byte, site b readable by the loaders, other
patients of the same anatomy model, imaged differently in the documented ways, deterministic; the transfer
setting's config fields and prepared data of either site."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from shapnas.config.stage_configs import MIN_TARGET_TEST_PATIENTS, DataConfig, RetrainConfig
from shapnas.data.layouts import dataset_spec, list_cases
from shapnas.data.phantoms import phantom_info, write_phantom_dataset
from shapnas.data.phantoms.abdomen import abdomen_scene, finish_scene
from shapnas.data.phantoms.brain import BRAIN_GRID, brain_case
from shapnas.data.phantoms.cardiac import cardiac_case
from shapnas.data.phantoms.common import Grid, finish_ct, finish_mri
from shapnas.data.phantoms.kidney import kidney_case
from shapnas.data.phantoms.sites import (
    SITE_B,
    CTSite,
    MRSite,
    finish_ct_site,
    gamma_curve,
    remap_tissue,
    site_acquisition,
    site_generators,
)
from shapnas.data.prepared import prepare_data, prepare_site_data, resolve_site_data_dir
from shapnas.data.volumes import load_volume

SITE_B_DATASETS = ("acdc", "brats", "kits", "amos")
# sha256 over (relative path, bytes) of every file of write_phantom_dataset(dataset, out, 2, seed=0), computed
# before the sites existed: site a must stay byte-identical (numpy, scipy, nibabel and zlib as pinned in
# requirements.txt; another zlib may compress differently)
SITE_A_SHA256 = {
    "acdc": "da7b6740fac9096f7f7ae5073d09738703fe6cddf3ef2bc3505fb608bab9f8d7",
    "brats": "897f37d2528d50493c9f5687255ffb05ffdf9261d3da60bbb29f5ad519f33d58",
    "kits": "e66ea1fed25e6dcdeadd11cc26beebb2ed09273c3e3f7ddc10481986b1d4c3fe",
    "amos": "6c15b1893b080689c881d9fee60114d2281ff76b305099992ec6c1aa053d6786",
    "msd": "4e83d7363c896ca0afd0eb9fc0e4e67f0d156f0d8bd2ea9480c49326fb602817",
}


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("dataset", sorted(SITE_A_SHA256))
def test_site_a_phantoms_are_byte_identical_to_before_the_sites(tmp_path, dataset):
    assert _digest(write_phantom_dataset(dataset, tmp_path / "a", 2, seed=0)) == SITE_A_SHA256[dataset]


def _images(root: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(root)): np.asarray(nib.load(p).dataobj) for p in sorted(root.rglob("*.nii*"))}


@pytest.mark.parametrize("dataset", SITE_B_DATASETS)
def test_site_b_is_read_by_the_loaders_with_site_a_s_classes(tmp_path, dataset):
    site_a = write_phantom_dataset(dataset, tmp_path / "a", 2, seed=0)
    site_b = write_phantom_dataset(dataset, tmp_path / "b", 2, seed=0, site="b")
    spec_a, spec_b = dataset_spec(dataset, site_a), dataset_spec(dataset, site_b)
    assert spec_b == spec_a
    cases_a, cases_b = list_cases(dataset, site_a), list_cases(dataset, site_b)
    assert [c.patient_id for c in cases_b] == [c.patient_id for c in cases_a], "the same official layout"
    volume = load_volume(cases_b[0], spec_b, 32)
    assert volume.image.shape[1:] == (len(spec_b.channel_names), 32, 32) and np.isfinite(volume.image).all()
    assert phantom_info(site_b)["site"] == "b" and "site" not in phantom_info(site_a)
    images_a, images_b = _images(site_a), _images(site_b)
    assert len(images_a) == len(images_b)
    assert all(not np.array_equal(a, b) for a, b in zip(images_a.values(), images_b.values())), \
        "other patients, not copies"


@pytest.mark.parametrize("dataset", SITE_B_DATASETS)
def test_site_b_is_deterministic_and_patient_i_does_not_depend_on_the_count(tmp_path, dataset):
    two = _images(write_phantom_dataset(dataset, tmp_path / "two", 2, seed=3, site="b"))
    one = _images(write_phantom_dataset(dataset, tmp_path / "one", 1, seed=3, site="b"))
    again = _images(write_phantom_dataset(dataset, tmp_path / "again", 1, seed=3, site="b"))
    assert one and set(one) < set(two)
    for name, array in one.items():
        np.testing.assert_array_equal(array, two[name])
        np.testing.assert_array_equal(array, again[name])


def test_site_streams_are_disjoint():
    a = [g.random() for g in site_generators(0, 4, "a")]
    b = [g.random() for g in site_generators(0, 4, "b")]
    assert a == [g.random() for g in np.random.default_rng(0).spawn(4)], "site a keeps the old stream"
    assert not set(a) & set(b)


def test_site_errors_name_the_value(tmp_path):
    with pytest.raises(ValueError, match="site='c'; expected one of a, b"):
        site_acquisition("acdc", "c")
    with pytest.raises(ValueError, match="site='b' for dataset='msd'"):
        write_phantom_dataset("msd", tmp_path / "m", 1, seed=0, site="b")
    with pytest.raises(ValueError, match="gamma > 0"):
        MRSite(tissue=(), blur_vox=(1, 1, 0), bias=0.1, noise_scale=1.0, gamma=0.0)
    with pytest.raises(ValueError, match="hu_slope > 0"):
        CTSite(hu_slope=-1.0, nonuniformity_hu=0.0, blur_vox=(1, 1, 0), grain_vox=1.0, noise_scale=1.0)


# -- the documented differences, on paired patients: the same generator state draws the same anatomy at both
# sites (site b changes image formation only), so labels match and the images differ only by acquisition


def _median_ratio(image: np.ndarray, label: np.ndarray, numerator: int, denominator: int) -> float:
    return float(np.median(image[label == numerator]) / np.median(image[label == denominator]))


def test_acdc_site_b_same_anatomy_shifted_contrast():
    grid = Grid((96, 96, 8), (1.5, 1.5, 10.0))
    frame_a = cardiac_case(grid, np.random.default_rng(11), "NOR")["ED"]
    frame_b = cardiac_case(grid, np.random.default_rng(11), "NOR", SITE_B["acdc"])["ED"]
    np.testing.assert_array_equal(frame_a[1], frame_b[1])
    # myocardium (2) moved towards the LV blood (3): 0.27 -> 0.36 of blood, then the gamma curve lifts it further
    assert _median_ratio(*frame_b, 2, 3) > _median_ratio(*frame_a, 2, 3) + 0.08


def test_brats_site_b_same_anatomy_less_suppressed_csf_and_weaker_enhancement():
    grid = Grid(*BRAIN_GRID)
    image_a, label_a = brain_case(grid, np.random.default_rng(4))
    image_b, label_b = brain_case(grid, np.random.default_rng(4), SITE_B["brats"])
    np.testing.assert_array_equal(label_a, label_b)
    if (label_a == 3).sum() > 50:  # T1ce: enhancing rim against oedema
        assert _median_ratio(image_b[..., 2], label_b, 3, 2) < _median_ratio(image_a[..., 2], label_a, 3, 2)
    flair_a, flair_b = image_a[..., 0], image_b[..., 0]
    brain = flair_a > 0
    assert np.percentile(flair_b[brain], 5) / np.median(flair_b[brain]) > \
        np.percentile(flair_a[brain], 5) / np.median(flair_a[brain]), "CSF less suppressed on FLAIR"


def _interior(mask: np.ndarray, voxels: int = 3) -> np.ndarray:
    """The mask eroded in-plane by ``voxels``: away from partial volume with the neighbours."""
    return ndimage.binary_erosion(mask, np.ones((3, 3, 1), dtype=bool), iterations=voxels)


def test_kits_site_b_same_anatomy_brighter_enhancement_and_more_noise():
    grid = Grid((128, 128, 12), (2.6, 2.6, 5.0))
    site = replace(SITE_B["kits"], nonuniformity_hu=0.0)  # the transfer alone (the field shifts HU locally)
    image_a, label_a = kidney_case(grid, np.random.default_rng(2))
    image_b, label_b = kidney_case(grid, np.random.default_rng(2), site)
    np.testing.assert_array_equal(label_a, label_b)
    kidney = _interior(label_a == 1)
    ratio = np.median(image_b[kidney]) / np.median(image_a[kidney])
    assert ratio == pytest.approx(site.hu_slope, abs=0.1), "kidney HU scaled by the tube-potential transfer"
    corner = (slice(0, 6), slice(0, 6), slice(None))  # outside the body: air, untouched by the transfer
    assert image_b[corner].std() / image_a[corner].std() == pytest.approx(site.noise_scale, rel=0.15)


def test_amos_site_b_is_the_same_scene_finished_differently():
    grid = Grid((96, 96, 8), (3.5, 3.5, 8.0), (0.0, 0.0, 30.0))
    scene_a, scene_b = abdomen_scene(grid, np.random.default_rng(9)), abdomen_scene(grid, np.random.default_rng(9))
    np.testing.assert_array_equal(scene_a.owner, scene_b.owner)
    site = SITE_B["amos"]
    image_a = finish_scene(scene_a, grid, np.random.default_rng(1))
    image_b = finish_scene(scene_b, grid, np.random.default_rng(1), replace(site, nonuniformity_hu=0.0))
    liver = _interior(scene_a.owner == 6)
    assert np.median(image_b[liver]) / np.median(image_a[liver]) == pytest.approx(site.hu_slope, abs=0.1)
    field = finish_scene(scene_b, grid, np.random.default_rng(1), site) - image_b  # the non-uniformity alone
    body = scene_a.hu > -900
    assert 0.2 * site.nonuniformity_hu < field[body].std() < 1.5 * site.nonuniformity_hu


def test_kits_site_b_reconstructs_a_wider_field_of_view(tmp_path):
    spacing = {}
    for site in ("a", "b"):
        root = write_phantom_dataset("kits", tmp_path / site, 3, seed=0, site=site)
        spacing[site] = [nib.load(p).header.get_zooms()[1] for p in sorted(root.rglob("imaging.nii.gz"))]
    assert max(spacing["a"]) * SITE_B["kits"].fov_scale > min(spacing["b"]) > max(spacing["a"])


def _edge_spread(profile: np.ndarray) -> float:
    """Standard deviation (voxels) of a rising edge's derivative: the blur's width."""
    slope = np.clip(np.diff(profile.astype(np.float64)), 0, None)
    x = np.arange(slope.size)
    mean = (slope * x).sum() / slope.sum()
    return float(np.sqrt((slope * (x - mean) ** 2).sum() / slope.sum()))


@pytest.mark.parametrize("dataset", SITE_B_DATASETS)
def test_site_b_blurs_more_than_site_a(dataset):
    """A noise-free step edge through each site's image formation: site b's is wider (coarser resolution)."""
    grid = Grid((64, 8, 4), (1.0, 1.0, 1.0))
    step = np.zeros(grid.shape, dtype=np.float32)
    step[32:] = 1.0
    site = SITE_B[dataset]
    if isinstance(site, MRSite):
        site_a_blur = {"acdc": (0.6, 0.6, 0.0), "brats": (0.7, 0.7, 0.5)}[dataset]
        a = finish_mri(step, grid, np.random.default_rng(0), noise=1e-6, bias=0.0, blur_vox=site_a_blur)
        b = finish_mri(step, grid, np.random.default_rng(0), noise=1e-6, bias=0.0, blur_vox=site.blur_vox)
    else:
        hu = step * 200.0
        a = finish_ct(hu, np.random.default_rng(0), noise=1e-6, blur_vox=(0.7, 0.7, 0.4))
        flat = CTSite(hu_slope=1.0, nonuniformity_hu=0.0, blur_vox=site.blur_vox, grain_vox=site.grain_vox,
                      noise_scale=1.0)
        b = finish_ct_site(hu, grid, np.random.default_rng(0), flat, noise=1e-6)
    assert _edge_spread(b[:, 4, 2]) > _edge_spread(a[:, 4, 2]) + 0.3


def test_tissue_remap_and_gamma_curve():
    tissues = {"lung": 0.05, "myo": 0.27, "blood": 1.0}
    image = np.array([0.0, 0.05, 0.27, 0.635, 1.0, 1.2], dtype=np.float32)
    out = remap_tissue(image, tissues, {"myo": 0.36})
    np.testing.assert_allclose(out, [0.0, 0.05, 0.36, 0.68, 1.0, 1.2], rtol=1e-6)
    np.testing.assert_allclose(gamma_curve(np.array([-1.0, 0.25, 1.0]), 0.5), [0.0, 0.5, 1.0])


@pytest.mark.parametrize("dataset", ("acdc", "kits"))
def test_site_b_labels_of_the_same_family(tmp_path, dataset):
    """Other patients of the same anatomy model: every class present at both sites, class shares comparable."""
    shares = {}
    for site in ("a", "b"):
        root = write_phantom_dataset(dataset, tmp_path / site, 4, seed=0, site=site)
        spec = dataset_spec(dataset, root)
        labels = np.concatenate([load_volume(c, spec, 32).label.ravel() for c in list_cases(dataset, root)])
        shares[site] = np.bincount(labels, minlength=len(spec.class_names))[1:] / labels.size
    assert (shares["a"] > 0).all() and (shares["b"] > 0).all()
    assert np.all((shares["b"] / shares["a"] > 0.33) & (shares["b"] / shares["a"] < 3.0)), shares


# -- config fields and the prepared data of either site


def test_transfer_fields_default_to_the_same_site_and_validate():
    cfg = DataConfig()
    assert (cfg.setting, cfg.target_data_dir, cfg.target_train_patients) == ("same_site", "", 8)
    assert cfg.target_patients - cfg.target_train_patients >= MIN_TARGET_TEST_PATIENTS
    for values, message in [({"setting": "cross"}, "setting='cross'; expected one of same_site, transfer"),
                            ({"target_data_dir": "/d"}, "target_data_dir='/d' with setting='same_site'"),
                            ({"setting": "transfer", "target_train_patients": 2}, "target_train_patients=2"),
                            ({"setting": "transfer", "target_patients": 30}, "target_patients=30"),
                            ({"setting": "transfer", "data_dir": "/real"}, "needs target_data_dir"),
                            ({"setting": "transfer", "dataset": "msd"}, "needs target_data_dir")]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            RetrainConfig(**values)


def test_prepare_site_data_gives_both_sites_through_the_same_loaders(tmp_path):
    cfg = DataConfig(dataset="acdc", results_root=str(tmp_path), slice_size=32, phantom_patients=8,
                     setting="transfer", target_train_patients=4, target_patients=4 + MIN_TARGET_TEST_PATIENTS)
    source = prepare_site_data(cfg, "source")
    assert source.splits == prepare_data(cfg.replace(setting="same_site")).splits, "today's source splits"
    target = prepare_site_data(cfg, "target")
    assert target.data_dir == tmp_path / "phantoms" / "acdc-site-b" == resolve_site_data_dir(cfg, "target")
    assert [len(target.splits[n]) for n in ("train_w", "train_a", "val", "test")] == [2, 1, 1, 30]
    assert len({v.patient_id for v in target.volumes["test"]}) == MIN_TARGET_TEST_PATIENTS
    assert target.spec == source.spec
    assert (tmp_path / "acdc" / "splits-target-4.json").is_file()
    with pytest.raises(ValueError, match="site='target' with setting='same_site'"):
        prepare_site_data(cfg.replace(setting="same_site"), "target")
    with pytest.raises(ValueError, match="site='other'"):
        prepare_site_data(cfg, "other")  # type: ignore[arg-type]
