"""The search loop: determinism, resume, pruning through the policy hook, physically removed ops."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from shapnas.config.stage_configs import SearchConfig, config_from_profile
from shapnas.pipeline import run_pretrain, run_search, stage_path
from shapnas.runs.files import load_json, read_jsonl


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
    assert [h["cell_weight_change"] for h in h_whole] == [h["cell_weight_change"] for h in h_resumed]
    assert [h["weight_steps"] for h in h_whole] == [h["weight_steps"] for h in h_resumed]


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
    # process CPU time beside wall time, per part: a speed-up read from it survives a busy machine
    assert all(h[f"cpu_{part}_s"] >= 0 for h in history for part in ("train", "eval", "shapley"))
    assert sum(h["cpu_train_s"] for h in history) > 0
    assert metrics["epochs"] < cfg.search_epochs or cfg.search_epochs <= cfg.warmup_epochs + 3
    none_cfg = _cfg(root, policy="none")
    none_history = read_jsonl(run_search(none_cfg, progress=False) / "history.jsonl")
    assert len(none_history) == none_cfg.search_epochs and {h["num_active_ops"] for h in none_history} == {98}


def test_search_records_its_signal(pretrained_root, tmp_path):
    """metrics.json and every history line carry α spread, the chosen ops' probability, the cell-weight
    change and step counts; budgets in steps: ``search_epoch_steps`` weight steps per epoch."""
    root = _fresh(pretrained_root, tmp_path, "signal")
    cfg = _cfg(root, policy="none", search_epoch_steps=3)
    stage = run_search(cfg, progress=False)
    history = read_jsonl(stage / "history.jsonl")
    metrics = load_json(stage / "metrics.json")
    assert [h["weight_steps"] for h in history] == [3 * (e + 1) for e in range(cfg.search_epochs)]
    warm = cfg.warmup_epochs
    assert [h["arch_steps"] for h in history] == [3 * max(0, e + 1 - warm) for e in range(cfg.search_epochs)]
    for key in ("alpha_spread", "alpha_max_prob", "alpha_uniform", "cell_weight_change", "loss_first", "loss_last"):
        assert isinstance(metrics[key], float), key
    assert metrics["alpha_uniform"] == 1 / 8
    assert metrics["loss_first"] == history[0]["train_loss"] and metrics["loss_last"] == history[-1]["train_loss"]
    changes = [h["cell_weight_change"] for h in history]
    assert all(c > 0 for c in changes), changes
    spreads = [h["alpha_spread"] for h in history]
    assert spreads[warm - 1] < spreads[-1], "α moves once architecture steps start"
    probs = torch.tensor(history[-1]["op_probs"])
    assert metrics["alpha_spread"] == pytest.approx(float((probs.max(1).values - probs.min(1).values).mean()), abs=1e-6)
    assert metrics["alpha_max_prob"] >= float(probs[:, 1:].max(1).values.min()) - 1e-6


def test_alpha_signal_by_hand():
    from shapnas.networks.genotype import Genotype
    from shapnas.search.loop import alpha_signal

    probs = np.full((14, 8), 0.125)
    probs[0] = [0.3, 0.4, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05]
    active = np.ones((14, 8), dtype=bool)
    active[1, 3] = False
    probs[1] = [0.2, 0.2, 0.2, 0.0, 0.1, 0.1, 0.1, 0.1]
    edges = ((0, 0, "max_pool_3x3"), (0, 1, "skip_connect")) + tuple((n, s, "sep_conv_3x3") for n in (1, 2, 3)
                                                                       for s in (0, 1))
    signal = alpha_signal(probs, active, Genotype(edges))
    assert signal["alpha_uniform"] == 0.125
    # edge 0: 0.4 - 0.05; edge 1: 0.2 - 0.1 (the pruned op's 0 does not count); others 0
    assert signal["alpha_spread"] == pytest.approx((0.35 + 0.1) / 14)
    # max_pool on edge 0: 0.4; skip_connect on edge 1 (node 0 <- s1): 0.0 -> with the rest at 0.125
    assert signal["alpha_max_prob"] == pytest.approx((0.4 + 0.0 + 6 * 0.125) / 8)


@pytest.mark.parametrize("optimizer, kind", [("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)])
def test_weight_optimizer_choice(optimizer, kind):
    from shapnas.networks.backbones import adapt, build_backbone
    from shapnas.networks.retrofit import build_supernet
    from shapnas.search.loop import build_optimizers

    net, _ = build_backbone("basic_unet", 1, 3, "tiny")
    model = build_supernet(adapt(net), generator=torch.Generator().manual_seed(0)).freeze_backbone()
    weight_opt, arch_opt, _ = build_optimizers(model, SearchConfig(weight_optimizer=optimizer, weight_lr=0.01))
    assert isinstance(weight_opt, kind) and isinstance(arch_opt, torch.optim.Adam)
    assert weight_opt.param_groups[0]["lr"] == 0.01
    with pytest.raises(ValueError, match="weight_optimizer"):
        SearchConfig(weight_optimizer="lamb")
    with pytest.raises(ValueError, match="residual"):
        SearchConfig(residual="scalar")
    with pytest.raises(ValueError, match="search_epoch_steps"):
        SearchConfig(search_epoch_steps=-1)
