"""Tests of shapnas.training.evaluate: slice-wise prediction and patient-level metrics on stacked volumes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.networks.nets import BasicUNet
from torch import nn

from shapnas.data.layouts import DatasetSpec
from shapnas.data.volumes import Volume
from shapnas.training.evaluate import evaluate_model, predict_volume

CPU = torch.device("cpu")


class OneHotOfChannel0(nn.Module):
    """Logits that are the one-hot encoding of the class ids stored in input channel 0."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.one_hot(x[:, 0].round().long(), self.num_classes).permute(0, 3, 1, 2).float()  # (B, K, H, W)


def _brats_spec() -> DatasetSpec:
    return DatasetSpec("brats", ("flair", "t1", "t1ce", "t2"), ("background", "NCR", "ED", "ET"), (0, 1, 2, 4),
                       "mri", {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)})


def _cube_label() -> np.ndarray:
    label = np.zeros((6, 12, 12), dtype=np.int64)  # (S, H, W)
    label[1:5, 3:9, 3:9] = 2  # edema
    label[2:4, 4:8, 4:8] = 1  # necrosis
    label[2:4, 5:7, 5:7] = 3  # enhancing
    return label


def _volume(pred: np.ndarray, label: np.ndarray, case: str, spacing=(0.5, 0.7, 3.0)) -> Volume:
    """A 4-channel volume whose channel 0 holds ``pred`` (read back by :class:`OneHotOfChannel0`)."""
    image = np.repeat(pred[:, None].astype(np.float32), 4, axis=1)  # (S, 4, H, W)
    return Volume(case, f"patient-{case}", image, label, spacing)


def test_predict_volume_shapes_resize_and_mode() -> None:
    label = _cube_label()
    model = OneHotOfChannel0(4).train()
    pred = predict_volume(model, label[:, None].astype(np.float32), CPU, batch_size=4)
    assert pred.dtype == np.int64 and np.array_equal(pred, label)
    assert model.training  # mode restored
    up = predict_volume(model, label[:, None].astype(np.float32), CPU, batch_size=5, output_size=(24, 36))
    assert up.shape == (6, 24, 36)
    assert set(np.unique(up)) <= set(np.unique(label))
    assert np.array_equal(up[:, 12, 9], label[:, 6, 3])  # output (12, 9) samples input (5.75, 2.67): nearest (6, 3)
    with pytest.raises(ValueError, match="expected \\(S, C, H, W\\)"):
        predict_volume(model, label, CPU, 2)


def test_predict_volume_batch_size_invariant_on_a_real_net() -> None:
    torch.manual_seed(0)
    net = BasicUNet(spatial_dims=2, in_channels=2, out_channels=3, features=(4, 4, 8, 8, 16, 4))
    image = np.random.default_rng(0).normal(size=(5, 2, 32, 32)).astype(np.float32)
    a = predict_volume(net, image, CPU, batch_size=1)
    b = predict_volume(net, image, CPU, batch_size=4)
    assert a.shape == (5, 32, 32) and np.array_equal(a, b)
    with torch.no_grad():
        direct = net.eval()(torch.from_numpy(image)).argmax(1).numpy()
    assert np.array_equal(a, direct)


def test_evaluate_model_brats_regions_counts_and_summary() -> None:
    label = _cube_label()
    spec = _brats_spec()
    perfect = _volume(label, label, "a")
    missed = label.copy()
    missed[missed == 3] = 1  # ET predicted as necrosis: WT and TC right, ET missed
    body = evaluate_model(OneHotOfChannel0(4), [perfect, _volume(missed, label, "b")], spec, CPU, batch_size=4)
    assert body["num_cases"] == 2
    first, second = body["per_case"]
    assert first["case_id"] == "a" and first["patient_id"] == "patient-a"
    assert set(first["regions"]) == {"WT", "TC", "ET"}
    for region in first["regions"].values():
        assert region["dice"] == 1.0 and region["hd95"] == 0.0 and region["fp"] == 0 and region["fn"] == 0
    assert first["regions"]["WT"]["n_ref"] == int((label > 0).sum())
    assert first["regions"]["ET"]["tp"] == int((label == 3).sum()) == 8
    et = second["regions"]["ET"]
    assert (et["tp"], et["fp"], et["fn"], et["dice"], math.isinf(et["hd95"])) == (0, 0, 8, 0.0, True)
    assert second["regions"]["TC"]["dice"] == 1.0
    assert body["dice_per_class"]["ET"] == pytest.approx(0.5)
    assert body["dice_mean"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert body["hd95_num_inf"]["ET"] == 1


@pytest.mark.parametrize("axis, expected", [(0, 3.0), (1, 0.7), (2, 0.5)])
def test_evaluate_model_hd95_uses_volume_spacing(axis: int, expected: float) -> None:
    """Volume.spacing is (x = W, y = H, slice): a one-voxel shift along S, H or W costs that axis' spacing."""
    label = np.zeros((8, 10, 10), dtype=np.int64)
    label[2:5, 3:6, 3:6] = 1
    pred = np.roll(label, 1, axis=axis)
    spec = DatasetSpec("acdc", ("cineMRI",), ("background", "LV"), (0, 3), "mri", {"LV": (1,)})
    body = evaluate_model(OneHotOfChannel0(2), [_volume(pred, label, "c")], spec, CPU, batch_size=3)
    assert body["per_case"][0]["regions"]["LV"]["hd95"] == pytest.approx(expected)
    assert body["hd95_mean"] == pytest.approx(expected)


def test_evaluate_model_needs_cases() -> None:
    with pytest.raises(ValueError, match="at least one case"):
        evaluate_model(OneHotOfChannel0(2), [], _brats_spec(), CPU, 2)
