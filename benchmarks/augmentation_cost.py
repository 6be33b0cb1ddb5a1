"""Cost of training-time augmentation: one pre-training epoch with ``augmentation=none`` and with ``standard``.

For the profile's pre-training on one dataset (the workshop profile: tiny BasicUNet, 64-pixel slices, batches of
16, on the phantom data unless ``--data-dir``): one Adam epoch of the whole backbone over the training slices
(train-W ∪ train-A, as pre-training reads them), the same batches in the same order for both policies, each
epoch timed ``--repeats`` times, the two policies interleaved, after one untimed epoch of each (allocator,
kernels). ``augment_batch_ms`` times the augmentation alone on one batch (median of ``--repeats``).
``augmentation_overhead`` is the minimum ``standard`` epoch over the minimum ``none`` epoch, minus 1 (the target
is at most 0.15); ``overhead_median`` the same with medians, ``overhead_cpu`` with the process's CPU seconds (all
threads; it does not grow while other jobs hold the cores, so it survives a busy machine). Prints a table; the
last line is one JSON object.

    OMP_NUM_THREADS=2 python benchmarks/augmentation_cost.py --dataset acdc --profile workshop
"""

from __future__ import annotations

import json
import statistics
import time

import torch

from shapnas.config.arguments import benchmark_config, benchmark_parser
from shapnas.config.stage_configs import PretrainConfig
from shapnas.data.prepared import prepare_data
from shapnas.networks.backbones import new_backbone
from shapnas.runtime import pick_device, seed_everything, torch_generator
from shapnas.training.augmentation import BatchAugmenter, build_augmenter
from shapnas.training.train import dice_ce_loss, iterate_batches, train_epoch

POLICIES = ("none", "standard")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA), so that a timer reads finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def epoch_seconds(net: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: list, device: torch.device,
                  augmenter: BatchAugmenter | None, seed: int) -> tuple[float, float]:
    """Seconds of one training epoch over ``batches`` (augmented by ``augmenter`` unless None).

    Args:
        net: the backbone, trained in place.
        optimizer: Adam on its weights.
        batches: (images (B, C, H, W), labels (B, 1, H, W)) pairs.
        device: where the net lives.
        augmenter: the ``standard`` augmenter, or None.
        seed: seed of the augmentation's generator.

    Returns:
        (wall-clock seconds, the process's CPU seconds).
    """
    synchronize(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    train_epoch(net, optimizer, dice_ce_loss(), list(net.parameters()), batches, device, None, "epoch", False,
                augmenter=augmenter, generator=torch_generator(seed))
    synchronize(device)
    return time.perf_counter() - start, time.process_time() - start_cpu


def augment_ms(augmenter: BatchAugmenter, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device,
               repeats: int) -> float:
    """Median milliseconds of augmenting one batch on ``device``."""
    images, labels = batch[0].to(device), batch[1].to(device)
    generator, times = torch_generator(0), []
    for _ in range(repeats + 1):
        synchronize(device)
        start = time.perf_counter()
        augmenter(images, labels, generator)
        synchronize(device)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times[1:])


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs of each policy (default: 5)")
    args = parser.parse_args()
    cfg = benchmark_config(args, PretrainConfig)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    data = prepare_data(cfg)
    images, labels = data.training_slices()  # (N, C, H, W), (N, 1, H, W)
    net, _ = new_backbone(cfg.backbone, len(data.spec.channel_names), len(data.spec.class_names), cfg.backbone_size,
                          cfg.seed)
    net.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.pretrain_lr)
    batches = list(iterate_batches(images, labels, cfg.batch_size, torch_generator(cfg.seed), shuffle=True))
    augmenters = {policy: build_augmenter(policy, cfg.dataset) for policy in POLICIES}
    times: dict[str, list[float]] = {policy: [] for policy in POLICIES}
    cpu: dict[str, list[float]] = {policy: [] for policy in POLICIES}
    for repeat in range(args.repeats + 1):  # the first round warms up, untimed
        for policy in POLICIES:
            seconds, cpu_seconds = epoch_seconds(net, optimizer, batches, device, augmenters[policy], cfg.seed + repeat)
            if repeat:
                times[policy].append(seconds)
                cpu[policy].append(cpu_seconds)
    low = {policy: min(times[policy]) for policy in POLICIES}
    mid = {policy: statistics.median(times[policy]) for policy in POLICIES}
    low_cpu = {policy: min(cpu[policy]) for policy in POLICIES}
    result = {
        "dataset": args.dataset, "profile": args.profile, "overrides": args.overrides, "device": str(device),
        "threads": torch.get_num_threads(), "slices_train": int(images.shape[0]), "channels": int(images.shape[1]),
        "slice_size": cfg.slice_size, "batch_size": cfg.batch_size, "batches": len(batches),
        "repeats": args.repeats, "none_epoch_s": low["none"], "standard_epoch_s": low["standard"],
        "none_median_s": mid["none"], "standard_median_s": mid["standard"],
        "none_cpu_s": low_cpu["none"], "standard_cpu_s": low_cpu["standard"],
        "augment_batch_ms": augment_ms(augmenters["standard"], batches[0], device, args.repeats),
        "augmentation_overhead": low["standard"] / low["none"] - 1,
        "overhead_median": mid["standard"] / mid["none"] - 1,
        "overhead_cpu": low_cpu["standard"] / low_cpu["none"] - 1,
    }
    for key, value in result.items():
        print(f"{key:22} {value:.4f}" if isinstance(value, float) else f"{key:22} {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
