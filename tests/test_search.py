"""The search loop: determinism, resume, pruning through the policy hook, physically removed ops."""

from __future__ import annotations

import json

import pytest
import torch

from shapnas.config import SearchConfig, config_from_profile
from shapnas.pipeline import run_pretrain, run_search, stage_path
from shapnas.runs import load_json, read_jsonl


def _cfg(tmp_path, **changes) -> SearchConfig:
    base = config_from_profile(SearchConfig, "smoke", dataset="acdc", results_root=str(tmp_path), device="cpu")
    return base.replace(**changes)


@pytest.fixture(scope="module")
def pretrained_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    run_pretrain(_cfg(root))
    return root


def _fresh(root, tmp_path, name):
    """A copy of the shared results root (phantoms, splits, cache, pretrain) for one test."""
    import shutil

    target = tmp_path / name
    shutil.copytree(root, target)
    return target


def test_same_seed_same_genotype_and_history(pretrained_root, tmp_path):
    a = _fresh(pretrained_root, tmp_path, "a")
    b = _fresh(pretrained_root, tmp_path, "b")
    cfg_a, cfg_b = _cfg(a, policy="alpha"), _cfg(b, policy="alpha")
    ga = load_json(run_search(cfg_a, progress=False) / "metrics.json")
    gb = load_json(run_search(cfg_b, progress=False) / "metrics.json")
    assert ga["genotype"] == gb["genotype"]
    ha = read_jsonl(stage_path(cfg_a, "search-alpha") / "history.jsonl")
    hb = read_jsonl(stage_path(cfg_b, "search-alpha") / "history.jsonl")
    assert [h["op_probs"] for h in ha] == [h["op_probs"] for h in hb]
    assert [h["val_dice"] for h in ha] == [h["val_dice"] for h in hb]


@pytest.mark.parametrize("policy", ["none", "shapley"])
def test_resume_equals_uninterrupted(pretrained_root, tmp_path, policy):
    whole = _fresh(pretrained_root, tmp_path, "whole")
    killed = _fresh(pretrained_root, tmp_path, "killed")
    cfg_whole, cfg_killed = _cfg(whole, policy=policy), _cfg(killed, policy=policy)
    done = load_json(run_search(cfg_whole, progress=False) / "metrics.json")
    stage = run_search(cfg_killed, progress=False, stop_after=2)  # "killed" after two epochs
    assert not (stage / "metrics.json").exists() and len(read_jsonl(stage / "history.jsonl")) == 2
    resumed = load_json(run_search(cfg_killed, progress=False) / "metrics.json")
    assert resumed["genotype"] == done["genotype"]
    assert resumed["epochs"] == done["epochs"]
    h_whole = read_jsonl(stage_path(cfg_whole, f"search-{policy}") / "history.jsonl")
    h_resumed = read_jsonl(stage / "history.jsonl")
    assert [h["op_probs"] for h in h_whole] == [h["op_probs"] for h in h_resumed]


def test_pruning_policies_shrink_the_supernet(pretrained_root, tmp_path):
    root = _fresh(pretrained_root, tmp_path, "prune")
    cfg = _cfg(root, policy="shapley")
    stage = run_search(cfg, progress=False)
    history = read_jsonl(stage / "history.jsonl")
    metrics = load_json(stage / "metrics.json")
    ops = [h["num_active_ops"] for h in history]
    assert ops[0] == 14 * 7 and ops == sorted(ops, reverse=True) and ops[-1] == 14, ops
    assert all(sum(row[1:]) >= 1 for row in history[-1]["active"]), "never the last op of an edge"
    rounds = [h["shapley"] for h in history if h["shapley"]]
    assert rounds and rounds[0]["num_evals"] > 0 and len(rounds[0]["mean"]) == 98
    assert metrics["epochs"] < cfg.search_epochs or cfg.search_epochs <= cfg.warmup_epochs + 3
    none_cfg = _cfg(root, policy="none")
    none_history = read_jsonl(run_search(none_cfg, progress=False) / "history.jsonl")
    assert len(none_history) == none_cfg.search_epochs and {h["num_active_ops"] for h in none_history} == {98}
