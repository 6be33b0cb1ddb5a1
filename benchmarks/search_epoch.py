"""One supernet search epoch against one backbone training epoch, on the same data in the same process.

For the profile's config on one dataset: the backbone epoch trains every backbone weight on the training
patients (train-W ∪ train-A, as pre-training does); the supernet epoch is one PC-DARTS search epoch after
the warm-up (a weight step on a train-W batch and an architecture step on a train-A batch, all 8 ops on
every edge, frozen backbone), so both see the same slices. Each epoch is timed ``--repeats`` times,
interleaved, and the minimum is kept (robust to other load on the machine). A search epoch is
``search_epoch_steps`` weight steps (0: one pass over W), so it can be longer than a backbone epoch by
design. The last line is one JSON object with ``supernet_epoch_s``, ``backbone_epoch_s``, their ``ratio``
and ``search_train_s_estimate`` (epochs × supernet epoch: the full search's training time).

    python benchmarks/search_epoch.py --dataset acdc --profile workshop
"""

from __future__ import annotations

import json
import time

import torch

from shapnas.config.arguments import benchmark_config, benchmark_parser
from shapnas.config.stage_configs import SearchConfig
from shapnas.data.prepared import prepare_data
from shapnas.networks.backbones import adapt, new_backbone
from shapnas.pipeline import search_data, search_supernet
from shapnas.runtime import pick_device, seed_everything, torch_generator
from shapnas.search.loop import SearchData, build_optimizers, train_search_epoch
from shapnas.training.train import dice_ce_loss, iterate_batches, train_epoch


def backbone_epoch(net: torch.nn.Module, data: SearchData, cfg: SearchConfig, device: torch.device) -> float:
    """Seconds of one Adam epoch of the whole backbone over train-W ∪ train-A."""
    images = torch.cat([data.train_w[0], data.train_a[0]])  # (N, C, H, W)
    labels = torch.cat([data.train_w[1], data.train_a[1]])  # (N, 1, H, W)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.pretrain_lr)
    batches = list(iterate_batches(images, labels, cfg.batch_size, torch_generator(cfg.seed), shuffle=True))
    start = time.perf_counter()
    train_epoch(net, optimizer, dice_ce_loss(), list(net.parameters()), batches, device, None, "backbone", False)
    return time.perf_counter() - start


def supernet_epoch(model: torch.nn.Module, data: SearchData, cfg: SearchConfig, device: torch.device,
                   optimizers: tuple) -> float:
    """Seconds of one search epoch with architecture steps (all ops active)."""
    weight_opt, arch_opt, _ = optimizers
    start = time.perf_counter()
    train_search_epoch(model, data, cfg, weight_opt, arch_opt, True, torch_generator(cfg.seed), device, False)
    return time.perf_counter() - start


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs of each kind (default: 3)")
    args = parser.parse_args()
    cfg = benchmark_config(args, SearchConfig)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    prepared = prepare_data(cfg)
    data = search_data(prepared)
    in_channels, num_classes = len(prepared.spec.channel_names), len(prepared.spec.class_names)
    net, _ = new_backbone(cfg.backbone, in_channels, num_classes, cfg.backbone_size, cfg.seed)
    net.to(device)
    frozen, _ = new_backbone(cfg.backbone, in_channels, num_classes, cfg.backbone_size, cfg.seed)
    model = search_supernet(cfg, adapt(frozen.to(device)), device)
    optimizers = build_optimizers(model, cfg)
    backbone_epoch(net, data, cfg, device)  # warm-up of both (allocator, kernels), not timed
    supernet_epoch(model, data, cfg, device, optimizers)
    backbone_s, supernet_s = [], []
    for _ in range(args.repeats):
        backbone_s.append(backbone_epoch(net, data, cfg, device))
        supernet_s.append(supernet_epoch(model, data, cfg, device, optimizers))
    result = {
        "dataset": args.dataset, "profile": args.profile, "overrides": args.overrides, "device": str(device),
        "threads": torch.get_num_threads(), "slices_train": int(data.train_w[0].shape[0] + data.train_a[0].shape[0]),
        "slice_size": cfg.slice_size, "batch_size": cfg.batch_size,
        "weight_steps_per_epoch": cfg.search_epoch_steps or -(-int(data.train_w[0].shape[0]) // cfg.batch_size),
        "search_epochs": cfg.search_epochs,
        "backbone_epoch_s": min(backbone_s), "supernet_epoch_s": min(supernet_s),
        "ratio": min(supernet_s) / min(backbone_s),
    }
    result["search_train_s_estimate"] = result["supernet_epoch_s"] * cfg.search_epochs  # upper bound: all ops kept
    for key, value in result.items():
        print(f"{key:18} {value:.3f}" if isinstance(value, float) else f"{key:18} {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
