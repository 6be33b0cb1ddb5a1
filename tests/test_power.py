"""Evaluation power: class restriction, whole V volumes, step budgets with early stopping,
patient-level V selection, the tuned fine-tuned control and the joint arm."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from shapnas.config.stage_configs import DataConfig, RetrainConfig, config_from_profile
from shapnas.data.layouts import dataset_spec
from shapnas.data.prepared import prepare_data, restrict_classes
from shapnas.training.evaluate import patient_dice, patient_scores
from shapnas.training.train import fit
from tests.test_train import NUM_CLASSES, _net, _squares


def _cfg(dataset, data_dir, results, **kw):
    return DataConfig(dataset=dataset, data_dir=str(data_dir), results_root=str(results), slice_size=32, **kw)


def test_keep_classes_relabels_dropped_classes_to_background(phantom_dir, tmp_path):
    root = phantom_dir("amos")
    full = prepare_data(_cfg("amos", root, tmp_path))
    keep = ("spleen", "liver")
    cut = prepare_data(_cfg("amos", root, tmp_path, keep_classes={"amos": list(keep), "kits": ["kidney"]}))
    assert cut.spec.class_names == ("background", "spleen", "liver")
    assert list(cut.spec.eval_regions) == ["spleen", "liver"]
    spleen, liver = full.spec.class_names.index("spleen"), full.spec.class_names.index("liver")
    for whole, reduced in zip(full.volumes["test"], cut.volumes["test"]):
        np.testing.assert_array_equal(reduced.label == 1, whole.label == spleen)
        np.testing.assert_array_equal(reduced.label == 2, whole.label == liver)
        assert (reduced.label == 0).sum() == np.isin(whole.label, [0] + [i for i in range(len(full.spec.class_names))
                                                                         if i not in (spleen, liver)]).sum()
    with pytest.raises(ValueError, match="kidneys"):
        restrict_classes(full.spec, ("kidneys",))
    with pytest.raises(ValueError, match="one region per class"):
        restrict_classes(dataset_spec("brats", phantom_dir("brats")), ("NCR",))


def test_whole_v_volumes_are_kept_beside_the_capped_ones(phantom_dir, tmp_path):
    root = phantom_dir("kits", "kits23")
    capped = prepare_data(_cfg("kits", root, tmp_path, max_slices_per_volume=3))
    full = prepare_data(_cfg("kits", root, tmp_path))
    assert all(v.label.shape[0] == 3 for v in capped.volumes["val"])
    assert [v.label.shape for v in capped.selection_volumes()] == [v.label.shape for v in full.volumes["val"]]


class Volume:
    def __init__(self, patient, image, label):
        self.case_id, self.patient_id, self.image, self.label, self.spacing = patient, patient, image, label, (1, 1, 1)


class Spec:
    eval_regions = {"A": (1,), "B": (2,)}


def test_patient_dice_scores_whole_volumes_per_patient():
    images, labels = _squares(6, 3)

    class Oracle(nn.Module):  # perfect on patient "good", all background on patient "bad"
        def forward(self, x):
            out = torch.zeros(x.shape[0], NUM_CLASSES, *x.shape[-2:])
            out[:, 0] = 0.5
            hit = x[:, 0].round().long().clamp(0, NUM_CLASSES - 1)
            good = x[:, 0].abs().amax(dim=(-1, -2)) < 100
            out.scatter_(1, hit[:, None], good[:, None, None, None].float().expand(-1, 1, *x.shape[-2:]))
            return out

    clean = labels.float()
    good = Volume("good", clean[:3].numpy(), labels[:3, 0].numpy())
    bad = Volume("bad", (clean[3:] + 1000).numpy(), labels[3:, 0].numpy())
    score = patient_dice(Oracle(), [good, bad], Spec(), torch.device("cpu"), 2)
    assert score == pytest.approx(0.5)  # patient means (1.0 and 0.0), not pooled pixels
    assert patient_scores([{"patient_id": "p", "regions": {"A": {"dice": 0.2}, "B": {"dice": None}}},
                           {"patient_id": "p", "regions": {"A": {"dice": 0.6}, "B": {"dice": float("nan")}}}]) \
        == {"p": pytest.approx(0.4)}


def _fit(net, **kwargs):
    train, val = _squares(12, 1), _squares(4, 2)
    return fit(net, list(net.parameters()), train, val, epochs=50, lr=1e-2, batch_size=4, device=torch.device("cpu"),
               generator=torch.Generator().manual_seed(0), num_classes=NUM_CLASSES, progress=False, **kwargs)


def test_step_budget_ends_mid_epoch():
    result = _fit(_net(), max_steps=7)  # 3 steps an epoch: 3 + 3 + 1
    assert result.steps == 7 and result.stopped == "budget"
    assert [r["step"] for r in result.history] == [3, 6, 7]


def test_early_stopping_waits_patience_steps_after_the_best():
    scores = iter([0.5, 0.6, 0.55, 0.58, 0.59, 0.9])
    result = _fit(_net(), patience_steps=9, scorer=lambda model: next(scores))
    assert result.stopped == "patience"
    assert result.best_step == 6 and result.steps == 15  # best at step 6, then 9 steps without a gain
    assert result.best_val_dice == 0.6 and len(result.history) == 5


def test_selected_weights_are_restored():
    net = _net()
    snapshots = []

    def scorer(model):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return [0.1, 0.7, 0.2][len(snapshots) - 1]

    result = _fit(net, max_steps=9, scorer=scorer)
    assert result.best_epoch == 1 and result.best_step == 6
    assert all(torch.equal(v, snapshots[1][k]) for k, v in net.state_dict().items())


def test_profiles_give_power_and_matching_budgets():
    cfg = config_from_profile(RetrainConfig, "workshop")
    assert cfg.selection == "patient"
    assert cfg.retrain_steps == cfg.finetune_steps > 0 and cfg.patience_steps > 0
    test_patients = round(cfg.phantom_patients * cfg.test_fraction)
    assert test_patients >= 30
    assert len(cfg.finetune_lrs) >= 2


def test_finetune_tunes_its_rate_on_v_and_reports_the_budget(tmp_path):
    from shapnas.pipeline import run_finetune, run_pretrain
    from shapnas.runs.files import load_json, read_jsonl

    cfg = config_from_profile(RetrainConfig, "smoke", results_root=str(tmp_path), device="cpu",
                              finetune_lrs=[1e-5, 3e-3], finetune_steps=6, patience_steps=4)
    pretrain = load_json(run_pretrain(cfg) / "metrics.json")
    stage = run_finetune(cfg)
    metrics = load_json(stage / "metrics.json")
    trials = metrics["lr_trials"]
    assert [t["lr"] for t in trials] == [1e-5, 3e-3]
    best = max(trials, key=lambda t: t["val_dice"])
    assert metrics["lr"] == best["lr"] and metrics["val_dice"] == best["val_dice"]
    assert all(t["steps"] <= 6 for t in trials) and metrics["max_steps"] == 6
    assert metrics["stopped"] in ("budget", "patience")
    assert read_jsonl(stage / "history.jsonl") == read_jsonl(stage / f"history-lr{metrics['lr']:g}.jsonl")


@pytest.mark.slow
def test_joint_arm_trains_the_backbone_at_the_controls_rate(tmp_path):
    from shapnas.pipeline import run_finetune, run_retrain
    from shapnas.runs.files import load_json

    cfg = config_from_profile(RetrainConfig, "smoke", results_root=str(tmp_path), device="cpu", policy="none",
                              finetune_lrs=[1e-5, 3e-3], finetune_steps=4, retrain_steps=4, joint_finetune=True)
    control = load_json(run_finetune(cfg) / "metrics.json")
    joint = load_json(run_retrain(cfg) / "metrics.json")
    assert joint["joint_finetune"] is True and joint["backbone_lr"] == control["lr"]
    assert joint["steps"] <= 4 and joint["num_trainable_parameters"] == joint["num_parameters"]
