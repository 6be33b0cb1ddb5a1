"""One device check: per-step and per-epoch times of a profile's training at its size, the Shapley rounds, peak
memory, and the profile's projected wall-clock for one dataset.

On a CUDA device it measures the profile as given (default ``paper``: 256 px slices, the paper BasicUNet,
batch 16) on the dataset's phantom data, with the package's GPU policy (``shapnas.runtime.device_policy``:
bf16 autocast or fp16 with loss scaling, channels-last, cuDNN autotuning, slices resident on the GPU); on a
CPU it measures the ``smoke`` profile instead (``profile_measured`` says which). Every measurement runs the
package's own training functions (``train_epoch``, ``train_search_epoch``, ``validation_dice``,
``estimate_supernet_shapley``) on a few batches after a warm-up, and scales the per-step time to the epoch:

- ``backbone_*``: an Adam step of the whole backbone (pre-training);
- ``supernet_*``: a search step (architecture step on an A batch, then weight step on a W batch) with all
  ops on every edge, ``supernet_weight_step_s`` a warm-up (weight-only) step, ``supernet_pruned_step_s``
  the search step with one op per edge (the end of a pruned search);
- ``discrete_step_s``: an Adam step of the re-trained discrete cells (frozen backbone);
- ``shapley_round_s``: one round of each estimator (``ig`` and ``owen`` with the profile's points and
  samples, ``mc`` with ``--mc-permutations`` antithetic pairs) on the profile's value batch, all ops active;
- ``projected_s``: pre-training, full search (policy ``none``), pruned search (policy ``shapley``: the
  profile's pruning schedule simulated epoch by epoch, its cost interpolated between the all-ops and
  one-op step times, plus one Shapley round of the profile's estimator per pruning round) and re-training,
  from the profile's epoch and step counts (caps: early stopping can end a training sooner) and the
  per-slice time of the V scoring after each epoch.

Peak memory is the CUDA allocator's peak (null on CPU). The last line is one JSON object.

    python benchmarks/device_profile.py                                  # auto device, paper profile, acdc
    python benchmarks/device_profile.py --device cpu --profile smoke      # the smoke check (about 30 s)
"""

from __future__ import annotations

import copy
import json
import math
import time
from typing import Any, Callable

import numpy as np
import torch

from shapnas.config.arguments import benchmark_config, benchmark_parser
from shapnas.config.stage_configs import RetrainConfig
from shapnas.data.prepared import prepare_data
from shapnas.networks.backbones import adapt, new_backbone
from shapnas.networks.retrofit import build_discrete, retrofit_options
from shapnas.pipeline import search_data, search_supernet
from shapnas.runtime import (
    channels_last_convs,
    configure_backends,
    device_policy,
    grad_scaler,
    keep_on_device,
    pick_device,
    seed_everything,
    torch_generator,
)
from shapnas.search.loop import SearchData, build_optimizers, train_search_epoch
from shapnas.search.pruning import is_pruning_epoch
from shapnas.shapley.supernet_game import ESTIMATORS, estimate_supernet_shapley, foreground_rich_batch, round_options
from shapnas.training.train import dice_ce_loss, iterate_batches, train_epoch, validation_dice


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds of ``fn()`` (the device synchronised before and after)."""
    _synchronize(device)
    start = time.perf_counter()
    fn()
    _synchronize(device)
    return time.perf_counter() - start


def backbone_step_s(net: torch.nn.Module, train: tuple[torch.Tensor, torch.Tensor], batch_size: int, steps: int,
                    device: torch.device, seed: int) -> float:
    """Seconds of one pre-training step (Adam on every weight), from ``steps`` timed steps after two untimed."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    scaler = grad_scaler(device_policy(device))
    batches = list(iterate_batches(*train, batch_size, torch_generator(seed), shuffle=True))
    batches = (batches * (steps + 2))[:steps + 2]

    def run(part: list) -> None:
        train_epoch(net, optimizer, dice_ce_loss(), list(net.parameters()), part, device, None, "", False, scaler)
    run(batches[:2])
    return timed(lambda: run(batches[2:]), device) / steps


def search_step_s(model: torch.nn.Module, data: SearchData, cfg: RetrainConfig, steps: int, arch_steps: bool,
                  device: torch.device) -> float:
    """Seconds of one search step (architecture + weight step, or the weight step alone), ``steps`` timed."""
    weight_opt, arch_opt, _ = build_optimizers(model, cfg)
    policy = device_policy(device)
    scalers = (grad_scaler(policy), grad_scaler(policy))

    def run(count: int) -> None:
        train_search_epoch(model, data, cfg.replace(search_epoch_steps=count), weight_opt, arch_opt, arch_steps,
                           torch_generator(cfg.seed), device, False, scalers)
    run(2)
    return timed(lambda: run(steps), device) / steps


def keep_top_op(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the supernet pruned to the highest-α op of every edge (the end of a pruned search)."""
    pruned = copy.deepcopy(model)
    arch = pruned.arch[0]
    probs = arch.op_probs().detach().clone()
    probs[:, 0] = -1.0  # never keep 'none'
    for edge, best in enumerate(probs.argmax(1).tolist()):
        for op in range(1, probs.shape[1]):
            if op != best and bool(arch.active[edge, op]):
                pruned.prune(edge, op)
    return pruned


def shapley_round_s(model: torch.nn.Module, data: SearchData, cfg: RetrainConfig, mc_permutations: int,
                    device: torch.device) -> dict[str, float]:
    """Seconds of one Shapley round of each estimator (all ops active; ``mc`` with a small budget)."""
    images, labels = foreground_rich_batch(*data.val, cfg.shapley_slices)
    images, labels = images.to(device), labels.to(device)
    players = model.arch[0].players()
    times = {}
    for estimator in ESTIMATORS:
        options = {**round_options(cfg, 1), "estimator": estimator}
        if estimator == "mc":
            options["num_permutations"] = mc_permutations
        generator = np.random.default_rng(cfg.seed)
        times[estimator] = timed(lambda generator=generator, options=options: estimate_supernet_shapley(
            model, images, labels, players, generator=generator, **options), device)
    return times


def per_slice_eval_s(model: torch.nn.Module, val: tuple[torch.Tensor, torch.Tensor], num_classes: int,
                     batch_size: int, device: torch.device) -> float:
    """Seconds per V slice of the V Dice scoring (``validation_dice``)."""
    validation_dice(model, val[0][:batch_size], val[1][:batch_size], num_classes, device, batch_size)  # warm-up
    return timed(lambda: validation_dice(model, *val, num_classes, device, batch_size), device) / max(len(val[0]), 1)


def search_schedule(cfg: RetrainConfig, policy: str) -> list[tuple[str, int, bool]]:
    """The epochs of a search as the search loop runs them: (phase, ops per edge, pruning round after it).

    Every edge starts with all non-``none`` ops; a round removes ``prune_per_round`` of them from every
    edge; once one is left, ``settle_epochs`` more epochs run (policy ``none``: all ``search_epochs``).
    """
    ops, settle_left, epochs = 7, None, []
    for epoch in range(cfg.search_epochs):
        if settle_left is not None and settle_left <= 0:
            break
        phase = "warmup" if epoch < cfg.warmup_epochs else ("settle" if settle_left is not None else "search")
        prune = (policy != "none" and settle_left is None and ops > 1
                 and is_pruning_epoch(epoch, cfg.prune_start, cfg.prune_interval))
        epochs.append((phase, ops, prune))
        if prune:
            ops = max(1, ops - cfg.prune_per_round)
        if settle_left is None and policy != "none" and ops == 1:
            settle_left = cfg.settle_epochs
        elif settle_left is not None and phase == "settle":
            settle_left -= 1
    return epochs


def _training_s(step_s: float, epochs: int, max_steps: int, steps_per_epoch: int, val_every_steps: int,
                eval_s: float) -> float:
    """Projected seconds of a ``fit``: its step cap and its V scorings (after each epoch, or every
    ``val_every_steps``)."""
    steps = max_steps or epochs * steps_per_epoch
    epochs_run = math.ceil(steps / max(steps_per_epoch, 1))
    scorings = epochs_run if not val_every_steps else max(1, steps // val_every_steps)
    return steps * step_s + scorings * eval_s


def projections(cfg: RetrainConfig, data: SearchData, times: dict[str, Any]) -> dict[str, float]:
    """Projected seconds of pre-training, full and pruned search, and re-training (see the module docstring)."""
    batch = cfg.batch_size
    train_slices = len(data.train_w[0]) + len(data.train_a[0])
    steps_per_epoch = math.ceil(train_slices / batch)
    w_steps = cfg.search_epoch_steps or math.ceil(len(data.train_w[0]) / batch)
    val_slices = len(data.val[0])
    out = {
        "pretrain": _training_s(times["backbone_step_s"], cfg.pretrain_epochs, cfg.pretrain_steps, steps_per_epoch,
                                cfg.val_every_steps, val_slices * times["backbone_eval_slice_s"]),
        "retrain": _training_s(times["discrete_step_s"], cfg.retrain_epochs, cfg.retrain_steps, steps_per_epoch,
                               cfg.val_every_steps, val_slices * times["discrete_eval_slice_s"]),
    }
    full, one = times["supernet_step_s"], times["supernet_pruned_step_s"]
    for policy, key in (("none", "search_full"), (cfg.policy if cfg.policy != "none" else "shapley", "search_pruned")):
        total = 0.0
        for phase, ops, prune in search_schedule(cfg, policy):
            step = times["supernet_weight_step_s"] if phase == "warmup" else one + (full - one) * (ops - 1) / 6
            total += w_steps * step + val_slices * times["supernet_eval_slice_s"]
            if prune:
                total += times["shapley_round_s"][cfg.shapley_estimator]
        out[key] = total
    out["total_pruned"] = out["pretrain"] + out["search_pruned"] + out["retrain"]
    return {key: round(value, 1) for key, value in out.items()}


def measure(cfg: RetrainConfig, device: torch.device, steps: int, mc_permutations: int) -> dict[str, Any]:
    """All the figures of one dataset and profile on ``device`` (see the module docstring)."""
    seed_everything(cfg.seed)
    policy = device_policy(device)
    configure_backends(policy)
    prepared = prepare_data(cfg)
    data = search_data(prepared)
    data = SearchData(*(tuple(keep_on_device(split, device, policy)) for split in (data.train_w, data.train_a,
                                                                                 data.val)), data.num_classes)
    in_channels, num_classes = len(prepared.spec.channel_names), data.num_classes
    train = tuple(torch.cat(parts) for parts in zip(data.train_w, data.train_a))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times: dict[str, Any] = {}

    net, _ = new_backbone(cfg.backbone, in_channels, num_classes, cfg.backbone_size, cfg.seed)
    net = channels_last_convs(net.to(device), policy)
    times["backbone_step_s"] = backbone_step_s(net, train, cfg.batch_size, steps, device, cfg.seed)
    times["backbone_eval_slice_s"] = per_slice_eval_s(net, data.val, num_classes, cfg.batch_size, device)

    model = channels_last_convs(search_supernet(cfg, adapt(copy.deepcopy(net)), device), policy)
    genotype = model.genotype()
    times["supernet_step_s"] = search_step_s(model, data, cfg, steps, True, device)
    times["supernet_weight_step_s"] = search_step_s(model, data, cfg, steps, False, device)
    times["supernet_eval_slice_s"] = per_slice_eval_s(model, data.val, num_classes, cfg.batch_size, device)
    times["shapley_round_s"] = shapley_round_s(model, data, cfg, mc_permutations, device)
    times["supernet_pruned_step_s"] = search_step_s(keep_top_op(model), data, cfg, steps, True, device)
    del model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        discrete = build_discrete(adapt(copy.deepcopy(net)), genotype, channels=cfg.cell_channels,
                                  k=cfg.partial_channels, **retrofit_options(cfg)).to(device)
    discrete = channels_last_convs(discrete.freeze_backbone(), policy)
    optimizer = torch.optim.Adam(discrete.weight_parameters(), lr=cfg.retrain_lr)
    batches = list(iterate_batches(*train, cfg.batch_size, torch_generator(cfg.seed), shuffle=True))
    batches = (batches * (steps + 2))[:steps + 2]
    scaler = grad_scaler(policy)
    weights = discrete.weight_parameters()

    def retrain(part: list) -> None:
        train_epoch(discrete, optimizer, dice_ce_loss(), weights, part, device, None, "", False, scaler)
    retrain(batches[:2])
    times["discrete_step_s"] = timed(lambda: retrain(batches[2:]), device) / steps
    times["discrete_eval_slice_s"] = per_slice_eval_s(discrete, data.val, num_classes, cfg.batch_size, device)

    steps_per_epoch = math.ceil(len(train[0]) / cfg.batch_size)
    w_steps = cfg.search_epoch_steps or math.ceil(len(data.train_w[0]) / cfg.batch_size)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {
        **{key: (round(value, 5) if isinstance(value, float) else value) for key, value in times.items()},
        "shapley_round_s": {key: round(value, 3) for key, value in times["shapley_round_s"].items()},
        "backbone_epoch_s": round(times["backbone_step_s"] * steps_per_epoch, 3),
        "supernet_epoch_s": round(times["supernet_step_s"] * w_steps, 3),
        "supernet_ratio": round(times["supernet_step_s"] / times["backbone_step_s"], 2),
        "slices_per_s": {"backbone": round(cfg.batch_size / times["backbone_step_s"], 1),
                         "supernet": round(2 * cfg.batch_size / times["supernet_step_s"], 1),
                         "discrete": round(cfg.batch_size / times["discrete_step_s"], 1)},
        "peak_memory_gib": None if peak is None else round(peak, 2),
        "projected_s": projections(cfg, data, times),
        "slices": {"train_w": len(data.train_w[0]), "train_a": len(data.train_a[0]), "val": len(data.val[0])},
        "steps_per_epoch": {"pretrain": steps_per_epoch, "search": w_steps},
        "search_epochs": {"full": len(search_schedule(cfg, "none")), "pruned": len(search_schedule(cfg, "shapley"))},
        "autocast": None if policy.autocast_dtype is None else str(policy.autocast_dtype).removeprefix("torch."),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the arguments, measure, print a table and the JSON line; returns the JSON object."""
    parser = benchmark_parser(__doc__)
    parser.set_defaults(profile="paper")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="auto: cuda when present (default: auto)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement (default: 5)")
    parser.add_argument("--mc-permutations", type=int, default=1,
                        help="antithetic permutation pairs of the timed mc round (default: 1)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    device = pick_device(args.device)
    measured = args.profile if device.type == "cuda" else "smoke"
    profile_args = copy.copy(args)
    profile_args.profile = measured
    cfg = benchmark_config(profile_args, RetrainConfig, fixed={"device": device.type})
    result = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
              else "cpu", "profile": args.profile, "profile_measured": measured, "dataset": args.dataset,
              "seed": args.seed, "slice_size": cfg.slice_size, "batch_size": cfg.batch_size,
              "backbone": f"{cfg.backbone}/{cfg.backbone_size}", "steps_timed": args.steps,
              "mc_permutations": args.mc_permutations, "threads": torch.get_num_threads(), "torch": torch.__version__,
              **measure(cfg, device, args.steps, args.mc_permutations)}
    result["wall_s"] = round(time.perf_counter() - start, 1)
    for key, value in result.items():
        print(f"{key:24} {value}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
