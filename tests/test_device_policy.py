"""The device policy (mixed precision, channels-last, resident data on CUDA) and the training loops that follow it:
off on CPU, where the loops give exactly what plain float32 loops give."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.networks.nets import BasicUNet

from shapnas.config.stage_configs import SearchConfig, config_from_profile
from shapnas.networks.backbones import adapt, build_backbone
from shapnas.networks.retrofit import build_supernet
from shapnas.runtime import (
    autocast,
    channels_last_convs,
    device_policy,
    float32_region,
    grad_scaler,
    keep_on_device,
    policy_for,
    to_batch,
)
from shapnas.search import loop
from shapnas.training.train import dice_ce_loss, iterate_batches, train_epoch


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_policy_is_off_on_cpu():
    policy = device_policy(torch.device("cpu"))
    assert policy == policy_for("cpu")
    assert policy.autocast_dtype is None and not policy.mixed_precision
    assert not (policy.grad_scaler or policy.channels_last or policy.cudnn_benchmark or policy.resident_data)
    assert not grad_scaler(policy).is_enabled()
    with autocast(policy):
        assert not torch.is_autocast_enabled("cpu")
    images = torch.randn(2, 3, 4, 4)
    assert to_batch(images, torch.device("cpu"), policy) is images
    tensors = [torch.zeros(3), torch.ones(2)]
    assert all(a is b for a, b in zip(keep_on_device(tensors, torch.device("cpu"), policy), tensors))


@pytest.mark.parametrize("bf16, dtype, scaler", [(True, torch.bfloat16, False), (False, torch.float16, True)])
def test_cuda_policy_without_a_gpu(bf16, dtype, scaler):
    policy = policy_for("cuda", bf16)
    assert policy.autocast_dtype == dtype and policy.grad_scaler == scaler
    assert policy.channels_last and policy.cudnn_benchmark and policy.resident_data


def test_channels_last_convs_touches_only_conv2d_weights():
    net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=2, features=(4, 4, 8, 8, 16, 4))
    model = build_supernet(adapt(net), generator=_gen(0))
    depthwise = dict(model.cells[0].edges.dw1.items())["sep_conv_3x3"]
    channels_last_convs(model, policy_for("cuda", True))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert depthwise.is_contiguous()  # the cells' stacked kernels keep their layout
    before = [p.clone() for p in model.parameters()]
    channels_last_convs(model, policy_for("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_float32_region_under_cpu_autocast():
    x = torch.randn(3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (x @ x).dtype == torch.bfloat16
        with float32_region(x):
            assert (x @ x).dtype == torch.float32


def test_search_cell_computes_in_float32_under_autocast():
    net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=2, features=(4, 4, 8, 8, 16, 4))
    model = build_supernet(adapt(net), generator=_gen(1)).train()
    skip = torch.randn(2, model.cells[0].in_channels, 8, 8, generator=_gen(2))
    arch = model.arch[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.cells[0](skip.bfloat16(), arch.op_probs(), arch.edge_probs(), arch.active)
    assert out.dtype == torch.float32


def _data(num: int, seed: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    return torch.randn(num, 1, size, size, generator=g), torch.randint(0, 3, (num, 1, size, size), generator=g)


def _plain_epoch(model, optimizer, batches, grad_clip) -> float:
    """The training loop as written before the device policy: Python float losses, no scaler, no autocast."""
    loss_fn, total = dice_ce_loss(), 0.0
    model.train()
    for images, labels in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), labels)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(list(model.parameters()), grad_clip)
        optimizer.step()
        total += float(loss.detach())
    return total / len(batches)


@pytest.mark.parametrize("grad_clip", [None, 0.5])
def test_train_epoch_on_cpu_equals_the_plain_loop(grad_clip):
    losses, states = [], []
    for _ in range(2):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=3, features=(4, 4, 8, 8, 16, 4))
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
        batches = list(iterate_batches(*_data(12, 3), 4, _gen(4)))
        losses.append([train_epoch(net, optimizer, dice_ce_loss(), list(net.parameters()), batches,
                                   torch.device("cpu"), grad_clip, "", False) if not states else
                       _plain_epoch(net, optimizer, batches, grad_clip) for _ in range(2)])
        states.append(net.state_dict())
    assert losses[0] == losses[1]  # to the last digit
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def _old_search_epoch(model, data, cfg, weight_opt, arch_opt, generator) -> tuple[float, float]:
    """The search epoch as written before: every step's backward through all parameters, Python float losses."""
    loss_fn = dice_ce_loss()
    model.train()
    weight_batches = loop._cycle(*data.train_w, cfg.batch_size, generator)
    arch_batches = loop._cycle(*data.train_a, cfg.batch_size, generator)
    weight_losses, arch_losses = [], []
    for _ in range(loop._epoch_steps(cfg, data)):
        images, labels = next(weight_batches)
        arch_images, arch_labels = next(arch_batches)
        arch_opt.zero_grad(set_to_none=True)
        arch_loss = loss_fn(model(arch_images), arch_labels)
        arch_loss.backward()
        arch_opt.step()
        arch_losses.append(arch_loss.detach().item())
        weight_opt.zero_grad(set_to_none=True)
        arch_opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.weight_parameters()), cfg.grad_clip)
        weight_opt.step()
        weight_losses.append(loss.detach().item())
    return float(np.mean(weight_losses)), float(np.mean(arch_losses))


def test_search_epoch_on_cpu_equals_the_plain_loop():
    """Frozen cell weights in the architecture step, device-side losses and the scalers change nothing on CPU."""
    cfg = config_from_profile(SearchConfig, "smoke", dataset="acdc", device="cpu").replace(search_epoch_steps=2)
    data = loop.SearchData(train_w=_data(8, 5), train_a=_data(8, 6), val=_data(4, 7), num_classes=3)
    results, states = [], []
    for new in (True, False):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = build_backbone("basic_unet", 1, 3, "tiny")[0]
        model = build_supernet(adapt(net), generator=_gen(8)).freeze_backbone()
        weight_opt, arch_opt, _ = loop.build_optimizers(model, cfg)
        runs = []
        for epoch in range(2):
            if new:
                runs.append(loop.train_search_epoch(model, data, cfg, weight_opt, arch_opt, True, _gen(epoch),
                                                    torch.device("cpu"), False))
            else:
                runs.append(_old_search_epoch(model, data, cfg, weight_opt, arch_opt, _gen(epoch)))
        results.append(runs)
        states.append(model.state_dict())
    assert results[0] == results[1]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_iterate_batches_moves_the_order_once_per_pass():
    images, labels = _data(10, 9)
    plain = [(images[i], labels[i]) for i in torch.randperm(10, generator=_gen(3)).split(4)]
    for (a, b), (c, d) in zip(iterate_batches(images, labels, 4, _gen(3)), plain):
        assert torch.equal(a, c) and torch.equal(b, d)


def test_cross_entropy_smoke_is_finite_under_cpu_autocast():
    """The loss is taken in float32 from autocast logits (what a CUDA step does with bf16)."""
    logits = torch.randn(2, 3, 4, 4, generator=_gen(10))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = F.conv2d(logits, torch.eye(3).view(3, 3, 1, 1))
    assert low.dtype == torch.bfloat16
    loss = dice_ce_loss()(low.float(), torch.randint(0, 3, (2, 1, 4, 4), generator=_gen(11)))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
