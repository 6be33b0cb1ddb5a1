"""Tables, figures and computed sentences of the ablations and of the stability across seeds
(shapnas.plots.experiment_stats, experiment_text, experiments), on small hand-made records with hand-computed
numbers."""

from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np
import pytest
from matplotlib.figure import Figure

from shapnas.experiments.ablations import PLAN_FILE, ablation_plan
from shapnas.experiments.stability.report import stability_report
from shapnas.plots.experiment_stats import ablation_stats, ablation_table, stability_table
from shapnas.plots.experiment_text import ablation_plan_text, ablation_text, stability_text
from shapnas.plots.experiments import (
    OP_COLOURS,
    plot_ablations,
    plot_genotypes_across_seeds,
    plot_shapley_rank_agreement,
)
from shapnas.runs.files import save_json


def _record(axis, setting, seed, dice, wall=10.0, hd95=5.0, epochs=4):
    return {"dataset": "acdc", "backbone": "basic_unet", "method": "iac-shapley", "axis": axis, "setting": setting,
            "seed": seed, "dice_mean": dice, "hd95_mean": hd95, "search_wall_s": wall, "epochs": epochs}


def _ablation_records(best=0.80, spread=0.01):
    """Policy axis in a shuffled order (3 seeds of ``shapley``); the M axis: default 0.70 ± spread vs ``best``."""
    records = [_record("policy", "random", 0, 0.60, wall=5.0)]
    records += [_record("policy", "shapley", s, d, wall=w) for s, d, w in zip(range(3), (0.70, 0.72, 0.74),
                                                                              (10.0, 20.0, 30.0))]
    records += [_record("policy", "none", 0, 0.65, wall=40.0)]
    records += [_record("permutations M", "M = 1", s, best + d) for s, d in ((0, -spread), (1, spread))]
    records += [_record("permutations M", "default", s, 0.70 + d) for s, d in ((0, -spread), (1, spread))]
    records += [_record("my axis", "x", 0, 0.5)]
    return records


def test_ablation_table_orders_and_formats_mean_std():
    table = ablation_table(_ablation_records())
    assert list(table.index) == [("policy", "none"), ("policy", "shapley"), ("policy", "random"),
                                 ("permutations M", "default"), ("permutations M", "M = 1"), ("my axis", "x")]
    shapley = table.loc[("policy", "shapley")]
    assert shapley["seeds"] == 3
    assert shapley["Dice (%)"] == "72.0 ± 2.0"  # 70, 72, 74: sample std 2
    assert shapley["search (s)"] == "20.0 ± 10.0"
    assert shapley["HD95"] == "5.00" and shapley["epochs"] == "4"
    assert table.loc[("policy", "none"), "Dice (%)"] == "65.0"  # one seed: no ±
    stats = ablation_stats(_ablation_records())
    assert stats["dice_std"].isna().sum() == 3  # none, random, my axis have one seed


def test_ablation_table_of_no_records_is_empty():
    assert ablation_table([]).empty
    with pytest.raises(ValueError, match="no ablation records"):
        plot_ablations([])


def test_ablation_text_verdict_follows_the_spread():
    clear = ablation_text(_ablation_records(best=0.80, spread=0.01))  # M = 1: 80 ± 1.41 vs 70 ± 1.41
    assert "best `M = 1` (80.0 %" in clear and "larger than the seed std (1.41 points)" in clear
    assert "leads by more than the seed noise on 1 of" in clear and "permutations M" in clear.splitlines()[-1]
    noisy = ablation_text(_ablation_records(best=0.72, spread=0.05))  # 72 ± 7.07 vs 70 ± 7.07
    assert "within the seed std (7.07 points)" in noisy
    assert "No best setting leads by more than the seed std" in noisy
    flipped = ablation_text(_ablation_records(best=0.60, spread=0.01))
    assert "best `default` (70.0 %" in flipped
    assert "best `shapley` (72.0 % test Dice against 65.0 % for `none`)" in clear
    assert "with one seed per setting" in clear  # shapley (3 seeds) vs none (1 seed): no spread for none


def test_ablation_text_without_comparable_settings():
    assert "nothing to compare" in ablation_text([_record("policy", "none", 0, 0.5)])


def test_plot_ablations_one_panel_per_axis_error_bars_only_with_seeds():
    fig = plot_ablations(_ablation_records())
    assert isinstance(fig, Figure)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["policy", "permutations M", "my axis"]
    with_bars = {c.get_label(): c.has_yerr for c in visible[0].containers}
    assert with_bars == {"none (n=1)": False, "shapley (n=3)": True, "random (n=1)": False}
    low, high = visible[2].get_ylim()
    assert high - low >= 2.0  # one point: at least two Dice points of range


G1 = [[0, 0, "sep_conv_3x3"], [0, 1, "skip_connect"]]
G2 = [[0, 0, "sep_conv_3x3"], [0, 1, "max_pool_3x3"]]
VALUES = {"0:sep_conv_3x3": 0.3, "0:skip_connect": 0.2, "1:max_pool_3x3": 0.1}


def _stability_records(steady="shapley", seeds=3):
    """``steady`` keeps G1 in every seed; the other policy picks G1, G1, G2 (Jaccard 5/9, agreement 5/6)."""
    other = "none" if steady == "shapley" else "shapley"
    records = []
    for seed in range(seeds):
        for policy, genotype in ((steady, G1), (other, G2 if seed == 2 else G1)):
            records.append({"dataset": "acdc", "backbone": "basic_unet", "policy": policy, "seed": seed,
                            "genotype": genotype, "op_probs": None, "dice_mean": 0.70 + 0.02 * seed,
                            "shapley_values": dict(VALUES) if policy == "shapley" else None})
    return records


def test_stability_table_hand_computed():
    table = stability_table(stability_report(_stability_records()))
    assert list(table.index) == ["none", "shapley"]
    assert table.loc["none", "Jaccard"] == "0.56"  # (1 + 1/3 + 1/3) / 3
    assert table.loc["none", "op agreement"] == "0.83"  # edges: 1 and 2/3
    assert table.loc["shapley", "Jaccard"] == "1.00" and table.loc["shapley", "Kendall τ"] == "1.00"
    assert table.loc["none", "Kendall τ"] == "–" and table.loc["none", "JS divergence"] == "–"
    assert table.loc["shapley", "Dice (%)"] == "72.0 ± 2.0"
    chance = float(table.loc["none", "Jaccard, chance p95"])  # random genotypes of the same shape
    assert 0 < chance < 1 and table.loc["shapley", "Jaccard, chance p95"] != "–"


def test_stability_table_needs_one_dataset():
    records = _stability_records() + [{**r, "dataset": "kits"} for r in _stability_records()]
    with pytest.raises(ValueError, match="expected one dataset"):
        stability_table(stability_report(records))
    assert list(stability_table(stability_report(records), dataset="kits").index) == ["none", "shapley"]


def test_stability_text_verdict_flips_with_the_data():
    more = stability_text(stability_report(_stability_records("shapley")))
    assert "**Yes:**" in more and "genotype Jaccard 1.00 against 0.56" in more and "(3 seeds per search.)" in more
    assert "Test Dice varies by 2.0 points" in more
    assert "Chance level" in more and "the Shapley-pruned search is above" in more  # identical genotypes
    less = stability_text(stability_report(_stability_records("none")))
    assert "**No:**" in less and "less stable" in less
    weak = stability_text(stability_report(_stability_records("shapley", seeds=2)))  # both G1: a tie
    assert "**No difference:**" in weak and "weak evidence" in weak
    alone = stability_text(stability_report([r for r in _stability_records() if r["policy"] == "shapley"]))
    assert "needs both" in alone


def test_plot_genotypes_across_seeds_colours_the_kept_ops():
    fig = plot_genotypes_across_seeds(_stability_records(), policies=["shapley", "none", "js"])
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert [ax.get_title() for ax in panels] == ["shapley", "none"]
    image = np.asarray(panels[1].get_images()[0].get_array())  # none: (edges, seeds, RGBA)
    assert image.shape == (2, 3, 4)  # node 0 only: 2 edges
    assert np.allclose(image[1, 0], mcolors.to_rgba(OP_COLOURS["skip_connect"]))
    assert np.allclose(image[1, 2], mcolors.to_rgba(OP_COLOURS["max_pool_3x3"]))
    sparse = [{**r, "genotype": r["genotype"][:1], "op_probs": np.zeros((14, 8)).tolist()}
              for r in _stability_records()]
    image = np.asarray(plot_genotypes_across_seeds(sparse, policies=["none"]).axes[0].get_images()[0].get_array())
    assert image.shape == (14, 3, 4) and np.allclose(image[1, 0], 1.0)  # edge (0, 1) not kept: white
    with pytest.raises(ValueError, match="no stability records"):
        plot_genotypes_across_seeds(_stability_records(), policies=["random"])


def test_plot_shapley_rank_agreement_panels_per_seed_pair():
    records = _stability_records()
    records[0]["shapley_values"] = {"0:sep_conv_3x3": 0.1, "0:skip_connect": 0.2, "1:max_pool_3x3": 0.3}  # reversed
    fig = plot_shapley_rank_agreement(records)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["seed 0 vs seed 1: τ = -1.00", "seed 0 vs seed 2: τ = -1.00", "seed 1 vs seed 2: τ = 1.00"]
    assert "mean Kendall τ over all seed pairs -0.33" in fig.get_suptitle()
    with pytest.raises(ValueError, match="at least 2"):
        plot_shapley_rank_agreement([r for r in records if r["seed"] == 0])


def test_ablation_plan_text_names_the_command_or_the_plan(tmp_path):
    assert "**Not run yet:**" in ablation_plan_text(tmp_path, "acdc")
    assert "`python -m shapnas ablations --profile workshop --datasets acdc`" in ablation_plan_text(tmp_path, "acdc")
    assert "--profile paper --datasets brats" in ablation_plan_text(tmp_path, "brats")
    assert "No profile's plan covers msd" in ablation_plan_text(tmp_path, "msd")
    save_json(tmp_path / "ablations" / PLAN_FILE, {"profile": "smoke", **ablation_plan("smoke").to_dict()})
    assert "covers acdc, not kits" in ablation_plan_text(tmp_path, "kits")
    assert "**No results yet:** the `smoke` ablation plan covers acdc" in ablation_plan_text(tmp_path, "acdc")


def test_variants_the_backbone_refuses_are_left_out_of_the_plan():
    from shapnas.experiments.ablations import ablation_plan, variant_applies

    plan = ablation_plan("paper")
    decoder_input = next(v for v in plan.variants if v.overrides.get("decoder_input"))
    assert variant_applies("paper", decoder_input, {})
    assert not variant_applies("paper", decoder_input, {"backbone": "basic_unet_plus_plus"})
    assert all(variant_applies("paper", v, {"backbone": "basic_unet_plus_plus"})
               for v in plan.variants if v is not decoder_input)


def test_ablation_plan_text_of_a_plan_without_variants_names_the_paper_plan(tmp_path, monkeypatch):
    save_json(tmp_path / "ablations" / PLAN_FILE, ablation_plan("workshop").to_dict())
    monkeypatch.setattr("shapnas.experiments.ablations.ablation_records", lambda results, dataset, profile=None: [{}])
    text = ablation_plan_text(tmp_path, "acdc")
    assert "policies none, shapley with seeds 0, 1, 2; no one-setting variants" in text
    assert "`python -m shapnas ablations --profile paper`" in text and "variants: ," not in text
