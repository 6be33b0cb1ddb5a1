"""Phantom datasets: determinism, anatomy per flavour, a non-trivial segmentation problem, safe writing,
and sample-slice figures written to PNG (look at them: ``pytest --basetemp=DIR``)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from shapnas.config.stage_configs import DataConfig
from shapnas.data.layouts import dataset_spec, list_cases
from shapnas.data.phantoms import PHANTOM_DATASETS, phantom_info, write_phantom_dataset
from shapnas.data.prepared import prepare_data, summarize
from shapnas.data.volumes import load_volume
from shapnas.plots.data import plot_class_frequencies, plot_intensity_histograms, plot_sample_slices, split_table


def _arrays(root):
    return {str(p.relative_to(root)): np.asarray(nib.load(p).dataobj) for p in sorted(root.rglob("*.nii*"))}


def _canonical(path):
    return np.asarray(nib.as_closest_canonical(nib.load(path)).dataobj)


@pytest.mark.parametrize("dataset", PHANTOM_DATASETS)
def test_same_seed_same_arrays(tmp_path, dataset):
    two = _arrays(write_phantom_dataset(dataset, tmp_path / "a", 2, seed=5))
    one = _arrays(write_phantom_dataset(dataset, tmp_path / "b", 1, seed=5))
    other = _arrays(write_phantom_dataset(dataset, tmp_path / "c", 1, seed=6))
    assert one and set(one) < set(two)
    for name, array in one.items():  # patient i does not depend on how many patients are written
        np.testing.assert_array_equal(array, two[name])
    assert set(other) != set(one) or any(not np.array_equal(other[k], one[k]) for k in one), "seeds differ"
    assert phantom_info(tmp_path / "a") == {"dataset": dataset, "variant": phantom_info(tmp_path / "a")["variant"],
                                            "num_patients": 2, "seed": 5, "version": 2}


def _best_interval_dice(values: np.ndarray, mask: np.ndarray) -> float:
    """Best Dice of any intensity interval [a, b] (on a quantile grid) at segmenting ``mask``."""
    edges = np.quantile(values, np.linspace(0, 1, 41))
    best = 0.0
    for i, low in enumerate(edges):
        for high in edges[i + 1:]:
            pred = (values >= low) & (values <= high)
            best = max(best, 2 * (pred & mask).sum() / (pred.sum() + mask.sum()))
    return best


def test_acdc_anatomy_and_phases(phantom_dir):
    root = phantom_dir("acdc")
    lv_ed = []
    for folder in sorted((root / "training").iterdir()):
        info = dict(line.split(": ") for line in (folder / "Info.cfg").read_text().splitlines())
        ed = _canonical(folder / f"{folder.name}_frame01_gt.nii.gz")
        es = _canonical(folder / f"{folder.name}_frame{int(info['ES']):02d}_gt.nii.gz")
        assert set(np.unique(ed)) == {0, 1, 2, 3}
        assert (es == 3).sum() < 0.85 * (ed == 3).sum(), "the LV cavity shrinks at ES"
        assert ((es == 2).sum() / (ed == 2).sum()) == pytest.approx(1.0, abs=0.3), "myocardial mass is kept"
        lv = ed == 3
        ring = ndimage.binary_dilation(lv, structure=np.ones((3, 3, 1))) & ~lv
        assert np.isin(ed[ring], (2, 3)).mean() > 0.9, "the myocardium surrounds the LV cavity"
        lv_ed.append(int(lv.sum()))
    assert len(set(lv_ed)) == len(lv_ed), "patients differ"
    volume = load_volume(list_cases("acdc", root)[0], dataset_spec("acdc", root), 128)
    assert _best_interval_dice(volume.image.ravel(), volume.label.ravel() == 3) < 0.85, "bright blood is not only LV"


def test_brats_contrasts(phantom_dir):
    root = phantom_dir("brats", "2021")
    for case in list_cases("brats", root):
        flair, t1, t1ce, t2 = (_canonical(p).astype(float) for p in case.image_paths)
        seg = _canonical(case.label_path)
        brain = flair > 0
        assert ((t1 > 0) == brain).all() and not flair[~brain].any(), "skull-stripped: zero outside the brain"
        normal = brain & (seg == 0)
        assert flair[seg == 2].mean() > 1.2 * flair[normal].mean(), "oedema is bright on FLAIR"
        assert t2[seg == 2].mean() > t2[normal].mean()
        if (seg == 4).any():
            assert t1ce[seg == 4].mean() > 1.2 * t1ce[normal].mean(), "enhancing tumour is bright on T1ce"
            assert t1ce[seg == 4].mean() > t1[seg == 4].mean() * 1.2
        assert ndimage.binary_fill_holes(seg > 0).sum() <= 1.05 * (seg > 0).sum()
    volume = load_volume(list_cases("brats", root)[1], dataset_spec("brats", root), 96)
    assert _best_interval_dice(volume.image[:, 0].ravel(), volume.label.ravel() > 0) < 0.9


def test_kits_masses_in_kidneys(phantom_dir):
    root = phantom_dir("kits", "kits23")
    tumour_dice = []
    for case in list_cases("kits", root):
        hu, seg = _canonical(case.image_paths[0]).astype(float), _canonical(case.label_path)
        assert ndimage.label(seg == 1)[1] >= 2, "two kidneys"
        assert (seg == 2).any() or (seg == 3).any()
        if (seg == 3).any():
            assert hu[seg == 3].mean() < hu[seg == 1].mean() - 60, "cysts are near water"
        if (seg == 2).any():
            touching = ndimage.binary_dilation(seg == 2, iterations=2) & (seg == 1)
            assert touching.any(), "the tumour grows from the kidney"
            tumour_dice.append(_best_interval_dice(hu[seg > 0], seg[seg > 0] == 2))
    assert tumour_dice and max(tumour_dice) < 0.9, "HU alone does not separate tumour from kidney"


def test_amos_organs_where_they_belong(phantom_dir):
    root = phantom_dir("amos")
    for case in list_cases("amos", root):
        seg = _canonical(case.label_path)
        present = set(np.unique(seg)) - {0}
        assert len(present) >= 11 and not present & {14, 15}
        x_of = lambda k: np.argwhere(seg == k)[:, 0].mean()  # noqa: E731 - canonical RAS: larger x = right
        assert x_of(6) > seg.shape[0] / 2 > x_of(1), "liver on the right, spleen on the left"
        assert x_of(2) > x_of(3), "right kidney right of the left kidney"


def test_writer_refuses_foreign_folders(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a phantom dataset"):
        write_phantom_dataset("amos", foreign, 1, 0)
    assert (foreign / "notes.txt").read_text() == "keep me"
    root = write_phantom_dataset("amos", tmp_path / "ph", 2, 0)
    write_phantom_dataset("amos", root, 1, 0)  # a phantom folder is replaced
    assert len(list((root / "imagesTr").iterdir())) == 1 and phantom_info(root)["num_patients"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "ph"], "no staging folder left behind"
    with pytest.raises(ValueError, match="variant='kits20'"):
        write_phantom_dataset("kits", tmp_path / "k", 1, 0, variant="kits20")


def test_writer_keeps_the_same_data_a_concurrent_run_is_reading(tmp_path):
    """Two runs sharing a results folder may both find the phantoms missing and both write them: the one that
    finishes second must not delete the folder the first is already reading (seen: 'file not found')."""
    root = write_phantom_dataset("amos", tmp_path / "ph", 2, 0)
    files = sorted(p.name for p in (root / "imagesTr").iterdir())
    reader_handle = (root / "imagesTr" / files[0]).stat().st_ino
    write_phantom_dataset("amos", root, 2, 0)  # the slower of two concurrent writers: same data
    assert (root / "imagesTr" / files[0]).stat().st_ino == reader_handle, "the folder in use was replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ph"], "no staging folder left behind"
    write_phantom_dataset("amos", root, 2, 1)  # other data: replaced
    assert phantom_info(root)["seed"] == 1 and (root / "imagesTr" / files[0]).stat().st_ino != reader_handle


@pytest.mark.parametrize("dataset,variant", [("acdc", None), ("brats", "2021"), ("kits", "kits23"), ("amos", None),
                                             ("msd", "msd")])
def test_sample_figures_written(phantom_dir, tmp_path, dataset, variant):
    cfg = DataConfig(dataset=dataset, data_dir=str(phantom_dir(dataset, variant)), results_root=str(tmp_path),
                     slice_size=32)
    prepared = prepare_data(cfg)
    fig = plot_sample_slices(prepared, num_cases=2)
    fig.savefig(tmp_path / f"samples-{dataset}.png", dpi=50)
    assert (tmp_path / f"samples-{dataset}.png").stat().st_size > 1000
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == list(prepared.spec.class_names[1:])
    assert len(fig.axes) == 2 * (len(prepared.spec.channel_names) + 1)
    summary = summarize(prepared)
    plot_class_frequencies(summary).savefig(tmp_path / f"freq-{dataset}.png", dpi=40)
    plot_intensity_histograms(prepared).savefig(tmp_path / f"hist-{dataset}.png", dpi=40)
    table = split_table(prepared)
    assert list(table.index) == ["train_w", "train_a", "val", "test"] and table["patients"].sum() == 4
    assert table["slices"].tolist() == [summary["splits"][s]["slices"] for s in table.index]
