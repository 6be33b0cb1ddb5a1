"""Cost of a supernet training step relative to a backbone training step (``stack.md`` §8, method.md).

Times, on one batch, one SGD step of the backbone with all weights trained, and one weight step of the
retrofitted supernet (frozen backbone, cells on every skip) with all ops active, with 2 ops and with 1 op
per edge (ops kept at random, seeded), and one no-grad coalition evaluation from cached encoder features
(what a Shapley round repeats). ``--naive`` also times the same supernet written with one PC-DARTS
``MixedOp`` per edge, the unfused reference. Repetitions are interleaved and the minimum is reported
(robust to other load on the machine). Prints a table; the last line is one JSON object.

    python benchmarks/cell_cost.py                       # tiny BasicUNet, 64×64, batch 16, 1 thread
    python benchmarks/cell_cost.py --backbone unet --slice 96 --naive
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

from shapnas.networks.backbones import adapt, build_backbone
from shapnas.networks.cells import SearchCell
from shapnas.networks.genotype import edge_list
from shapnas.networks.retrofit import RetrofitUNet, build_supernet


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
             "eval_full_ms": coalition_eval("full"), "eval_pruned2_ms": coalition_eval("pruned2")}
    if args.naive:
        naive = copy.deepcopy(models["full"])
        naive.cells = nn.ModuleList(NaiveCell(cell) for cell in naive.cells)
        naive_opt = torch.optim.SGD(naive.weight_parameters(), lr=1e-3)

        def naive_step() -> None:
            naive_opt.zero_grad(set_to_none=True)
            F.cross_entropy(naive(images), labels).backward()
            naive_opt.step()
        steps["naive_step_ms"] = naive_step

    best = {key: float("inf") for key in steps}
    for key, fn in steps.items():  # warm-up
        fn()
    for _ in range(args.reps):
        for key, fn in steps.items():
            best[key] = min(best[key], timed(fn, device))
    result = {key: round(value, 2) for key, value in best.items()}
    result["ratio"] = round(best["supernet_step_ms"] / best["backbone_step_ms"], 2)
    result["pruned2_ratio"] = round(best["pruned2_step_ms"] / best["backbone_step_ms"], 2)
    result["full_over_pruned2"] = round(best["supernet_step_ms"] / best["pruned2_step_ms"], 2)
    if args.naive:
        result["naive_ratio"] = round(best["naive_step_ms"] / best["backbone_step_ms"], 2)
    result.update(backbone=args.backbone, size=args.size, slice=args.slice, batch=args.batch,
                  threads=torch.get_num_threads(), device=str(device), torch=torch.__version__,
                  cell_widths=models["full"].cell_widths)
    for key, value in result.items():
        print(f"{key:22} {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
