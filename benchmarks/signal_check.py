"""Does the workshop search learn? Signal figures of one search ("signal checks").

Runs the profile's full search (policy ``none``, every op kept, so α is read without pruning) on the
dataset's pre-trained backbone and reports:

- ``alpha_max_prob`` (mean over the genotype's edges of the chosen op's probability at the end),
  ``alpha_spread`` (mean over edges of max − min op probability), against ``alpha_uniform`` = 1/8;
- ``cell_weight_change`` (relative L2 change of the cell weights over the search), ``loss_first`` and
  ``loss_last`` (search training loss of the first and last epoch);
- ``shapley_signal``: |v(N) − v(∅)| (soft Dice) of the first Shapley round, taken on the supernet at the
  epoch where a ``shapley`` search with the same seed runs its first round (the two searches are the same
  run up to there), and ``shapley_batch_spearman``: the Spearman correlation of that round's Shapley
  values on two disjoint V batches (the search's foreground-rich value batch and the next-richest slices),
  both estimated as the search's first round is (``shapley_estimator``, its points or permutations);
- ``grad_norms``: the gradient norm per parameter group and skip level on one W batch before the first
  step and at the first round (where the cells' gradients are);
- ``signal_by_epoch``: v(N) − v(∅) on the first value batch after every search epoch (two evaluations an
  epoch), to see whether the cells' contribution is still growing when the search ends.

Config fields can be changed with ``--set key=value`` (e.g. ``--set residual=gate``) to compare settings;
``--set setting=transfer`` searches on the target site's few patients (W, A, V) with the source backbone.
The last line is one JSON object. Targets (workshop): ``alpha_max_prob`` ≥ 0.2,
``shapley_signal`` ≥ 0.01, ``shapley_batch_spearman`` ≥ 0.6.

    python benchmarks/signal.py --dataset acdc --profile workshop --seed 0

(``benchmarks/signal.py`` launches this file; the code lives here because a module named ``signal`` in
this folder would shadow the standard library's for the other benchmark scripts.)
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from shapnas.config.arguments import benchmark_config, benchmark_parser
from shapnas.config.overrides import parse_overrides
from shapnas.config.stage_configs import SearchConfig
from shapnas.pipeline import frozen_adapter, run_pretrain, search_data, search_supernet, stage_data
from shapnas.runtime import pick_device, seed_everything
from shapnas.search.loop import run_search_loop, search_signal
from shapnas.search.pruning import is_pruning_epoch
from shapnas.shapley.supernet_game import (
    disjoint_value_batches,
    estimate_supernet_shapley,
    ops_contribution,
    round_options,
)
from shapnas.training.train import dice_ce_loss, validation_dice


def grad_norms(model, images: torch.Tensor, labels: torch.Tensor) -> dict[str, list[float]]:
    """Gradient norms of one DiceCE backward pass, per skip level: output projection, the rest of the cell,
    the gate (if any); and α, β. The model's buffers (BN running statistics) are restored afterwards, so the
    probe leaves the search unchanged."""
    buffers = {name: value.clone() for name, value in model.named_buffers()}  # BN statistics: the search's own
    model.zero_grad(set_to_none=True)
    dice_ce_loss()(model(images), labels).backward()
    with torch.no_grad():
        for name, value in model.named_buffers():
            value.copy_(buffers[name])

    def norm(params) -> float:
        grads = [p.grad.flatten() for p in params if p.grad is not None]
        return float(torch.cat(grads).norm()) if grads else 0.0

    out = {"project": [norm(c.project.parameters()) for c in model.cells],
           "cell_rest": [norm(p for n, p in c.named_parameters() if not n.startswith("project")) for c in model.cells],
           "arch": [norm(model.arch_parameters())]}
    if model.gates is not None:
        out["gate"] = [float(g) for g in model.gates.grad]
    model.zero_grad(set_to_none=True)
    return out


def first_round(model, cfg: SearchConfig, batches, epoch: int) -> dict[str, Any]:
    """Shapley values of the current supernet's players on two value batches; their signal and agreement."""
    players = model.arch[0].players()
    rounds = []
    for images, labels in batches:
        rounds.append(estimate_supernet_shapley(  # the search's own first round: its estimator and settings
            model, images, labels, players, generator=np.random.default_rng([cfg.seed, epoch, 7]),
            **round_options(cfg, 0)))
    a, b = (np.asarray(r["mean"]) for r in rounds)
    rho = spearmanr(a, b).statistic if np.ptp(a) > 0 and np.ptp(b) > 0 else float("nan")
    return {"shapley_signal": abs(rounds[0]["value_full"] - rounds[0]["value_empty"]),
            "shapley_value_full": rounds[0]["value_full"], "shapley_value_empty": rounds[0]["value_empty"],
            "shapley_signal_batch2": abs(rounds[1]["value_full"] - rounds[1]["value_empty"]),
            "shapley_batch_spearman": float(rho), "shapley_epoch": epoch,
            "shapley_estimator": rounds[0]["estimator"],
            "shapley_evals": sum(r["num_evals"] for r in rounds),
            "shapley_wall_s": sum(r["wall_s"] for r in rounds)}


def value_batch_source(prepared: Any, val: tuple[torch.Tensor, torch.Tensor],
                       size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The slices the two disjoint value batches are drawn from: the capped V slices the search reads, or, when
    they hold fewer than ``2·size`` slices (the transfer setting's V of one or two target patients), every slice
    of the whole V volumes, whose most foreground-rich ``size`` are the search's own value batch again.

    Returns:
        (images (N, C, H, W), labels (N, 1, H, W)).
    """
    if val[0].shape[0] >= 2 * size or not prepared.val_whole:
        return val
    return prepared.selection_slices()


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--skip-shapley", action="store_true",
                        help="no Shapley round (α, weight and loss figures only; much cheaper)")
    args = parser.parse_args()

    cfg = benchmark_config(args, SearchConfig, policy="none")  # a full search unless --set policy=…
    overrides = {"policy": "none", **parse_overrides(args.overrides, SearchConfig)}
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    pretrain = run_pretrain(cfg)
    prepared = stage_data(cfg)  # the target site's W, A, V in the transfer setting
    adapter, _ = frozen_adapter(pretrain, device)
    model = search_supernet(cfg, adapter, device)
    data = search_data(prepared)
    value_slices = value_batch_source(prepared, data.val, cfg.shapley_slices)
    batches = [tuple(t.to(device) for t in batch)
               for batch in disjoint_value_batches(*value_slices, cfg.shapley_slices)]
    probe = tuple(t[: cfg.batch_size].to(device) for t in data.train_w)
    result: dict[str, Any] = {"grad_norms_implant": grad_norms(model.train(), *probe)}

    signal_by_epoch: list[float] = []

    def on_epoch(record: dict[str, Any]) -> None:
        epoch = record["epoch"]
        signal_by_epoch.append(round(ops_contribution(model, *batches[0]), 6))
        if args.skip_shapley:
            return
        if "shapley_signal" not in result and is_pruning_epoch(epoch, cfg.prune_start, cfg.prune_interval):
            result["grad_norms_first_round"] = grad_norms(model.train(), *probe)
            result.update(first_round(model, cfg, batches, epoch))

    backbone_val_dice = (json.loads((pretrain / "metrics.json").read_text())["val_dice"] if cfg.setting == "same_site"
                         else validation_dice(adapter.net, *data.val, num_classes=data.num_classes, device=device,
                                              batch_size=cfg.batch_size))  # the source backbone on the target's V
    stage = Path(tempfile.mkdtemp(prefix="signal-search-", dir=cfg.results_root))
    start = time.perf_counter()
    search = run_search_loop(model, data, cfg, stage, device, progress=False, on_epoch=on_epoch)
    wall = time.perf_counter() - start
    summary = {
        "dataset": cfg.dataset, "profile": args.profile, "seed": cfg.seed, "overrides": overrides,
        "setting": cfg.setting, **search_signal(search.history), "val_dice_backbone": backbone_val_dice,
        "val_dice_last": search.val_dice, "epochs": search.epochs, "search_wall_s": search.wall_s,
        "search_train_s": search.time_train_s, "wall_s": wall, "genotype": str(search.genotype),
        "alpha_spread_by_epoch": [round(h["alpha_spread"], 5) for h in search.history],
        "loss_by_epoch": [round(h["train_loss"], 4) for h in search.history],
        "signal_by_epoch": signal_by_epoch, "final_op_probs": search.history[-1]["op_probs"],
        **result,
    }
    for key, value in summary.items():
        if not isinstance(value, (dict, list)):
            print(f"{key:26} {value:.4f}" if isinstance(value, float) else f"{key:26} {value}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
