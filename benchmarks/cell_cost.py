"""Cost of a supernet training step relative to a backbone training step (method.md).

Times, on one batch, one SGD step of the backbone with all weights trained, and one weight step of the
retrofitted supernet (frozen backbone, cells on every skip) with all ops active, with 2 ops and with 1 op
per edge (ops kept at random, seeded), one no-grad coalition evaluation from cached encoder features
(what a Shapley round repeats), and one step of the re-training network (the discrete cell that the full
supernet's initial α derive, on every skip of the frozen backbone: ``discrete_step_ms``, ``discrete_ratio``).
``--naive`` also times the same supernet written with one PC-DARTS ``MixedOp`` per edge, the unfused reference. Repetitions are interleaved and the minimum is reported
(robust to other load on the machine; ``medians`` holds the medians). Prints a table; the last line is one
JSON object.

``parts`` splits the all-ops step (medians, ms, and ``share`` of the step): the frozen encoder (no
gradients), the frozen decoder's forward and its backward to the skips (input gradients only), each
level's cell forward and backward, and the rest (loss, SGD step); ``adam_step_ms`` is one Adam step on the
cell weights (the search's weight optimiser; its state is two tensors per weight). ``cell_kernels`` splits
the cells' forward and backward by kernel kind from the PyTorch profiler (self CPU time): depthwise
convolutions (the parametric ops), products with the 1×1 maps (preprocessing, the ops' pointwise convs,
the mixing of ops, edges, shuffle and projection folded into one matrix per node group, and the batch-norm
statistics' Gram matrices), pools, elementwise work on feature maps, and the small tensors of the
parameter side (folding, index plans) with the dispatch and autograd overhead.

    python benchmarks/cell_cost.py                       # tiny BasicUNet, 64×64, batch 16, 1 thread
    python benchmarks/cell_cost.py --backbone unet --slice 96 --naive
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from shapnas.networks.backbones import adapt, build_backbone
from shapnas.networks.cells import SearchCell
from shapnas.networks.genotype import derive_genotype, edge_list
from shapnas.networks.retrofit import RetrofitUNet, build_discrete, build_supernet


class NaiveCell(nn.Module):
    """A search cell as PC-DARTS writes it: one MixedOp per edge (weights copied from ``cell``)."""

    def __init__(self, cell: SearchCell) -> None:
        super().__init__()
        self.channels, self.num_nodes = cell.channels, cell.num_nodes
        self.preprocess = copy.deepcopy(cell.preprocess)
        self.ops = nn.ModuleList(cell.mixed_op(e) for e in range(cell.num_edges))
        self.project = copy.deepcopy(cell.project)

    def forward(self, x, op_weights, edge_weights, active):
        pre = self.preprocess(x)
        states = [pre[:, :self.channels], pre[:, self.channels:]]
        computed = [[o for o in range(1, active.shape[1]) if active[e, o]] for e in range(active.shape[0])]
        for node in range(self.num_nodes):
            states.append(sum(edge_weights[e] * self.ops[e](states[src], op_weights[e], computed[e])
                              for e, (n, src) in enumerate(edge_list(self.num_nodes)) if n == node))
        return self.project(torch.cat(states[2:], 1))


def keep_random_ops(model: RetrofitUNet, keep: int, generator: torch.Generator) -> None:
    """Prune every edge down to ``keep`` random non-``none`` ops."""
    arch = model.arch[0]
    num_edges, num_ops = arch.active.shape
    for edge in range(num_edges):
        kept = (torch.randperm(num_ops - 1, generator=generator)[:keep] + 1).tolist()
        for op in range(1, num_ops):
            if op not in kept:
                model.prune(edge, op)


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start)


def _median_ms(fns: dict[str, Callable[[], None]], reps: int, device: torch.device) -> dict[str, float]:
    """Median milliseconds of each function, repetitions interleaved (one untimed call first)."""
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {key: [] for key in fns}
    for _ in range(reps):
        for key, fn in fns.items():
            samples[key].append(timed(fn, device))
    return {key: statistics.median(values) for key, values in samples.items()}


def part_times(model: RetrofitUNet, images: torch.Tensor, labels: torch.Tensor, step: Callable[[], None],
               reps: int, device: torch.device) -> dict[str, Any]:
    """Medians (ms) of the parts of a supernet weight step and their shares of the step (see the docstring).

    Args:
        model: the supernet (frozen backbone, training mode).
        images: (B, C, H, W) batch. labels: (B, H, W) class ids.
        step: the full weight step.
        reps: interleaved repetitions.
        device: where the model lives.

    Returns:
        ``{part: ms}``, ``share`` (part / step), ``adam_step_ms``.
    """
    skips, bottom = model.encode(images)
    arch = model.arch[0]

    def mixing() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return arch.op_probs(), arch.edge_probs(), arch.active

    def decoder() -> None:  # the frozen decoder on the skips, backward to the skips only
        leaves = [skip.detach().requires_grad_(True) for skip in skips]
        x = bottom
        for level in reversed(range(len(leaves))):
            x = model.adapter.merge(level, leaves[level], model.adapter.up_feature(level, x, leaves[level]))
        F.cross_entropy(model.adapter.head(x), labels).backward()

    def cell(level: int, backward: bool) -> Callable[[], None]:
        def run() -> None:
            out = model.cells[level](skips[level], *mixing())
            if backward:
                out.backward(torch.ones_like(out))
        return run

    fns: dict[str, Callable[[], None]] = {"step": step, "encoder": lambda: model.encode(images), "decoder": decoder}
    for level in range(len(model.cells)):
        fns[f"cell{level}_forward"] = cell(level, False)
        fns[f"cell{level}_forward_backward"] = cell(level, True)
    adam = torch.optim.Adam(model.weight_parameters(), lr=1e-3)
    for param in model.weight_parameters():
        param.grad = torch.zeros_like(param)
    fns["adam_step"] = adam.step
    times = _median_ms(fns, reps, device)
    model.zero_grad(set_to_none=True)
    levels = range(len(model.cells))
    parts = {"encoder_ms": times["encoder"], "decoder_forward_backward_ms": times["decoder"]}
    for level in levels:
        parts[f"cell{level}_forward_ms"] = times[f"cell{level}_forward"]
        parts[f"cell{level}_backward_ms"] = times[f"cell{level}_forward_backward"] - times[f"cell{level}_forward"]
    parts["rest_ms"] = times["step"] - sum(parts.values())  # loss, SGD step, residual adds
    share = {key.removesuffix("_ms"): round(value / times["step"], 3) for key, value in parts.items()}
    share["cells"] = round(sum(times[f"cell{level}_forward_backward"] for level in levels) / times["step"], 3)
    return {**{key: round(value, 1) for key, value in parts.items()}, "step_ms": round(times["step"], 1),
            "share": share, "adam_step_ms": round(times["adam_step"], 2)}


def _kernel_kind(name: str, shapes: list, rows: int) -> str:
    """The kind of one profiled op (see ``cell_kernels`` in the module docstring)."""
    sizes = [math.prod(shape) for shape in shapes if isinstance(shape, list) and shape and
             all(isinstance(v, int) for v in shape)]
    if not sizes or max(sizes) < rows:
        return "small_tensors_and_overhead"
    if "conv" in name:
        weight = shapes[2] if "backward" in name else shapes[1]
        return "depthwise_conv" if len(weight) == 4 and weight[1] == 1 and weight[2] > 1 else "products_1x1"
    if name in ("aten::mm", "aten::addmm", "aten::bmm"):
        return "products_1x1"
    if "pool" in name or name in ("aten::maximum", "aten::where", "aten::eq"):
        return "pools"
    return "elementwise"


def cell_kernels(model: RetrofitUNet, images: torch.Tensor, reps: int = 3) -> dict[str, Any]:
    """Self CPU time (ms per cell pass, forward and backward, all levels) by kernel kind, and shares.

    Args:
        model: the supernet in training mode.
        images: (B, C, H, W) batch.
        reps: profiled passes.

    Returns:
        ``{kind: ms}`` and ``share``; an op counts as small when its largest tensor has fewer elements
        than the pixels of the smallest skip level.
    """
    skips, _ = model.encode(images)
    arch = model.arch[0]
    rows = min(skip.shape[0] * skip.shape[2] * skip.shape[3] for skip in skips)

    def run() -> None:
        for level, cell in enumerate(model.cells):
            out = cell(skips[level], arch.op_probs(), arch.edge_probs(), arch.active)
            out.backward(torch.ones_like(out))
    run()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(reps):
            run()
    model.zero_grad(set_to_none=True)
    kinds: dict[str, float] = {}
    for event in prof.key_averages(group_by_input_shape=True):
        kind = _kernel_kind(event.key, event.input_shapes, rows)
        kinds[kind] = kinds.get(kind, 0.0) + event.self_cpu_time_total / 1000 / reps
    total = sum(kinds.values())
    return {**{key: round(value, 1) for key, value in sorted(kinds.items())},
            "share": {key: round(value / total, 3) for key, value in sorted(kinds.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="basic_unet", choices=["basic_unet", "unet"])
    parser.add_argument("--size", default="tiny", choices=["tiny", "small", "paper"])
    parser.add_argument("--slice", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: leave the default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--naive", action="store_true", help="also time the per-edge MixedOp supernet")
    parser.add_argument("--no-parts", dest="parts", action="store_false",
                        help="skip the split of the step into parts and kernel kinds")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 1, args.slice, args.slice, generator=gen).to(device)
    labels = torch.randint(0, args.classes, (args.batch, args.slice, args.slice), generator=gen).to(device)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_backbone(args.backbone, 1, args.classes, args.size)[0].to(device)
    backbone = copy.deepcopy(net).train()
    backbone_opt = torch.optim.SGD(backbone.parameters(), lr=1e-3)
    models = {"full": build_supernet(adapt(net), generator=torch.Generator().manual_seed(1), residual="gate")}
    for name, keep in (("pruned2", 2), ("pruned1", 1)):
        models[name] = copy.deepcopy(models["full"])
        keep_random_ops(models[name], keep, torch.Generator().manual_seed(keep))
    optimisers = {}
    for name, model in models.items():
        model.to(device).freeze_backbone().train()
        with torch.no_grad():
            model.gates.fill_(0.1)
        optimisers[name] = torch.optim.SGD(model.weight_parameters(), lr=1e-3)

    arch = models["full"].arch[0]
    genotype = derive_genotype(arch.op_probs().detach().cpu(), arch.edge_probs().detach().cpu())
    discrete = build_discrete(adapt(copy.deepcopy(net)), genotype, generator=torch.Generator().manual_seed(1),
                              residual="gate").to(device).freeze_backbone().train()
    with torch.no_grad():
        discrete.gates.fill_(0.1)
    discrete_opt = torch.optim.SGD([p for p in discrete.parameters() if p.requires_grad], lr=1e-3)

    def discrete_step() -> None:
        discrete_opt.zero_grad(set_to_none=True)
        F.cross_entropy(discrete(images), labels).backward()
        discrete_opt.step()

    def backbone_step() -> None:
        backbone_opt.zero_grad(set_to_none=True)
        F.cross_entropy(backbone(images), labels).backward()
        backbone_opt.step()

    def supernet_step(name: str):
        def step() -> None:
            optimisers[name].zero_grad(set_to_none=True)
            F.cross_entropy(models[name](images), labels).backward()
            optimisers[name].step()
        return step

    features = models["full"].encode(images)

    def coalition_eval(name: str):
        def evaluate() -> None:
            model = models[name].eval()
            with torch.no_grad():
                model.decode_from(features, coalition=model.arch[0].active)
            model.train()
        return evaluate

    steps = {"backbone_step_ms": backbone_step, "supernet_step_ms": supernet_step("full"),
             "pruned2_step_ms": supernet_step("pruned2"), "pruned1_step_ms": supernet_step("pruned1"),
             "eval_full_ms": coalition_eval("full"), "eval_pruned2_ms": coalition_eval("pruned2"),
             "discrete_step_ms": discrete_step}
    if args.naive:
        naive = copy.deepcopy(models["full"])
        naive.cells = nn.ModuleList(NaiveCell(cell) for cell in naive.cells)
        naive_opt = torch.optim.SGD(naive.weight_parameters(), lr=1e-3)

        def naive_step() -> None:
            naive_opt.zero_grad(set_to_none=True)
            F.cross_entropy(naive(images), labels).backward()
            naive_opt.step()
        steps["naive_step_ms"] = naive_step

    samples: dict[str, list[float]] = {key: [] for key in steps}
    for key, fn in steps.items():  # warm-up
        fn()
    for _ in range(args.reps):
        for key, fn in steps.items():
            samples[key].append(timed(fn, device))
    best = {key: min(values) for key, values in samples.items()}
    medians = {key: statistics.median(values) for key, values in samples.items()}
    result: dict[str, Any] = {key: round(value, 2) for key, value in best.items()}
    result["ratio"] = round(best["supernet_step_ms"] / best["backbone_step_ms"], 2)
    result["pruned2_ratio"] = round(best["pruned2_step_ms"] / best["backbone_step_ms"], 2)
    result["full_over_pruned2"] = round(best["supernet_step_ms"] / best["pruned2_step_ms"], 2)
    result["discrete_ratio"] = round(best["discrete_step_ms"] / best["backbone_step_ms"], 2)
    if args.naive:
        result["naive_ratio"] = round(best["naive_step_ms"] / best["backbone_step_ms"], 2)
    result["medians"] = {key: round(value, 2) for key, value in medians.items()}
    result["medians"].update(ratio=round(medians["supernet_step_ms"] / medians["backbone_step_ms"], 2),
                             pruned2_ratio=round(medians["pruned2_step_ms"] / medians["backbone_step_ms"], 2))
    if args.parts:
        result["parts"] = part_times(models["full"], images, labels, steps["supernet_step_ms"], args.reps, device)
        result["cell_kernels"] = cell_kernels(models["full"], images)
    result.update(backbone=args.backbone, size=args.size, slice=args.slice, batch=args.batch,
                  threads=torch.get_num_threads(), device=str(device), torch=torch.__version__,
                  cell_widths=models["full"].cell_widths, discrete_genotype=str(genotype).replace("\n", "; "))
    for key, value in result.items():
        print(f"{key:22} {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
