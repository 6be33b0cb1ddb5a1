"""The book: toc pruning, the HTML check, the method figures, the plot and table functions on hand-made
records (CONTRACTS.md schemas), and a strict build of a smoke-profile execution (one dataset)."""

from __future__ import annotations

import itertools
import json
import re
import shutil
from itertools import combinations
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml
from matplotlib.figure import Figure
from test_notebooks import ROOT, smoke_book  # noqa: F401  (session fixture shared with test_browser)

import shapnas
from shapnas.book.build import (
    BookError,
    build_book,
    check_html,
    executed_toc,
    notebook_errors,
    toc_files,
    write_method_figures,
)
from shapnas.book.pages import page_title, parameter_rows, parameters_text, provenance_text, source_commit, tag_for_book
from shapnas.networks.ops import PRIMITIVES
from shapnas.plots.claims import claim_reading, claims_table, claims_text, interval_verdict, speed_text
from shapnas.plots.data import plot_class_frequencies
from shapnas.plots.results import (
    NO_SEEDS_TEXT,
    comparison_table,
    data_sources,
    metrics_table,
    paired_intervals,
    patient_scores,
    plot_patient_boxplots,
    plot_seed_spread,
    speedup_table,
    speedups,
)
from shapnas.plots.search import (
    ALPHA_SCALE_FLOOR,
    alpha_deviation,
    edge_labels,
    nice_bound,
    pick_epochs,
    plot_arch_heatmaps,
    plot_cell_graph,
    plot_edge_weights,
    plot_epoch_times,
    search_signal_text,
)
from shapnas.plots.shapley import (
    estimator_text,
    plot_cost_per_epoch,
    plot_pruning_timeline,
    plot_shapley_rounds,
    pruned_epochs,
    pruning_table,
    pruning_table_view,
    shapley_rounds,
)
from shapnas.plots.style import setup_notebook
from shapnas.plots.training import parameter_table, plot_parameter_counts, plot_training_curves
from shapnas.runs.records import cost_split

E, P = 14, len(PRIMITIVES)


# ------------------------------------------------------------------ hand-made records

def _search_history(prune: bool) -> list[dict]:
    """Four epochs of a search history: warm-up, then (if ``prune``) sep_conv_5x5 and dil_conv_5x5 pruned on every
    edge after epoch 1 and max_pool_3x3 after epoch 2, with a Shapley round before each pruning."""
    rng = np.random.default_rng(0)
    active = np.ones((E, P), dtype=bool)
    history, wall = [], 0.0
    schedule = {1: ["sep_conv_5x5", "dil_conv_5x5"], 2: ["max_pool_3x3"]} if prune else {}
    for epoch in range(4):
        probs = rng.random((E, P)) * active
        probs /= probs.sum(1, keepdims=True)
        players = [[e, PRIMITIVES[p]] for e in range(E) for p in range(1, P) if active[e, p]]
        pruned = [[e, op] for op in schedule.get(epoch, []) for e in range(E)]
        shapley = None
        if epoch in schedule:
            mean = [(-1.0 if op in schedule[epoch] else 0.5) + 0.01 * i for i, (_, op) in enumerate(players)]
            shapley = {"round": len([k for k in schedule if k <= epoch]), "players": players, "mean": mean,
                       "stderr": [0.05] * len(players), "score": mean, "num_evals": 40, "evals_saved_by_truncation": 4,
                       "eval_ms": 3.0}
        times = {"time_train_s": 10.0 - 2 * epoch if prune else 10.0, "time_shapley_s": 1.0 if shapley else 0.0,
                 "time_eval_s": 0.5}
        wall += sum(times.values())
        history.append({"epoch": epoch, "phase": "warmup" if epoch == 0 else "search", "train_loss": 1.0 / (epoch + 1),
                        "arch_loss": None if epoch == 0 else 0.9, "val_dice": 0.5 + 0.1 * epoch,
                        "op_probs": probs.tolist(), "edge_probs": rng.random(E).tolist(), "active": active.tolist(),
                        "num_active_ops": int(active[:, 1:].sum()), "genotype": [[0, 0, "sep_conv_3x3"]],
                        **times, "wall_s": wall, "pruned": pruned, "shapley": shapley})
        for e, op in pruned:
            active[e, PRIMITIVES.index(op)] = False
    return history


def _eval(dice: list[float], hd95: list[float]) -> dict:
    cases = [{"case_id": f"p{i}", "patient_id": f"p{i}",
              "regions": {"RV": {"dice": d, "hd95": h, "tp": 1, "fp": 0, "fn": 0, "n_pred": 1, "n_ref": 1},
                          "LV": {"dice": None, "hd95": None, "tp": 0, "fp": 0, "fn": 0, "n_pred": 0, "n_ref": 0}}}
             for i, (d, h) in enumerate(zip(dice, hd95))]
    return {"schema": 1, "stage": "eval-x", "target": "x", "dice_mean": float(np.mean(dice)),
            "dice_per_class": {"RV": float(np.mean(dice)), "LV": None}, "hd95_mean": float(np.mean(hd95)),
            "hd95_per_class": {"RV": float(np.mean(hd95)), "LV": None}, "num_cases": len(dice), "per_case": cases}


def _ci(gain: float, half: float | None) -> dict | None:
    """A paired-bootstrap interval as ``shapnas summary`` writes it (Dice fractions), or none."""
    return None if half is None else {"mean": gain, "ci_low": gain - half, "ci_high": gain + half}


def _records(tmp_path: Path, seeds=(0,), gain=0.07, speed=(400.0, 100.0), data_dir="", half=0.02) -> list[dict]:
    records = []
    for seed in seeds:
        run = tmp_path / "acdc" / "basic_unet" / f"seed-{seed}"
        (run / "pretrain").mkdir(parents=True, exist_ok=True)
        (run / "pretrain" / "config.json").write_text(json.dumps({"data_dir": data_dir}))
        base = {"dataset": "acdc", "backbone": "basic_unet", "seed": seed, "run_dir": str(run), "dice_per_class": {},
                "epochs": None, "genotype": None, "search_wall_s": None}
        genotype = [[n, s, "sep_conv_3x3"] for n in range(4) for s in (0, 1)]
        iac = {"test_patients": 8, "dice_vs_backbone": _ci(gain, half), "dice_vs_finetune": _ci(0.9 * gain, half)}
        records += [
            {**base, "method": "backbone", "dice_mean": 0.70, "hd95_mean": 5.0},
            {**base, "method": "finetune", "dice_mean": 0.71, "hd95_mean": 4.8},
            {**base, "method": "iac-none", "dice_mean": 0.70 + gain, "hd95_mean": 4.0, "search_wall_s": speed[0],
             "epochs": 12, "genotype": genotype, **iac},
            {**base, "method": "iac-shapley", "dice_mean": 0.70 + gain, "hd95_mean": 4.1, "search_wall_s": speed[1],
             "epochs": 6, "genotype": genotype, **iac},
        ]
    return records


def test_the_fine_tuned_comparison_over_seeds_carries_the_seed_variance():
    """Per dataset, the cell against the fine-tuned backbone is read from a two-level bootstrap over seeds and
    patients: three seeds that each improve by 2 points agree; seeds that disagree with each other cannot tell."""
    def pooled_records(shifts: list[float]) -> list[dict]:
        records = []
        for seed, shift in enumerate(shifts):
            base = {"dataset": "kits", "backbone": "basic_unet", "seed": seed, "setting": "same_site", "run_dir": "",
                    "target_train_patients": None, "profile": "workshop", "test_patients": 30, "source_drop": None}
            finetune = {f"p{i}": 0.5 + 0.01 * (i % 5) for i in range(30)}
            cell = {p: d + shift + 0.002 * (i % 3) for i, (p, d) in enumerate(finetune.items())}
            backbone = {p: d - 0.01 for p, d in finetune.items()}
            records += [{**base, "method": "finetune", "patient_dice": finetune, "dice_patient_mean": 0.52},
                        {**base, "method": "backbone", "patient_dice": backbone, "dice_patient_mean": 0.51},
                        {**base, "method": "iac-shapley", "patient_dice": cell, "dice_patient_mean": 0.52 + shift}]
        return records

    row = "IAC against the fine-tuned backbone, over training seeds (Dice)"
    steady = claims_table(pooled_records([0.02, 0.021, 0.019]))
    assert steady.loc[row, "agreement"] == "Agrees" and "kits, 3 seeds: +2.2" in steady.loc[row, "measured"]
    spread = claims_table(pooled_records([0.03, -0.03, 0.01]))
    assert spread.loc[row, "agreement"] == "Cannot tell"
    one = claims_table(pooled_records([0.02]))
    assert one.loc[row, "agreement"] == "Not measured"  # one seed: no interval over seeds
    # the claimed gain over the backbone, read over the seeds: +3.2 [+3.1, +3.3] rules out the claimed +5
    gain = "IAC improves the pre-trained U-Net, over training seeds (Dice)"
    assert steady.loc[gain, "agreement"] == "Disagrees" and "kits, 3 seeds: +3.2" in steady.loc[gain, "measured"]
    assert one.loc[gain, "agreement"] == "Not measured"


# ------------------------------------------------------------------ plots: training, search, Shapley

def test_training_curves_and_parameter_counts():
    history = [{"epoch": e, "train_loss": 1 - 0.2 * e, "val_dice": d, "time_s": 1.0}
               for e, d in enumerate([0.2, 0.6, 0.5])]
    fig = plot_training_curves({"backbone": history, "empty": []})
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    best = [line for line in fig.axes[1].lines if line.get_marker() == "*"][0]
    assert best.get_xdata()[0] == 1 and best.get_ydata()[0] == pytest.approx(0.6)
    counts = {"max_abs_diff": 0.0, "backbone_parameters": 9000, "cell_parameters": 1000,
              "architecture_parameters": 126}
    table = parameter_table(counts)
    assert list(table.index) == ["backbone", "cell", "architecture"]
    assert table.loc["backbone", "parameters"] == "9,000" and table.loc["cell", "share"] == "9.9%"
    assert len(plot_parameter_counts(counts).axes[0].patches) == 3
    with pytest.raises(ValueError, match="parameters"):
        parameter_table({"max_abs_diff": 0.0})


def test_edge_labels_follow_the_darts_layout():
    labels = edge_labels(14)
    assert labels[:2] == ["n0←s0", "n0←s1"] and labels[2] == "n1←s0" and labels[13] == "n3←n2"
    with pytest.raises(ValueError, match="13 edges"):
        edge_labels(13)
    assert pick_epochs(list(range(10)), 4) == [0, 3, 6, 9] and pick_epochs([1, 2], 4) == [0, 1]


def test_search_figures():
    history = _search_history(prune=True)
    heat = plot_arch_heatmaps(history, count=3)
    panels = [ax for ax in heat.axes if ax.get_title().startswith("epoch")]
    assert [ax.get_title().split()[1] for ax in panels] == ["0", "2", "3"]
    assert len(panels[-1].collections[0].get_offsets()) == 3 * E  # three pruned ops per edge are crossed out
    assert plot_edge_weights(history).axes[0].get_images()[0].get_array().shape == (E, 4)
    bars = plot_epoch_times(history).axes[0]
    assert len(bars.patches) == 3 * 4
    with pytest.raises(ValueError, match="empty"):
        plot_epoch_times([])


def test_cell_graphs():
    genotype = [[n, s, op] for n in range(4) for s, op in ((0, "sep_conv_3x3"), (n + 1, "skip_connect"))]
    graph = plot_cell_graph(genotype)
    labels = [t.get_text() for t in graph.axes[0].texts]
    assert labels.count("sep3") == 4 and labels.count("skip") == 4 and "n3" in labels
    full = plot_cell_graph(None)
    assert "14 edges" in full.axes[0].get_title()


_INPUTS = [list(combinations(range(n + 2), 2)) for n in range(4)]  # node n reads two of s0, s1, n0 … n(n-1)
_CHOICES = list(itertools.product(*(range(len(i)) for i in _INPUTS)))  # all 180 wirings of a cell


@pytest.mark.parametrize("choice", _CHOICES[::15])
def test_cell_graph_edge_labels_cover_neither_each_other_nor_the_nodes(choice):
    """Half of all wirings had a label box on another label or on a node circle with labels at a fixed 70 %."""
    genotype = [[n, _INPUTS[n][choice[n]][i], "sep_conv_5x5"] for n in range(4) for i in (0, 1)]
    graph = plot_cell_graph(genotype)
    graph.canvas.draw()
    renderer = graph.canvas.get_renderer()
    texts = graph.axes[0].texts
    boxes = {t: t.get_bbox_patch().get_window_extent(renderer) for t in texts if t.get_bbox_patch() is not None}
    labels = [b for t, b in boxes.items() if t.get_text() == "sep5"]
    nodes = [b for t, b in boxes.items() if t.get_text() != "sep5"]
    assert len(labels) == 8
    clashes = sum(a.overlaps(b) for i, a in enumerate(labels) for b in labels[i + 1:] + nodes)
    assert clashes == 0


def test_shapley_rounds_and_pruning_records():
    history = _search_history(prune=True)
    rounds = shapley_rounds(history)
    assert [(r["round"], r["epoch"]) for r in rounds] == [(1, 1), (2, 2)]
    table = pruning_table(history)
    assert len(table) == 3 * E and set(table["op"]) == {"sep_conv_5x5", "dil_conv_5x5", "max_pool_3x3"}
    assert table["Shapley value"].lt(0).all() and table["s.e."].eq(0.05).all()
    epochs = pruned_epochs(history)
    assert epochs[5, PRIMITIVES.index("sep_conv_5x5")] == 1 and epochs[5, PRIMITIVES.index("max_pool_3x3")] == 2
    assert np.isnan(epochs[:, PRIMITIVES.index("sep_conv_3x3")]).all()
    fig = plot_shapley_rounds(history)
    assert len(fig.axes) == 2 and "28 pruned" in fig.axes[0].get_title()
    timeline = plot_pruning_timeline(history)
    assert len(timeline.axes[0].collections[0].get_offsets()) == 4 * E  # survivors without none
    cost = plot_cost_per_epoch({"full search": _search_history(False), "Shapley-pruned": history})
    assert [line.get_label() for line in cost.axes[1].lines] == ["full search", "Shapley-pruned"]
    assert list(cost.axes[1].lines[1].get_ydata()) == [7 * E, 7 * E, 5 * E, 4 * E]
    with pytest.raises(ValueError, match="policy 'shapley'"):
        plot_shapley_rounds(_search_history(False))


def test_shapley_figures_state_their_scale_and_show_s_e_only_where_it_exists():
    from shapnas.plots.shapley import has_stderr, pruning_table_view, value_scale

    history = _search_history(prune=True)
    fig = plot_shapley_rounds(history)  # Monte Carlo rounds: s.e. of 0.05 recorded
    assert fig.axes[0].get_ylabel() == "Shapley value (Dice points) ± s.e."
    assert len(fig.axes[0].collections) == 2  # error bars and dots
    assert "s.e. (points)" in pruning_table_view(history).data
    for record in history:  # a deterministic estimator (ig, owen): zeros are not an uncertainty
        if record["shapley"]:
            record["shapley"]["stderr"] = [0.0] * len(record["shapley"]["mean"])
            record["shapley"]["mean"] = [v * 1e-5 for v in record["shapley"]["mean"]]
    fig = plot_shapley_rounds(history)
    assert fig.axes[0].get_ylabel() == "Shapley value (Dice points × 10⁻³), no s.e. recorded"
    assert len(fig.axes[0].collections) == 1  # dots only
    assert "s.e. (points)" not in pruning_table_view(history).data
    assert value_scale([0.5, -2.0]) == (1.0, "Dice points") and value_scale([0.0042])[0] == 1000.0
    assert not has_stderr([None, 0.0]) and has_stderr([0.0, 0.01])


def test_pruning_timeline_has_one_discrete_colour_per_epoch():
    timeline = plot_pruning_timeline(_search_history(prune=True))
    bar = timeline.axes[1]
    assert [t.get_text() for t in bar.get_yticklabels()] == ["1", "2"]  # the two pruning epochs, nothing between
    assert timeline.axes[0].images[0].get_cmap().N == 2


def test_loss_panel_starts_at_zero_and_seed_spread_has_an_axis_per_dataset(tmp_path):
    history = [{"epoch": e, "train_loss": v, "val_dice": 0.5} for e, v in enumerate((0.22, 0.19, 0.17))]
    loss = plot_training_curves({"run": history}).axes[0]
    assert loss.get_ylim()[0] == 0 and loss.get_ylim()[1] == pytest.approx(1.08 * 0.22)
    assert "axis from 0" in loss.get_ylabel()
    records = _records(tmp_path / "a", seeds=(0, 1)) + [
        {**r, "dataset": "kits", "dice_mean": r["dice_mean"] - 0.5} for r in _records(tmp_path / "k", seeds=(0, 1))]
    fig = plot_seed_spread(records)
    acdc, kits = fig.axes[:2]
    assert acdc.get_ylim() != kits.get_ylim() and kits.get_ylim()[1] < acdc.get_ylim()[0]


def test_forest_plot_of_paired_differences_against_both_baselines(tmp_path):
    from shapnas.plots.paired import paired_differences, paired_differences_alt, plot_paired_differences

    records = _records(tmp_path / "a", seeds=(0, 1), gain=0.02, half=0.03)
    frame = paired_differences(records)
    assert len(frame) == 2 * 2 * 2  # seeds × found cells × baselines
    assert set(frame["against"]) == {"the pre-trained backbone", "the fine-tuned backbone"}
    row = frame[(frame["arm"] == "IAC, Shapley-pruned") & (frame["seed"] == 0)
                & (frame["against"] == "the fine-tuned backbone")].iloc[0]
    assert row["mean"] == pytest.approx(1.8) and row["low"] == pytest.approx(-1.2) and row["reading"] == "includes 0"
    fig = plot_paired_differences(records)
    left, right = fig.axes[:2]
    assert left.get_title() == "against the pre-trained backbone" and right.get_title() == "against the fine-tuned backbone"
    assert [t.get_text() for t in left.get_yticklabels()] == [
        "acdc · IAC, Shapley-pruned · seed 0", "acdc · IAC, Shapley-pruned · seed 1",
        "acdc · IAC, full search · seed 0", "acdc · IAC, full search · seed 1"]
    assert left.get_xlim()[0] < -1 and left.get_xlim()[1] > 5  # 0, the intervals and the claimed +5 all visible
    one = plot_paired_differences(records, dataset="acdc", seed=1)
    assert [t.get_text() for t in one.axes[0].get_yticklabels()] == ["acdc · IAC, Shapley-pruned",
                                                                     "acdc · IAC, full search"]
    alt = paired_differences_alt(records, seed=0)
    assert "acdc IAC, Shapley-pruned seed 0 against the fine-tuned backbone: +1.8 points, 95 % interval -1.2 to +4.8" in alt
    assert plot_paired_differences([]).axes[0].texts  # says there is nothing yet, does not fail


def test_every_figure_gets_an_alt_text_that_says_what_it_shows(tmp_path):
    png = {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 4. Pruning\n\n## Seconds per {term}`epoch <x>`"),
        nbformat.v4.new_code_cell("plot()", outputs=[nbformat.v4.new_output("display_data", data=png)]),
        nbformat.v4.new_code_cell("plot()", outputs=[nbformat.v4.new_output("display_data", data=png)],
                                  metadata={"mystnb": {"figure": {"name": "fig-x", "caption": "Dice of `none`, *sorted*."}}}),
        nbformat.v4.new_code_cell("plot()", outputs=[nbformat.v4.new_output("display_data", data=png)],
                                  metadata={"mystnb": {"image": {"alt": "given"}}}),
        nbformat.v4.new_code_cell("1", outputs=[nbformat.v4.new_output("execute_result", data={"text/plain": "1"})])])
    path = tmp_path / "04.ipynb"
    nbformat.write(nb, str(path))
    tag_for_book(path)
    cells = nbformat.read(str(path), as_version=4).cells
    assert [c.metadata.get("mystnb", {}).get("image", {}).get("alt") for c in cells[1:]] == [
        "Figure: Seconds per epoch", "Dice of none, sorted.", "given", None]


# ------------------------------------------------------------------ results tables and the claims

def test_metrics_table_and_patient_boxplots():
    evals = {"backbone": _eval([0.6, 0.7], [5.0, 7.0]), "shapley": _eval([0.8, 0.9], [2.0, 3.0])}
    table = metrics_table(evals)
    assert list(table.index) == ["backbone (pre-trained)", "IAC, Shapley-pruned"]
    assert table.loc["IAC, Shapley-pruned", "Dice mean (%)"] == "85.0" and table.loc["backbone (pre-trained)",
                                                                                     "Dice LV (%)"] == "–"
    scores = patient_scores(evals["shapley"])
    assert scores["dice"].tolist() == [0.8, 0.9] and scores["hd95"].tolist() == [2.0, 3.0]
    acdc = _eval([0.6, 0.7, 0.8, 0.9], [1.0] * 4)  # two patients, each with an ED and an ES volume
    for case, patient in zip(acdc["per_case"], ("p1", "p1", "p2", "p2")):
        case["patient_id"] = patient
    counts = metrics_table({"backbone": acdc}).loc["backbone (pre-trained)", ["test patients", "test cases"]]
    assert counts.tolist() == [2, 4]  # patients and cases are counted apart, and said so
    fig = plot_patient_boxplots(evals)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list(table.index)


def test_comparison_table_and_speedups(tmp_path):
    records = _records(tmp_path, seeds=(0, 1))
    speed = speedups(records)
    assert speed["speedup"].tolist() == [4.0, 4.0]
    shown = speedup_table(records)
    assert shown.loc[("acdc", "basic_unet", 1), "speed-up"] == "4.00×"
    assert shown["full search (s)"].tolist() == [400, 400]
    table = comparison_table(records)
    row = table.loc[("acdc", "IAC, Shapley-pruned")]
    assert row["seeds"] == 2 and row["Dice (%)"] == "77.0 ± 0.0" and row["speed-up"] == "4.00×"
    assert list(table.index.get_level_values("method")) == ["backbone (pre-trained)", "backbone fine-tuned",
                                                             "IAC, full search", "IAC, Shapley-pruned"]
    one = comparison_table(records, dataset="acdc", seed=1)
    assert one.loc[("acdc", "IAC, full search"), "Dice (%)"] == "77.0" and one["seeds"].eq(1).all()
    assert comparison_table(records, dataset="kits").empty


def _with_genotypes(records: list[dict], full_varies: bool, pruned_varies: bool) -> list[dict]:
    """Full-search and Shapley-pruned genotypes that differ from seed to seed (or are the same for every seed)."""
    ops = ["sep_conv_3x3", "dil_conv_5x5", "max_pool_3x3", "skip_connect", "avg_pool_3x3", "sep_conv_5x5"]

    def genotype(seed: int, varies: bool) -> list:
        k = seed if varies else 0
        inputs = [list(combinations(range(n + 2), 2)) for n in range(4)]  # node n reads s0, s1, n0 … n(n-1)
        return [[n, inputs[n][(n + k) % len(inputs[n])][i], ops[(3 * n + i + 2 * k) % len(ops)]]
                for n in range(4) for i in (0, 1)]
    for r in records:
        if r["method"] in ("iac-none", "iac-shapley"):
            r["genotype"] = genotype(r["seed"], full_varies if r["method"] == "iac-none" else pruned_varies)
    return records


def test_stability_claim_reads_the_chance_level(tmp_path):
    """More similar cells count only above the chance level of random genotypes; two chance-level searches
    are undecided, not a win for the one that happens to be higher."""
    stable = claims_table(_with_genotypes(_records(tmp_path / "s", seeds=(0, 1, 2)), True, False))
    assert stable.loc["More stable operation choices", "agreement"] == "Agrees"
    assert "acdc Shapley-pruned 1.00" in stable.loc["More stable operation choices", "measured"]
    noisy = claims_table(_with_genotypes(_records(tmp_path / "n", seeds=(0, 1, 2)), True, True))
    assert noisy.loc["More stable operation choices", "agreement"] == "Cannot tell"
    unstable = claims_table(_with_genotypes(_records(tmp_path / "u", seeds=(0, 1, 2)), False, True))
    assert unstable.loc["More stable operation choices", "agreement"] == "Disagrees"


def _write_history(run: Path, policy: str, train: float, shapley: float) -> None:
    (run / f"search-{policy}").mkdir(parents=True, exist_ok=True)
    lines = [{"epoch": e, "time_train_s": train / 2, "time_shapley_s": shapley / 2, "time_eval_s": 0.5}
             for e in range(2)]
    (run / f"search-{policy}" / "history.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_claims_verdicts_are_decided_by_the_intervals(tmp_path):
    gain_claim = "IAC improves the pre-trained U-Net (Dice)"
    agree = claims_table(_records(tmp_path / "a", seeds=(0, 1, 2), gain=0.07, speed=(400.0, 100.0)))
    assert agree.loc[gain_claim, "verdict"].startswith("Agrees: in every one of the 3 run(s) the 95 % interval lies "
                                                       "above 0")
    assert agree["agreement"].tolist() == ["Agrees", "Not measured", "Agrees", "Agrees", "Not measured", "Agrees",
                                           "Disagrees", "Agrees"]  # the synthetic records carry no patient scores to pool
    measured = agree.loc[gain_claim, "measured"]
    assert "acdc seed 0: +7.0 points (95 % CI +5.0 to +9.0), improves" in measured
    assert agree.loc["More stable operation choices", "verdict"].startswith("Disagrees")  # equal Jaccard (1 = 1)
    # the fair baseline is shown with its interval beside the backbone's, not only as a count
    both = agree.loc["Improves or matches strong baselines", "measured"]
    assert ("acdc seed 0: vs backbone +7.0 points (95 % CI +5.0 to +9.0), vs fine-tuned +6.3 points (95 % CI +4.3 "
            "to +8.3)") in both
    assert "6 improve, 0 include 0, 0 worse" in agree.loc["Improves or matches strong baselines", "verdict"]
    assert "+6.3 points (95 % CI +4.3 to +8.3), improves" in agree.loc["IAC against the fine-tuned backbone (Dice)",
                                                                        "measured"]
    assert all("Phantom data for acdc" in v for v in agree["verdict"] if not v.startswith("Not measured"))
    # +2 points (CI +0.5 to +3.5) against a claimed +5: the interval rules the claim out (the old rule said "Partly")
    short = claims_table(_records(tmp_path / "b", gain=0.02, half=0.015, speed=(300.0, 200.0), data_dir="/data/A"))
    assert short.loc[gain_claim, "verdict"].startswith("Disagrees: in 1 of 1 run(s) the 95 % interval ends below")
    assert short.loc["Shapley pruning speeds up the search", "verdict"].startswith(
        "Disagrees: the pruned search is faster (up to 1.50× by the wall clock) but does not reach the claimed 4×")
    assert short.loc["More stable operation choices", "verdict"].startswith("Not yet measurable")
    assert not any("Phantom" in v for v in short["verdict"])
    # -1 to +7 points: spans both 0 and the claim
    wide = claims_table(_records(tmp_path / "w", gain=0.03, half=0.04))
    assert wide.loc[gain_claim, "agreement"] == "Cannot tell"
    assert wide.loc["IAC against the fine-tuned backbone (Dice)", "agreement"] == "Cannot tell"
    noise = claims_table(_records(tmp_path / "n", gain=0.001, half=0.003))
    assert noise.loc[gain_claim, "agreement"] == "Disagrees"  # −0.2 to +0.4 rules out +5
    assert "95 % CI -0.2 to +0.4" in noise.loc[gain_claim, "measured"]
    assert noise.loc["Improves or matches strong baselines", "agreement"] == "Cannot tell"
    worse = claims_table(_records(tmp_path / "c", gain=-0.05, speed=(100.0, 150.0)))
    assert worse.loc["IAC with the full search (Dice)", "verdict"].startswith("Disagrees")
    assert "Worse than the backbone (interval below 0): acdc seed 0." in worse.loc[gain_claim, "verdict"]
    assert worse.loc["Improves or matches strong baselines", "agreement"] == "Disagrees"
    assert worse.loc["IAC against the fine-tuned backbone (Dice)", "agreement"] == "Disagrees"
    assert worse.loc["Shapley pruning speeds up the search", "verdict"].startswith("Disagrees")
    no_interval = claims_table(_records(tmp_path / "e", gain=0.03, half=None))
    assert no_interval.loc[gain_claim, "agreement"] == "Cannot tell"
    assert no_interval.loc["Improves or matches strong baselines", "agreement"] == "Cannot tell"
    assert set(claims_table([])["agreement"]) <= {"Not measured", "Not yet measurable"}
    assert (claims_table([])["measured"] == "not run yet").sum() == 7
    text = claims_text(short)
    assert text.count("\n- **") == 7 and "**Shapley pruning speeds up the search.** Disagrees" in text
    assert data_sources(_records(tmp_path / "d", data_dir="x")) == {"acdc": "real"}
    assert claim_reading({"mean": 0.07, "ci_low": 0.05, "ci_high": 0.09}, 5.0) == "agrees"


def _write_epochs(run: Path, policy: str, train_s: list[float], spans: list[float] = (), cpu: list[float] | None = None):
    """A search history: one search-phase epoch per time (same active ops: identical work), Shapley rounds with
    |v(N) − v(∅)| = each span on the first epochs, and process CPU seconds when given."""
    (run / f"search-{policy}").mkdir(parents=True, exist_ok=True)
    lines = []
    for epoch, seconds in enumerate(train_s):
        line = {"epoch": epoch, "phase": "search", "num_active_ops": 98, "time_train_s": seconds,
                "time_shapley_s": 0.0, "time_eval_s": 0.0, "shapley": None}
        if epoch < len(spans):
            line["shapley"] = {"value_full": 0.5 + spans[epoch], "value_empty": 0.5}
        if cpu is not None:
            line |= {"cpu_train_s": cpu[epoch], "cpu_shapley_s": 0.0, "cpu_eval_s": 0.0}
        lines.append(line)
    (run / f"search-{policy}" / "history.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_speed_verdict_reads_round_signal_and_machine_load(tmp_path):
    from shapnas.plots.speed_checks import epoch_variation, search_checks

    claim = "Shapley pruning speeds up the search"
    records = _records(tmp_path / "silent", speed=(400.0, 80.0))
    run = Path(records[0]["run_dir"])
    _write_epochs(run, "none", [10.0, 10.5, 10.2])
    _write_epochs(run, "shapley", [2.0, 2.1], spans=[0.0004, 0.002])
    checks = search_checks(run)
    assert checks["silent"] == 2 and not checks["busy"] and checks["cpu_speedup"] is None
    verdict = claims_table(records).loc[claim, "verdict"]
    assert verdict.startswith("Cannot tell: the pruned search is up to 5.00× faster, but no pruning round had a "
                              "signal")
    assert "every one of the 2 pruning round(s) had no signal (|v(N) − v(∅)| at most 0.0020" in verdict

    busy = _records(tmp_path / "busy", speed=(400.0, 80.0))
    run = Path(busy[0]["run_dir"])
    _write_epochs(run, "none", [13.0, 57.0, 20.0])  # identical epochs, 13 to 57 s: a busy machine
    _write_epochs(run, "shapley", [2.0, 2.1], spans=[0.05, 0.04])
    assert epoch_variation([{"phase": "search", "num_active_ops": 1, "time_train_s": t} for t in (13, 57)]) == \
        pytest.approx(44 / 13)
    verdict = claims_table(busy).loc[claim, "verdict"]
    assert verdict.startswith("Cannot tell: the pruned search is up to 5.00× faster by the wall clock, but the "
                              "machine was busy")
    assert "identical epochs took up to 338 % longer than the fastest" in verdict
    assert "Process CPU time is not recorded" in verdict
    _write_epochs(run, "none", [13.0, 57.0, 20.0], cpu=[10.0, 10.0, 10.0])
    _write_epochs(run, "shapley", [2.0, 2.1], spans=[0.05, 0.04], cpu=[5.0, 5.0])
    table = claims_table(busy)
    assert table.loc[claim, "verdict"].startswith("Disagrees: the pruned search is faster (up to 3.00× by process "
                                                  "CPU time")
    assert "From process CPU time the ratio is 3.00×" in table.loc[claim, "verdict"]
    assert "from process CPU time up to 3.00×" in table.loc[claim, "measured"]
    assert "the machine was busy" in speed_text(run) and "From process CPU time the ratio is 3.00×" in speed_text(run)


def test_a_ratio_below_one_comes_with_its_cost_split(tmp_path):
    records = _records(tmp_path, speed=(100.0, 150.0))
    run = Path(records[0]["run_dir"])
    assert speed_text(run) .startswith("Speed: not available")
    _write_history(run, "none", train=99.0, shapley=0.0)
    _write_history(run, "shapley", train=60.0, shapley=89.0)
    assert cost_split(run, "shapley") == {"train": 60.0, "shapley": 89.0, "eval": 1.0, "epochs": 2.0}
    text = speed_text(run)
    assert "a ratio of 0.67×" in text and "Shapley rounds cost 89.0 s while pruning saved only 39.0 s" in text
    verdict = claims_table(records).loc["Shapley pruning speeds up the search", "verdict"]
    assert verdict.startswith("Disagrees") and "saved only 39.0 s" in verdict
    _write_history(run, "shapley", train=40.0, shapley=10.0)
    assert "Pruning saved 59.0 s of training at a cost of 10.0 s" in speed_text(run)
    _write_history(run, "shapley", train=120.0, shapley=10.0)  # a pruned search that trained longer: load
    assert "pruning saved no training time: its training took 21.0 s longer" in speed_text(run)
    assert interval_verdict(None) is None and interval_verdict({"mean": 0, "ci_low": 0.0, "ci_high": 0.1}) == "matches"


def test_method_figures_are_written(tmp_path):
    paths = write_method_figures(tmp_path)
    assert [p.name for p in paths] == ["retrofit_unet.png", "cell_dag.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000 for p in paths)
    assert all((ROOT / "book" / "images" / p.name).exists() for p in paths)  # committed copies the book uses


# ------------------------------------------------------------------ toc and HTML check on hand-made trees

def _tiny_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "book" / "datasets" / "acdc").mkdir(parents=True)
    (root / "book" / "intro.md").write_text("# Intro\n")
    (root / "book" / "datasets" / "acdc" / "01_data.ipynb").write_text("{}")
    toc = {"format": "jb-book", "root": "book/intro", "parts": [
        {"caption": "ACDC", "chapters": [{"file": "book/datasets/acdc/01_data"}, {"file": "book/datasets/acdc/02_x"}]},
        {"caption": "KiTS", "chapters": [{"file": "book/datasets/kits/01_data"}]}]}
    (root / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    return root


def test_executed_toc_drops_missing_pages_without_touching_the_committed_toc(tmp_path):
    root = _tiny_root(tmp_path)
    committed = (root / "_toc.yml").read_text()
    path, missing = executed_toc(root)
    assert path == root / "_build" / "_toc_executed.yml"
    assert missing == ["book/datasets/acdc/02_x", "book/datasets/kits/01_data"]
    generated = yaml.safe_load(path.read_text())
    assert toc_files(generated) == ["book/intro", "book/datasets/acdc/01_data"]
    assert [p["caption"] for p in generated["parts"]] == ["ACDC"]
    assert (root / "_toc.yml").read_text() == committed
    (root / "book" / "datasets" / "acdc" / "02_x.md").write_text("# x\n")
    (root / "book" / "datasets" / "kits").mkdir()
    (root / "book" / "datasets" / "kits" / "01_data.ipynb").write_text("{}")
    assert executed_toc(root) == (root / "_toc.yml", [])
    (root / "book" / "datasets" / "msd").mkdir()
    (root / "book" / "datasets" / "msd" / "01_data.ipynb").write_text("{}")
    path, missing = executed_toc(root)
    assert missing == [] and [p["caption"] for p in yaml.safe_load(path.read_text())["parts"]] == [
        "ACDC", "KiTS", "MSD (not in _toc.yml)"]
    (root / "book" / "datasets" / "msd" / "01_data.ipynb").unlink()
    (root / "book" / "intro.md").unlink()
    with pytest.raises(BookError, match="root"):
        executed_toc(root)


def test_check_html_finds_broken_links_images_and_anchors(tmp_path):
    html = tmp_path / "html"
    (html / "book").mkdir(parents=True)
    (html / "_images").mkdir()
    (html / "_images" / "a.png").write_bytes(b"png")
    (html / "book" / "intro.html").write_text(
        '<h1 id="top">x</h1><a href="other.html#sec">ok</a><a href="#top">self</a><img src="../_images/a.png">'
        '<a href="https://example.org/x">external</a><a href="mailto:a@b">mail</a>')
    (html / "book" / "other.html").write_text(
        '<section id="sec"></section><a href="missing.html">broken</a><img src="../_images/b.png">'
        '<a href="intro.html#nowhere">bad anchor</a>')
    problems = check_html(html, ["book/intro", "book/other", "book/absent"])
    assert problems[0] == "page 'book/absent' was not rendered (book/absent.html missing)"
    assert len(problems) == 4
    assert any("missing.html" in p and "missing file" in p for p in problems)
    assert any("b.png" in p for p in problems) and any("#nowhere" in p and "anchor" in p for p in problems)
    assert not [p for p in problems if "intro.html:" in p]


def test_notebook_errors_are_reported(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1/0", outputs=[
        nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])])])
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, str(path))
    assert notebook_errors([path]) == [f"{path}: cell 0 has an error output (ZeroDivisionError: division by zero)"]


# ------------------------------------------------------------------ the strict build of a smoke execution

@pytest.fixture(scope="session")
def built_book(smoke_book) -> Path:
    """``_build/html/index.html`` of the smoke book, built strictly once per session (cached on disk)."""
    index = smoke_book / "_build" / "html" / "index.html"
    if not (smoke_book / ".built").exists():
        shutil.rmtree(smoke_book / "_build", ignore_errors=True)
        assert build_book(smoke_book, strict=True, log=lambda line: None) == index
        (smoke_book / ".built").write_text("ok\n")
    return index


@pytest.mark.slow
def test_book_builds_strictly_and_passes_the_html_check(built_book, smoke_book):
    html = built_book.parent
    toc = yaml.safe_load((smoke_book / "_build" / "_toc_executed.yml").read_text())
    pages = toc_files(toc)
    assert "book/datasets/acdc/04_shapley_pruning" in pages and "book/datasets/results" in pages
    assert not [p for p in pages if "/kits/" in p or "/brats/" in p]  # not executed, left out
    assert check_html(html, pages) == []
    assert (smoke_book / "_toc.yml").read_text() == (ROOT / "_toc.yml").read_text()
    page = (html / "book" / "datasets" / "acdc" / "02_retrofit.html").read_text()
    assert page.count("<img") >= 3 and "largest |backbone - retrofit| at implant" in page
    transfer = " ".join(_text((html / "book" / "transfer.html").read_text()).split())
    assert "Runs of the smoke transfer plan" in transfer and "IAC, Shapley-pruned" in transfer  # run by the runner
    assert "tag_remove-cell" not in page and "smoke_book" not in page  # parameters removed; no machine paths
    results = (html / "book" / "datasets" / "results.html").read_text()
    assert "Shapley pruning speeds up the search" in results and "Phantom data for acdc" in results
    for page_path in [*(html / "book" / "datasets").rglob("*.html")]:  # no file path as alt text
        alts = re.findall(r'<img[^>]*\balt="([^"]*)"', page_path.read_text())
        bad = [a for a in alts if not a.strip() or a.endswith((".png", ".jpg", ".svg"))]
        assert not bad, f"{page_path.name}: alt texts that are file paths: {bad[:3]}"


@pytest.mark.slow
def test_book_build_fails_loudly_on_a_warning(smoke_book, tmp_path):
    root = tmp_path / "broken"
    shutil.copytree(smoke_book, root, ignore=shutil.ignore_patterns("_build", "results"))
    (root / "book" / "workshop.md").write_text("# Workshop\n\nA reference to {doc}`no_such_page`.\n")
    with pytest.raises(BookError, match="no_such_page"):
        build_book(root, log=lambda line: None)


# ------------------------------------------------------------------ honest figures, clean pages, titles

def test_alpha_map_is_a_deviation_on_a_stated_symmetric_scale():
    assert [nice_bound(v) for v in (0.0031, 0.02, 0.021, 0.3)] == [0.005, 0.02, 0.025, 0.5]
    uniform = {"op_probs": np.full((E, P), 1 / P).tolist(), "active": np.ones((E, P), bool).tolist()}
    assert np.allclose(alpha_deviation(uniform), 0)
    active = np.ones((E, P), bool)
    active[:, :4] = False
    probs = np.where(active, 0.25, 0.0)
    probs[0, 4:] = [0.4, 0.2, 0.2, 0.2]
    deviation = alpha_deviation({"op_probs": probs.tolist(), "active": active.tolist()})
    assert np.isnan(deviation[:, :4]).all() and deviation[0, 4] == pytest.approx(0.15)  # 0.4 - 1/4 active ops
    history = _search_history(prune=True)
    fig = plot_arch_heatmaps(history, count=2)
    image = next(ax for ax in fig.axes if ax.get_title().startswith("epoch")).get_images()[0]
    low, high = image.get_clim()
    assert low == -high and high >= ALPHA_SCALE_FLOOR  # symmetric around "uniform", never auto-stretched
    assert f"±{high:g}" in fig._suptitle.get_text() and "uniform" in fig._suptitle.get_text()


def test_class_frequencies_are_linear_from_zero_and_labelled():
    summary = {"dataset": "acdc", "classes": ["background", "RV", "MYO", "LV"],
               "class_frequencies": {"background": 0.9, "RV": 0.02, "MYO": 0.03, "LV": 0.05}}
    ax = plot_class_frequencies(summary).axes[0]
    assert ax.get_yscale() == "linear" and ax.get_ylim()[0] == 0
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([2.0, 3.0, 5.0])  # MYO is drawn 1.5× RV, as it is
    assert [t.get_text() for t in ax.texts] == ["2%", "3%", "5%"]


def test_patient_boxplots_print_the_paired_interval():
    evals = {"backbone": _eval([0.6, 0.7], [5.0, 7.0]), "shapley": _eval([0.8, 0.9], [2.0, 3.0])}
    interval = {"mean": 0.001, "ci_low": -0.002, "ci_high": 0.004}
    fig = plot_patient_boxplots(evals, {"shapley": interval})
    assert "IAC, Shapley-pruned: +0.1 points (95 % CI -0.2 to +0.4)" in fig._suptitle.get_text()
    assert plot_patient_boxplots(evals)._suptitle is None


def test_paired_intervals_and_seed_spread(tmp_path):
    records = _records(tmp_path, seeds=(0, 1, 2))
    intervals = paired_intervals(records, dataset="acdc", backbone="basic_unet", seed=1)
    assert set(intervals) == {"none", "shapley"} and intervals["shapley"]["ci_low"] == pytest.approx(0.05)
    assert paired_intervals(_records(tmp_path / "x", half=None), dataset="acdc", backbone="basic_unet", seed=0) == {}
    fig = plot_seed_spread(records)
    ax = fig.axes[0]
    assert ax.get_title() == "acdc: 3 seeds"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["backbone (pre-trained)", "backbone fine-tuned",
                                                            "IAC, full search", "IAC, Shapley-pruned"]
    empty = plot_seed_spread([])  # the plan has not run: a message, not a failed results page
    assert [t.get_text() for t in empty.axes[0].texts] == [NO_SEEDS_TEXT]


def test_pruning_table_view_has_no_e_notation():
    html = pruning_table_view(_search_history(prune=True)).to_html()
    assert "e-0" not in html and "long-table" in html and "Shapley value (Dice points)" in html
    assert "-100.000" in html  # the first pruned player's value, -1.0 soft Dice, in points


def test_setup_notebook_shows_tables_whole():
    import pandas as pd

    setup_notebook()
    wide = pd.DataFrame(np.arange(40 * 90).reshape(90, 40))
    assert "..." not in repr(wide) and "…" not in wide._repr_html_()


def test_page_titles_and_provenance(tmp_path):
    assert page_title("1. The data", "acdc") == "ACDC · 1. The data"
    assert page_title("ACDC · 1. The data", "acdc") == "ACDC · 1. The data" and page_title("x", None) == "x"
    metadata = {"parameters": {"seed": 2, "dataset": "kits", "data_dir": ""}, "start_time": "2026-12-01T14:03:05.1",
                "duration": 61.4}
    line = provenance_text(metadata, profile="workshop", commit="abc1234")
    assert line == ("*This page: profile `workshop`, seed 2, dataset `kits` (phantom data), shapnas "
                    f"{shapnas.__version__} (commit abc1234), executed 2026-12-01 14:03 UTC in 61 s "
                    "(papermill; `python -m shapnas run`).*")
    command = "python -m shapnas run --datasets kits --profile workshop --seed 2 --notebooks 03"
    assert provenance_text(metadata, profile="workshop", commit="abc1234", command=command).endswith(
        f"in 61 s; reproduce it with `{command}`.*")
    parameters = ('dataset = "acdc"  # acdc, brats, kits, amos or msd\nseed = 0  # run seed\n'
                  'data_dir = ""  # dataset root\npolicy = "none"  # pruning policy | none, shapley')
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 3. The full search\n\n## Overview"),
                                         nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell("1", metadata={"mystnb": {"figure": {
                                             "name": "fig-alpha", "caption": "α"}}})],
                                  metadata={"papermill": metadata, "kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                                  "language": "python"}})
    path = tmp_path / "03_search.ipynb"
    nbformat.write(nb, str(path))
    for _ in range(2):  # re-tagging neither prefixes twice nor adds a second provenance line or parameter list
        tag_for_book(path, dataset="kits", profile="workshop", command=command, note="the plan's runs.")
    cells = nbformat.read(str(path), as_version=4).cells
    here = provenance_text(metadata, profile="workshop", commit=source_commit(), command=command)  # this checkout
    rows = parameter_rows(nbformat.read(str(path), as_version=4))
    assert [(r["name"], r["value"], r["source"]) for r in rows] == [
        ("dataset", '"kits"', "this run"), ("seed", "2", "this run"), ("data_dir", '""', "this run"),
        ("policy", '"none"', "notebook default")]
    assert rows[3]["help"] == "pruning policy | none, shapley"
    folded = parameters_text(rows)
    assert folded.startswith(":::{dropdown} Parameters of this page (4: names and values in this run)")
    assert "| `policy` | `\"none\"` | notebook default | pruning policy \\| none, shapley |" in folded
    assert cells[0].source == (f"# KiTS · 3. The full search\n\n{here}\n\n*Data of this chapter: the plan's runs.*"
                               f"\n\n{folded}\n\n## Overview\n")
    assert [c.cell_type for c in cells] == ["markdown", "code", "code"]  # the lines sit under the title, once
    assert cells[2].metadata.mystnb.figure.name == "kits-fig-alpha"  # figure labels are global in the book
    assert source_commit(tmp_path) == "no git checkout"


def test_experiment_chapters_name_the_plan_their_data_come_from():
    from shapnas.book.run_notebooks import plan_note

    note = plan_note("workshop")
    assert "`workshop` ablation plan" in note and "`slice_size=32`" in note and "`search_epochs=6`" in note
    assert "not the single run configured below" in note
    assert "own values" not in plan_note("paper") and "profile's values" in plan_note("paper")


def test_workshop_has_goals_a_measured_schedule_and_exercises_with_solutions():
    text = (ROOT / "book" / "workshop.md").read_text()
    assert "## Learning goals" in text and "## Schedule" in text and "{{" not in text
    exercises = text.split("\n### ")[1:]
    assert len(exercises) >= 6
    for exercise in exercises:
        assert "**Expected" in exercise and ":::{dropdown} Solution" in exercise, exercise[:40]
    assert "15%" not in text and "15 %" not in text  # no budget the method chapter does not state
    assert "-f shapnas/profiles/workshop.yaml" in text


def test_scholarship_files():
    bib = (ROOT / "book" / "references.bib").read_text()
    for key in ("benedykciuk2026shapley", "benedykciuk2024iac", "benedykciuk2026iaclth", "xu2020pcdarts",
                "liu2019darts", "xiao2022shapleynas", "shapley1953value", "owen1972multilinear", "cardoso2022monai",
                "isensee2021nnunet", "bernard2018acdc", "menze2015brats", "heller2021kits", "ji2022amos"):
        assert "{" + key + "," in bib, key
    assert "doi     = {10.1038/s41598-026-59012-w}" in bib
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["preferred-citation"]["doi"] == "10.1038/s41598-026-59012-w"
    toc = toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text()))
    assert "book/glossary" in toc and "book/bibliography" in toc
    glossary = (ROOT / "book" / "glossary.md").read_text()
    for term in ("IAC", "HD95", "W/A/V split", "JS divergence", "Shapley value"):
        assert f"\n{term}\n" in glossary, term


def test_unplanned_experiment_chapters_are_not_executed(tmp_path):
    from shapnas.book.run_notebooks import _Job, _without_unplanned

    jobs = [_Job(f"{d} {s}", Path(f"{s}.ipynb"), tmp_path / d / f"{s}.ipynb", tmp_path / "c.ipynb", {}, d)
            for d in ("acdc", "brats") for s in ("04_shapley_pruning", "05_ablations", "06_stability")]
    (tmp_path / "brats").mkdir()
    stale = tmp_path / "brats" / "05_ablations.ipynb"
    stale.write_text("{}")
    lines: list[str] = []
    kept = _without_unplanned(jobs, "smoke", lines.append)  # the smoke plan covers acdc only
    assert [j.label for j in kept] == ["acdc 04_shapley_pruning", "acdc 05_ablations", "acdc 06_stability",
                                       "brats 04_shapley_pruning"]
    assert not stale.exists() and "brats 05_ablations, brats 06_stability" in lines[0]


# ------------------------------------------------------------------ the built book

def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", html)


@pytest.mark.slow
def test_built_pages_have_distinct_titles_whole_tables_and_captioned_figures(built_book, smoke_book):
    html_dir = built_book.parent
    pages = toc_files(yaml.safe_load((smoke_book / "_build" / "_toc_executed.yml").read_text()))
    titles = {}
    for page in pages:
        html = (html_dir / f"{page}.html").read_text()
        titles[page] = re.search(r"<title>(.*?)</title>", html, re.S).group(1).strip()
        pandas_tables = r'<table[^>]*class="[^"]*(?:dataframe|long-table|text-table).*?</table>'
        for table in re.findall(pandas_tables, html, re.S):
            assert "…" not in table and ">...<" not in table, f"{page}: a truncated table"
        if page.startswith("book/datasets/"):
            images, captions = html.count("<img"), html.count("<figcaption")
            assert images == captions, f"{page}: {images} images, {captions} captions"
            text = " ".join(_text(html).split())
            assert "This page: profile smoke" in text, page
            assert "NBVAL" not in text and "filterwarnings" not in text and "cfg = " not in text, page
    dataset_titles = [t for p, t in titles.items() if p.startswith("book/datasets/acdc/")]
    assert len(set(dataset_titles)) == len(dataset_titles) and all(t.startswith("ACDC · ") for t in dataset_titles)
    assert "05_ablations" in " ".join(pages)  # the smoke plan covers acdc
    bibliography = (html_dir / "book" / "bibliography.html").read_text()
    assert 'href="https://doi.org/10.1038/s41598-026-59012-w"' in bibliography
    workshop = (html_dir / "book" / "workshop.html").read_text()
    assert workshop.count("<details") >= 6 and "Solution" in _text(workshop)
    glossary = (html_dir / "book" / "glossary.html").read_text()
    assert 'id="term-IAC"' in glossary
    intro = (html_dir / "book" / "intro.html").read_text()
    assert "glossary.html#term-IAC" in intro and 'href="https://doi.org/10.1038/s41598-026-59012-w"' in intro
    section = intro[intro.index("<h2>What this book"):intro.index("<h2>Reproduce it")]  # the run's findings
    words = " ".join(_text(section).split())
    assert "IAC improves the pre-trained U-Net (Dice)" in words and "smoke profile" in words
    assert re.search(r"(Agrees|Disagrees|Cannot tell|Not measured)", words)
    assert "datasets/results.html" in section and "<table" in section


def test_search_signal_and_estimator_sentences_degrade_gracefully():
    assert search_signal_text({}).startswith("How far the search moved: not available")
    metrics = {"alpha_spread": 0.0123, "alpha_max_prob": 0.131, "alpha_uniform": 0.125, "cell_weight_change": 0.42,
               "loss_first": 1.2, "loss_last": 0.8}
    text = search_signal_text(metrics)
    assert "span 0.012" in text and "0.131 on average against the uniform 0.125" in text and "42.0 %" in text
    assert "1.200 to 0.800" in text
    history = _search_history(prune=True)
    old = estimator_text(history)  # rounds of this version: no estimator name, no completeness gap
    assert old.startswith("2 Shapley round(s) (estimator not recorded), valuing 98 to 70 players")
    assert "40 value evaluations per round" in old and "Completeness gap: not recorded" in old
    for gap, record in zip((0.01, 0.03), (r for r in history if r["shapley"])):
        record["shapley"] |= {"estimator": "ig", "completeness_gap": gap, "passes": 12}
    new = estimator_text(history)
    assert "with the `ig` estimator" in new and "12 forward+backward passes" in new
    assert "median 2.0 %, largest 3.0 %" in new
    assert new.endswith("Total effect |v(N) − v(∅)| of the rounds: not recorded.")
    first, second = (r for r in history if r["shapley"])
    first["shapley"] |= {"value_full": 0.9164, "value_empty": 0.9163}
    second["shapley"] |= {"value_full": 0.9167, "value_empty": 0.9166}
    assert "0.00010, 0.00010 soft Dice, below 0.01" in estimator_text(history)
    assert "close to arbitrary" in estimator_text(history)
    second["shapley"] |= {"value_full": 0.93, "value_empty": 0.90}
    assert "at least 0.01 in some round" in estimator_text(history)
    assert estimator_text(_search_history(prune=False)).endswith("not available (this search ran none).")


def test_findings_table_is_computed_from_the_run_and_included_by_the_introduction(tmp_path):
    from shapnas.book.findings import (
        PLACEHOLDER_MARK,
        ensure_findings,
        findings_markdown,
        findings_path,
        write_findings,
    )

    text = findings_markdown(_records(tmp_path / "r", gain=0.02, half=0.015), profile="smoke")
    assert "the `smoke` profile's run" in text and "{doc}`results page </book/datasets/results>`" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 8  # one per claim
    gain = next(r for r in rows if r.startswith("| IAC improves the pre-trained U-Net"))
    assert "+2.0 points (95 % CI +0.5 to +3.5)" in gain and gain.endswith("**Disagrees** |")
    assert "Phantom data for acdc" in text
    root = tmp_path / "root"
    assert PLACEHOLDER_MARK in ensure_findings(root).read_text()
    written = write_findings(root, tmp_path / "empty-results", "smoke")  # no evaluations yet: "not run yet"
    assert written == findings_path(root) and "not run yet" in written.read_text()
    assert "results page" in written.read_text() and "{doc}" not in written.read_text()  # no page to link
    assert ensure_findings(root).read_text() == written.read_text()  # a run's table is never overwritten
    intro = (ROOT / "book" / "intro.md").read_text()
    found, reproduce = intro.index("```{include} datasets/findings.md"), intro.index("## Reproduce it")
    assert found < reproduce  # the findings come before how to reproduce them


def test_metrics_view_grows_down_and_names_classes_no_model_finds():
    from shapnas.plots.results import metrics_table_view, unscored_classes_text

    evals = {"backbone": _eval([0.6, 0.7], [5.0, 7.0]), "shapley": _eval([0.8, 0.9], [2.0, 3.0])}
    for metrics in evals.values():
        metrics["dice_per_class"] = {"RV": metrics["dice_per_class"]["RV"], "LV": 0.0, "pancreas": 0.0}
    view = metrics_table_view(evals)
    assert list(view.columns) == ["backbone (pre-trained)", "IAC, Shapley-pruned"]  # one column per model
    assert "test patients" in view.index and "test cases" in view.index
    text = unscored_classes_text(evals)
    assert text.startswith("Every model scores 0.0 Dice on 2 of 3 classes (LV, pancreas)")
    evals["shapley"]["dice_per_class"]["LV"] = 0.1
    assert "1 of 3 classes (pancreas)" in unscored_classes_text(evals)
    evals["shapley"]["dice_per_class"]["pancreas"] = 0.2
    assert unscored_classes_text(evals) == ""


# measured figures in prose: a decimal, a time, a ratio (inline code, e.g. a parameter value, is not prose)
MEASURED = re.compile(r"\d+\.\d+|\b\d+(?:\.\d+)?\s?(?:s|ms|min)\b|\d+(?:\.\d+)?×")  # "2 × players": a formula


def _expected_blocks(text: str) -> list[str]:
    """The "Expected" paragraphs of the workshop page, up to each exercise's solution."""
    return [block.split(":::{dropdown}")[0] for block in text.split("**Expected")[1:]]


def test_workshop_prose_quotes_no_figure_the_run_did_not_produce():
    """What an exercise should show comes from this book's run (a generated snippet), never typed in."""
    from shapnas.book.workshop_values import SNIPPETS

    text = (ROOT / "book" / "workshop.md").read_text()
    intro = (ROOT / "book" / "intro.md").read_text()
    included = re.findall(r"```\{include\} datasets/workshop/(\w+)\.md\n```", text + intro)
    assert set(included) == set(SNIPPETS) and len(included) >= 7
    profiles = intro[intro.index("| profile |"):intro.index("## How the book is organised")]
    assert not re.findall(r"\d+(?:\.\d+)?\s*(?:min|s)\b", profiles), "the profile table types a run time"
    for block in _expected_blocks(text):
        prose = re.sub(r"```\{include\}.*?```", "", re.sub(r"`[^`]*`", "", block), flags=re.S)
        assert not MEASURED.findall(prose), f"a typed measurement in {block[:80]!r}: {MEASURED.findall(prose)}"
    assert MEASURED.findall("took 79.2 s, 5.8× faster, 13 s")  # the check itself sees such figures


def _workshop_run(tmp_path: Path) -> tuple[Path, Path]:
    """A book root with ACDC's chapters 1–4 executed (durations, the implant line) and a results folder with
    both searches."""
    root, results = tmp_path / "root", tmp_path / "results"
    for stem, seconds in (("01_data", 12.0), ("02_retrofit", 61.4), ("03_search", 82.0), ("04_shapley_pruning", 235.0)):
        cells = [nbformat.v4.new_code_cell("check()", outputs=[nbformat.v4.new_output(
            "stream", name="stdout", text="largest |backbone - retrofit| at implant: 0.0e+00\n")])] \
            if stem == "02_retrofit" else []
        nb = nbformat.v4.new_notebook(cells=cells, metadata={"papermill": {"duration": seconds}})
        path = root / "book" / "datasets" / "acdc" / f"{stem}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(path))
    run = results / "acdc" / "basic_unet" / "seed-0"
    full, pruned = _search_history(prune=False), _search_history(prune=True)
    for history in (full, pruned):
        for record in history:
            record |= {"weight_steps": 6 * (record["epoch"] + 1), "arch_steps": 5 * record["epoch"]}
    for policy, history in (("none", full), ("shapley", pruned)):
        (run / f"search-{policy}").mkdir(parents=True)
        (run / f"search-{policy}" / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    (run / "search-none" / "metrics.json").write_text(json.dumps(
        {"alpha_max_prob": 0.281, "alpha_uniform": 0.125, "alpha_spread": 0.33}))
    return root, results


def test_workshop_snippets_are_computed_from_the_run(tmp_path):
    from shapnas.book.workshop_values import (
        PLACEHOLDER,
        ensure_workshop_snippets,
        workshop_snippets,
        write_workshop_snippets,
    )

    root, results = _workshop_run(tmp_path)
    snippets = workshop_snippets(root, results)
    assert snippets["chapters"] == ("*In this book's run, ACDC's chapters 1–4 took 12 + 61 + 82 + 235 s (6.5 min; "
                                    "each page says its time under its title).*\n")
    assert "printed `largest |backbone - retrofit| at implant: 0.0e+00` and took 61 s" in snippets["ex1"]
    assert "hold 0.281 of their edge's probability on average against the uniform 0.125" in snippets["ex2"]
    assert "after 24 weight and 15 architecture steps; chapter 3 took 82 s" in snippets["ex2"]
    assert "1.0–1.0 s each, valuing 98 then 70 players" in snippets["ex3"]
    assert "a ratio of" in snippets["ex4"] and "full search took 42.0 s" in snippets["ex4"]
    assert snippets["ex5"] == PLACEHOLDER  # no evaluation in this results folder: says so, quotes nothing
    assert snippets["timings"].startswith("*In this book's run (workshop profile), one dataset's notebooks 01–04 "
                                          "took 6.5–6.5 min (ACDC 6.5); all executed pages 6.5 min, of which the "
                                          "ablation and stability pages 0.0 min (they read the ablation plan's runs")
    written = write_workshop_snippets(root, results)
    assert sorted(p.name for p in written) == ["chapters.md", "ex1.md", "ex2.md", "ex3.md", "ex4.md", "ex5.md",
                                               "timings.md"]
    by_name = {p.stem: p for p in written}
    by_name["chapters"].unlink()
    ensure_workshop_snippets(root)
    assert by_name["chapters"].read_text() == PLACEHOLDER and "0.281" in by_name["ex2"].read_text()  # values kept


def test_edge_weights_of_only_zeros_and_ones_get_two_colours_not_a_colour_bar():
    from shapnas.plots.search import plot_edge_weights

    binary = [{"epoch": e, "edge_probs": [1.0 if i % 2 else 0.0 for i in range(E)]} for e in range(3)]
    fig = plot_edge_weights(binary)
    assert len(fig.axes) == 1 and fig.axes[0].get_legend() is not None  # no colour-bar axes
    smooth = [{"epoch": e, "edge_probs": [0.3 + 0.01 * i for i in range(E)]} for e in range(3)]
    assert len(plot_edge_weights(smooth).axes) == 2  # a colour bar for a continuous quantity
