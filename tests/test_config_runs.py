"""Configs (validation, profiles, round-trip) and run-directory helpers (atomic JSON, checkpoints)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from shapnas.config.stage_configs import PROFILE_NAMES, RetrainConfig, SearchConfig, config_from_profile, load_profile
from shapnas.runs.files import append_jsonl, load_checkpoint, load_json, read_jsonl, save_checkpoint, save_json


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_profiles_build_valid_configs(profile):
    values = load_profile(profile)
    assert set(values) <= set(RetrainConfig.field_names()), "profile keys must be config fields"
    cfg = config_from_profile(RetrainConfig, profile, dataset="kits", seed=3)
    assert cfg.dataset == "kits" and cfg.seed == 3
    assert cfg.finetune_epochs == cfg.retrain_epochs, "the fair baseline gets the retrofit's re-training budget"


def test_config_round_trip_and_errors():
    cfg = SearchConfig(dataset="brats", policy="shapley", shapley_permutations=6)
    assert SearchConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="policy='bogus'"):
        SearchConfig(policy="bogus")
    with pytest.raises(ValueError, match="unknown SearchConfig fields: nope"):
        SearchConfig.from_dict({"nope": 1})
    with pytest.raises(ValueError, match="slice_size=40"):
        SearchConfig(slice_size=40)
    with pytest.raises(ValueError, match="warmup_epochs=5"):
        SearchConfig(search_epochs=5, warmup_epochs=5)


def test_save_json_is_atomic_and_nan_safe(tmp_path):
    path = save_json(tmp_path / "a" / "metrics.json", {"x": math.nan, "y": [1.0, math.inf], "z": torch.tensor(2.5)})
    assert load_json(path) == {"x": None, "y": [1.0, None], "z": 2.5}
    with pytest.raises(TypeError):
        save_json(path, {"bad": object()})
    assert load_json(path)["z"] == 2.5, "a failed write leaves the old file intact"
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"], "no temporary file left behind"


def test_jsonl_and_checkpoint_round_trip(tmp_path):
    append_jsonl(tmp_path / "h.jsonl", {"epoch": 0, "loss": 1.5})
    append_jsonl(tmp_path / "h.jsonl", {"epoch": 1, "loss": math.nan})
    assert read_jsonl(tmp_path / "h.jsonl") == [{"epoch": 0, "loss": 1.5}, {"epoch": 1, "loss": None}]
    save_checkpoint(tmp_path / "c.pt", {"w": torch.ones(2), "meta": {"epoch": 3, "names": ["a"]}})
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded["meta"]["epoch"] == 3 and torch.equal(loaded["w"], torch.ones(2))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")
