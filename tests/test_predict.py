"""Tests of shapnas.training.predict and ``python -m shapnas predict``: preprocessing parity with training,
geometry round trips in non-canonical orientations, multi-channel inputs, real checkpoints."""

from __future__ import annotations

import dataclasses

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shapnas.cli import main
from shapnas.data.layouts import dataset_spec, list_cases
from shapnas.data.phantoms import write_phantom_dataset
from shapnas.data.phantoms.writers import write_nifti
from shapnas.data.volumes import load_volume, to_slices
from shapnas.training.predict import from_slices, model_slices, predict_case, predict_nifti, read_input

CT_SPEC = {"name": "custom", "channel_names": ["CT"], "class_names": ["background", "a", "b"],
           "label_values": [0, 2, 5], "modality": "ct"}
HU = np.array([-100.0, 100.0, 250.0])  # class -> intensity; CT window maps them to -0.6, 0.2, 0.8


class ThresholdOracle(nn.Module):
    """Classes from the normalised CT intensity of channel 0 (the inverse of ``HU``), as one-hot logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        classes = (x[:, 0] > -0.2).long() + (x[:, 0] > 0.5).long()  # (B, H, W)
        return 10.0 * F.one_hot(classes, 3).permute(0, 3, 1, 2).float()  # (B, 3, H, W)


def _blocks(shape: tuple[int, int, int]) -> np.ndarray:
    """An asymmetric canonical (X, Y, Z) label of classes 0, 1, 2."""
    label = np.zeros(shape, dtype=np.int64)
    x, y, z = shape
    label[x // 8: x // 2, y // 5: 3 * y // 4, 1: z - 1] = 1
    label[5 * x // 8: x - 1, 1: y // 3, :] = 2
    label[x // 4: x // 3, 3 * y // 4 + 1: y - 1, z - 1] = 2
    return label


def _write_case(tmp_path, label: np.ndarray, axcodes: tuple[str, str, str], rotation: float):
    spacing = (1.0, 1.5, 4.0)
    image = write_nifti(tmp_path / "ct.nii.gz", HU[label], spacing, axcodes=axcodes, dtype=np.float32,
                        rotation_deg=rotation)
    values = np.asarray(CT_SPEC["label_values"])[label]
    truth = write_nifti(tmp_path / "truth.nii.gz", values, spacing, axcodes=axcodes, dtype=np.uint8,
                        rotation_deg=rotation)
    return image, nib.load(truth)


@pytest.mark.parametrize("axcodes, rotation, hint", [
    (("R", "A", "S"), 0.0, None),
    (("L", "P", "S"), 20.0, None),
    (("I", "P", "L"), 0.0, None),
    (("P", "I", "R"), 0.0, 0),
    (("A", "R", "I"), 0.0, 2),
])
def test_predict_case_restores_geometry_exactly(tmp_path, axcodes, rotation, hint) -> None:
    image, truth = _write_case(tmp_path, _blocks((16, 16, 16)), axcodes, rotation)
    checkpoint = {"spec": CT_SPEC, "slice_size": 16}
    out = predict_case(ThresholdOracle(), checkpoint, image, tmp_path / "seg.nii.gz", batch_size=5,
                       slice_axis_hint=hint)
    seg = nib.load(out)
    assert seg.shape == truth.shape and np.allclose(seg.affine, nib.load(image).affine)
    assert seg.get_data_dtype() == np.uint8
    assert np.array_equal(np.asanyarray(seg.dataobj), np.asanyarray(truth.dataobj))


def test_predict_case_resizes_back_non_square(tmp_path) -> None:
    image, truth = _write_case(tmp_path, _blocks((40, 56, 6)), ("L", "P", "S"), 10.0)
    out = predict_case(ThresholdOracle(), {"spec": CT_SPEC, "slice_size": 32}, [image], tmp_path / "seg.nii")
    seg = np.asanyarray(nib.load(out).dataobj)
    expected = np.asanyarray(truth.dataobj)
    assert seg.shape == expected.shape == (40, 56, 6)
    assert set(np.unique(seg)) == {0, 2, 5}
    assert (seg == expected).mean() > 0.95  # only block borders may move when resizing 56 -> 32 -> 56


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_from_slices_inverts_to_slices(axis: int) -> None:
    data = np.arange(3 * 4 * 5).reshape(3, 4, 5)
    assert np.array_equal(from_slices(to_slices(data, axis), axis), data)


@pytest.mark.parametrize("dataset, variant", [("acdc", None), ("brats", None), ("kits", "kits19"), ("msd", None)])
def test_model_slices_match_the_training_loader(tmp_path, dataset, variant) -> None:
    """The prediction input equals ``load_volume``'s image: same reorientation, slicing, normalisation, resize."""
    root = write_phantom_dataset(dataset, tmp_path / dataset, 1, 0, variant=variant)
    spec = dataset_spec(dataset, root)
    case = list_cases(dataset, root)[0]
    expected = load_volume(case, spec, 32).image
    slices, _ = model_slices(read_input(case.image_paths, spec.channel_names), dataclasses.asdict(spec), 32,
                             case.slice_axis_hint)
    assert slices.shape == expected.shape
    np.testing.assert_array_equal(slices, expected)  # one function, so equal bit for bit


class InputRecorder(nn.Module):
    """Records every batch it is given; predicts background."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())  # (B, C, H, W)
        return torch.zeros(x.shape[0], self.num_classes, *x.shape[-2:])  # (B, K, H, W)


@pytest.mark.parametrize("dataset, variant", [("acdc", None), ("brats", None), ("kits", "kits19"), ("amos", None)])
def test_a_training_volume_reaches_the_network_as_the_same_tensor(tmp_path, dataset, variant) -> None:
    """Training path (load_volume -> PreparedData.slices) and prediction path (predict_case) hand the network
    the same tensor, bit for bit: both go through shapnas.data.volumes.network_input."""
    from shapnas.data.prepared import PreparedData

    root = write_phantom_dataset(dataset, tmp_path / dataset, 1, 0, variant=variant)
    spec = dataset_spec(dataset, root)
    case = list_cases(dataset, root)[0]
    prepared = PreparedData(spec=spec, data_dir=root, splits={"test": [case.patient_id]},
                            volumes={"test": [load_volume(case, spec, 32)]})
    trained_on, _ = prepared.slices("test")  # (S, C, 32, 32)
    recorder = InputRecorder(len(spec.class_names))
    checkpoint = {"spec": dataclasses.asdict(spec), "slice_size": 32}
    predict_case(recorder, checkpoint, case.image_paths, tmp_path / "out.nii.gz", batch_size=3,
                 slice_axis_hint=case.slice_axis_hint)
    predicted_on = torch.cat(recorder.seen)
    assert predicted_on.dtype == trained_on.dtype and predicted_on.shape == trained_on.shape
    assert torch.equal(predicted_on, trained_on)


def test_read_input_multichannel_files_and_errors(tmp_path) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(6, 7, 5, 2)).astype(np.float32)
    spacing = (1.0, 1.0, 2.0)
    four_d = write_nifti(tmp_path / "both.nii.gz", data, spacing, axcodes=("L", "P", "S"), dtype=np.float32)
    first = write_nifti(tmp_path / "c0.nii.gz", data[..., 0], spacing, axcodes=("L", "P", "S"), dtype=np.float32)
    second = write_nifti(tmp_path / "c1.nii.gz", data[..., 1], spacing, axcodes=("L", "P", "S"), dtype=np.float32)
    a, b = read_input([four_d], ["t1", "t2"]), read_input([first, second], ["t1", "t2"])
    assert a.data.shape == (6, 7, 5, 2) and np.array_equal(a.data, b.data)  # canonical RAS again
    assert a.shape == b.shape == (6, 7, 5) and np.allclose(a.affine, b.affine)
    with pytest.raises(ValueError, match=r"c0.nii.gz: image shape \(6, 7, 5\) and 1 input file; the model expects 2"):
        read_input([first], ["t1", "t2"])
    with pytest.raises(ValueError, match=r"both.nii.gz: image shape \(6, 7, 5, 2\) .* expects 3 channel"):
        read_input([four_d], ["a", "b", "c"])
    with pytest.raises(ValueError, match="c0.nii.gz: 3 input files given; the model expects 2"):
        read_input([first, second, second], ["t1", "t2"])
    other = write_nifti(tmp_path / "other.nii.gz", data[:5, ..., 1], spacing, dtype=np.float32)
    with pytest.raises(ValueError, match="other.nii.gz: shape .* differ from"):
        read_input([first, other], ["t1", "t2"])
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        read_input([tmp_path / "missing.nii.gz"], ["t1"])


def _phantom_acdc(tmp_path):
    root = write_phantom_dataset("acdc", tmp_path / "acdc", 1, 0)
    return dataset_spec("acdc", root), list_cases("acdc", root)[0]


def test_predict_nifti_backbone_and_retrofit_checkpoints(tmp_path) -> None:
    from shapnas.networks.backbones import adapt, build_backbone
    from shapnas.networks.checkpoints import save_model
    from shapnas.networks.genotype import Genotype
    from shapnas.networks.retrofit import build_discrete

    spec, case = _phantom_acdc(tmp_path)
    torch.manual_seed(0)
    net, init_args = build_backbone("basic_unet", 1, 4, "tiny")
    save_model(tmp_path / "pretrain" / "model.pt", kind="backbone", net=net, backbone_name="basic_unet",
               init_args=init_args, spec=spec, slice_size=32, config={})
    genotype = Genotype(((0, 0, "sep_conv_3x3"), (0, 1, "skip_connect"), (1, 0, "max_pool_3x3"),
                         (1, 2, "dil_conv_3x3"), (2, 1, "avg_pool_3x3"), (2, 3, "sep_conv_5x5"),
                         (3, 2, "skip_connect"), (3, 4, "dil_conv_5x5")))
    model = build_discrete(adapt(net), genotype, channels=8, residual="gate")  # config={}: the gate form
    with torch.no_grad():
        model.gates.add_(0.5)  # open the zero-initialised gates so the cells matter (backbone left as saved)
    save_model(tmp_path / "retrain" / "model.pt", kind="retrofit", net=net, backbone_name="basic_unet",
               init_args=init_args, model=model, genotype=genotype, cell_channels=8, spec=spec, slice_size=32,
               config={})
    source = nib.load(case.image_paths[0])
    outputs = {}
    for stage, in_memory in (("pretrain", net), ("retrain", model)):
        out = predict_nifti(tmp_path / stage, case.image_paths[0], tmp_path / f"{stage}.nii.gz", batch_size=3)
        seg = nib.load(out)
        outputs[stage] = np.asanyarray(seg.dataobj)
        assert seg.shape == source.shape and np.allclose(seg.affine, source.affine)
        assert set(np.unique(outputs[stage])) <= set(spec.label_values)
        assert len(np.unique(outputs[stage])) > 1  # a varied map, so the comparisons below mean something
        again = predict_case(in_memory.eval(), {"spec": dataclasses.asdict(spec), "slice_size": 32},
                             case.image_paths[0], tmp_path / f"{stage}-memory.nii.gz")
        assert np.array_equal(np.asanyarray(nib.load(again).dataobj), outputs[stage])  # the checkpoint round-trips
    assert not np.array_equal(outputs["pretrain"], outputs["retrain"])  # the retrofit cells were loaded and act
    # the command line, on the model.pt file itself
    code = main(["predict", "--run", str(tmp_path / "retrain" / "model.pt"), "--input", str(case.image_paths[0]),
                 "--output", str(tmp_path / "cli.nii.gz"), "--device", "cpu"])
    assert code == 0
    assert np.array_equal(np.asanyarray(nib.load(tmp_path / "cli.nii.gz").dataobj),
                          np.asanyarray(nib.load(tmp_path / "retrain.nii.gz").dataobj))


def test_predict_cli_errors_name_the_file(tmp_path, capsys) -> None:
    code = main(["predict", "--run", str(tmp_path / "nowhere"), "--input", "x.nii.gz", "--output", "y.nii.gz",
                 "--device", "cpu"])
    assert code == 2
    assert "nowhere/model.pt: model checkpoint not found" in capsys.readouterr().err.replace("\\", "/")
