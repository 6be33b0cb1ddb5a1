"""Run identity: stage keys build every folder name, and a finished stage is reused only with its own config."""

from __future__ import annotations

import pytest

from shapnas.cli import main
from shapnas.config.names import POLICY_NAMES
from shapnas.config.stage_configs import RetrainConfig, config_from_profile
from shapnas.runs.files import load_json, save_json
from shapnas.runs.identity import (
    FINETUNE_FIELDS,
    RUNTIME_FIELDS,
    STAGE_KINDS,
    StageKey,
    StaleStageError,
    model_stage_name,
    parse_stage_name,
    reusable,
    stage_fields,
    stage_key,
    stage_name,
)


def _cfg(root, **changes) -> RetrainConfig:
    return config_from_profile(RetrainConfig, "smoke", results_root=str(root), device="cpu", **changes)


def test_stage_names_round_trip_through_keys(tmp_path) -> None:
    names = ["pretrain", "finetune", *(f"{k}-{p}" for k in ("search", "retrain") for p in POLICY_NAMES),
             *(f"eval-{t}" for t in ("backbone", "finetune", *POLICY_NAMES))]
    for name in names:
        kind, variant = parse_stage_name(name)
        assert stage_name(kind, variant or None) == name
        key = StageKey("kits", "unet", 2, kind, variant)
        path = key.path(tmp_path)
        assert path == tmp_path / "kits" / "unet" / "seed-2" / name
        assert StageKey.from_path(path) == key
    for bad in ("search-bogus", "eval-iac-none", "retrain", "pretrain-none", "evaluate-none", "seed-0"):
        with pytest.raises(ValueError):
            parse_stage_name(bad)
    assert stage_key(_cfg(tmp_path, policy="js"), "search").name == "search-js"
    assert stage_key(_cfg(tmp_path, policy="js"), "eval", "finetune").name == "eval-finetune"
    assert [model_stage_name(m) for m in ("backbone", "finetune", "iac-alpha")] == [
        "pretrain", "finetune", "retrain-alpha"]


def test_stage_fields_are_what_the_stage_reads(tmp_path) -> None:
    cfg = _cfg(tmp_path, policy="shapley")
    pretrain = stage_fields(stage_key(cfg, "pretrain"), cfg)
    assert "pretrain_epochs" in pretrain and "profile" in pretrain and "policy" not in pretrain
    assert not set(pretrain) & (set(RUNTIME_FIELDS) | set(FINETUNE_FIELDS))
    assert set(FINETUNE_FIELDS) <= set(stage_fields(stage_key(cfg, "finetune"), cfg))
    search = stage_fields(stage_key(cfg, "search"), cfg)
    assert "shapley_permutations" in search and "retrain_epochs" not in search and "finetune_lr" not in search
    assert stage_fields(stage_key(cfg, "eval", "backbone"), cfg) == pretrain
    assert "retrain_epochs" in stage_fields(stage_key(cfg, "eval", "shapley"), cfg)
    assert "finetune_lr" not in stage_fields(stage_key(cfg, "retrain"), cfg)
    joint = cfg.replace(joint_finetune=True)
    assert "finetune_lr" in stage_fields(stage_key(joint, "retrain"), joint)
    assert set(STAGE_KINDS) == {"pretrain", "finetune", "normtune", "scratch", "search", "retrain", "eval"}


def _finished(stage, cfg, *, config: bool = True) -> None:
    save_json(stage / "metrics.json", {"stage": stage.name})
    if config:
        save_json(stage / "config.json", cfg.to_dict())


def test_reuse_compares_the_stored_config(tmp_path) -> None:
    cfg = _cfg(tmp_path / "a", policy="shapley")
    key = stage_key(cfg, "search")
    stage = key.path(cfg.results_root)
    assert reusable(stage, cfg, key) is False  # nothing there: run it
    _finished(stage, cfg)
    assert reusable(stage, cfg, key) is True
    moved = cfg.replace(results_root=str(tmp_path / "b"), device="cuda")  # runtime fields do not matter
    assert reusable(stage, moved, key) is True
    assert reusable(stage, cfg.replace(retrain_epochs=7), key) is True  # the search does not read it
    stale = r"search-shapley: this stage finished .*shapley_permutations: stored 2, requested 5"
    with pytest.raises(StaleStageError, match=stale):
        reusable(stage, cfg.replace(shapley_permutations=5), key)
    with pytest.raises(StaleStageError, match="profile: stored 'smoke', requested 'custom'"):
        reusable(stage, cfg.replace(profile="custom"), key)
    (stage / "config.json").unlink()
    with pytest.raises(StaleStageError, match="finished without a config.json"):
        reusable(stage, cfg, key)


def test_a_field_added_later_reuses_stages_that_ran_its_default(tmp_path) -> None:
    cfg = _cfg(tmp_path, policy="shapley")
    key = stage_key(cfg, "search")
    stage = key.path(cfg.results_root)
    older = {name: value for name, value in cfg.to_dict().items() if name != "shapley_samples"}  # before the field
    save_json(stage / "metrics.json", {"stage": stage.name})
    save_json(stage / "config.json", older)
    assert reusable(stage, cfg, key) is True  # the stage ran what the default does
    assert cfg.shapley_samples != 7
    with pytest.raises(StaleStageError, match=r"shapley_samples: stored '\(not recorded\)', requested 7"):
        reusable(stage, cfg.replace(shapley_samples=7), key)


def test_an_interrupted_search_resumes_only_with_its_config(tmp_path) -> None:
    from shapnas.search.loop import STATE_FILE

    assert STAGE_KINDS["search"].resume_file == STATE_FILE
    cfg = _cfg(tmp_path, policy="none")
    key = stage_key(cfg, "search")
    stage = key.path(cfg.results_root)
    save_json(stage / "config.json", cfg.to_dict())
    assert reusable(stage, cfg.replace(search_epochs=9), key) is False  # no resume state: starts afresh
    (stage / STATE_FILE).write_bytes(b"")
    assert reusable(stage, cfg, key) is False  # resumes
    with pytest.raises(StaleStageError, match="interrupted .*search_epochs: stored 4, requested 9"):
        reusable(stage, cfg.replace(search_epochs=9), key)


def test_a_changed_setting_never_reuses_the_finished_stage(tmp_path, capsys) -> None:
    """A smoke pre-training, then the same stage with --set pretrain_epochs=3."""
    from shapnas.pipeline import run_pretrain

    argv = ["pretrain", "--dataset", "acdc", "--profile", "smoke", "--results", str(tmp_path), "--device", "cpu"]
    assert main(argv) == 0
    stage = tmp_path / "acdc" / "basic_unet" / "seed-0" / "pretrain"
    stored = load_json(stage / "config.json")
    assert stored["profile"] == "smoke" and stored["pretrain_epochs"] == 2
    assert load_json(stage / "metrics.json")["profile"] == "smoke"
    capsys.readouterr()
    assert main([*argv, "--set", "pretrain_epochs=3"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "pretrain_epochs: stored 2, requested 3" in err
    assert "pretrain" in err and "--results" in err
    cfg = _cfg(tmp_path, dataset="acdc")
    with pytest.raises(StaleStageError, match="pretrain_epochs"):
        run_pretrain(cfg.replace(pretrain_epochs=3))
    with pytest.raises(StaleStageError, match="profile: stored 'smoke', requested 'custom'"):
        run_pretrain(cfg.replace(profile="custom"))
    before = (stage / "metrics.json").stat().st_mtime_ns
    assert run_pretrain(cfg.replace(finetune_epochs=3, policy="js")) == stage  # not read by pre-training: reused
    assert (stage / "metrics.json").stat().st_mtime_ns == before
    assert load_json(stage / "config.json")["pretrain_epochs"] == 2


def test_the_matrix_never_counts_a_stage_of_another_config_as_done(tmp_path) -> None:
    from shapnas.experiments.matrix import build_jobs

    cfg = _cfg(tmp_path.resolve(), dataset="acdc", policy="shapley")
    stage = stage_key(cfg, "retrain").path(cfg.results_root)
    _finished(stage, cfg)
    jobs = build_jobs(["acdc"], [0], ["shapley"], profile="smoke", results=tmp_path)
    assert next(j for j in jobs if j.id.endswith("-retrain-shapley")).done()
    _finished(stage, cfg.replace(retrain_lr=0.5))
    with pytest.raises(StaleStageError, match="retrain-shapley: .*retrain_lr: stored 0.5, requested 0.001"):
        build_jobs(["acdc"], [0], ["shapley"], profile="smoke", results=tmp_path)
