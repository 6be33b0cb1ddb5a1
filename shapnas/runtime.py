"""Seeding, device choice and the device's training policy, evaluation mode and provenance (versions).

The training policy (:func:`device_policy`) is what makes a CUDA run fast by construction: mixed precision
(bf16 autocast where the GPU supports it, fp16 with a gradient scaler otherwise), channels-last convolutions,
cuDNN autotuning and training slices kept on the GPU when they fit. On any other device every switch is off
and the helpers below are pass-throughs, so CPU results are exactly those of plain float32 code.
"""

from __future__ import annotations

import os
import platform
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import ContextManager

import numpy as np
import torch
from torch import nn

__all__ = ["seed_everything", "pick_device", "torch_generator", "eval_mode", "versions", "DevicePolicy",
           "policy_for", "device_policy", "autocast", "grad_scaler", "configure_backends", "to_batch",
           "channels_last_convs", "keep_on_device", "float32_region"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and ask torch for deterministic CPU kernels.

    Library code never relies on this global state (it draws from generators passed in); it is
    called once per process or notebook so that third-party code (e.g. weight init) is repeatable.

    Args:
        seed: the run's seed.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False


def pick_device(device: str = "auto") -> torch.device:
    """The torch device for a config's ``device`` field: ``auto`` picks ``cuda`` when present.

    Args:
        device: ``auto``, ``cpu`` or ``cuda[:i]``.

    Returns:
        The device.

    Raises:
        ValueError: ``cuda`` asked for on a machine without it.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but torch sees no CUDA device; use 'auto' or 'cpu'")
    return torch.device(device)


@dataclass(frozen=True)
class DevicePolicy:
    """How training and evaluation run on one kind of device.

    Attributes:
        device_type: ``cpu``, ``cuda``, ...
        autocast_dtype: the autocast dtype (``torch.bfloat16`` or ``torch.float16``), or None for float32.
        grad_scaler: scale the loss (fp16 gradients underflow without it).
        channels_last: convolution weights and image batches in channels-last memory format.
        cudnn_benchmark: let cuDNN time its algorithms for each new shape.
        resident_data: keep the training slices on the device when they fit.
    """

    device_type: str
    autocast_dtype: torch.dtype | None
    grad_scaler: bool
    channels_last: bool
    cudnn_benchmark: bool
    resident_data: bool

    @property
    def mixed_precision(self) -> bool:
        """Whether autocast is on."""
        return self.autocast_dtype is not None


def policy_for(device_type: str, bf16_supported: bool = False) -> DevicePolicy:
    """The policy of a device type (a pure function: the CUDA branch is testable without a GPU).

    Args:
        device_type: ``torch.device(...).type``.
        bf16_supported: whether the CUDA device computes in bfloat16 (ignored for other types).

    Returns:
        All switches on for ``cuda`` (bf16 autocast, or fp16 with a gradient scaler); all off otherwise.
    """
    if device_type != "cuda":
        return DevicePolicy(device_type, None, False, False, False, False)
    dtype = torch.bfloat16 if bf16_supported else torch.float16
    return DevicePolicy("cuda", dtype, not bf16_supported, True, True, True)


def device_policy(device: torch.device | str) -> DevicePolicy:
    """:func:`policy_for` the given device, asking CUDA whether it supports bfloat16.

    Args:
        device: a torch device (or its name).

    Returns:
        The device's :class:`DevicePolicy`.
    """
    device = torch.device(device)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return policy_for(device.type, bf16)


def autocast(policy: DevicePolicy) -> ContextManager:
    """``torch.autocast`` at the policy's dtype, or a no-op context when mixed precision is off."""
    if policy.autocast_dtype is None:
        return nullcontext()
    return torch.autocast(device_type=policy.device_type, dtype=policy.autocast_dtype)


def float32_region(x: torch.Tensor) -> ContextManager:
    """Autocast switched off for the block when ``x``'s device has autocast on; a no-op context otherwise.

    The search cells fold batch-norm statistics into small matrices (``E[y²] − E[y]²`` cancels), so they
    compute in float32 inside an autocast region.
    """
    if torch.is_autocast_enabled(x.device.type):
        return torch.autocast(device_type=x.device.type, enabled=False)
    return nullcontext()


def grad_scaler(policy: DevicePolicy) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 autocast (disabled, it passes ``scale``, ``unscale_``,
    ``step`` and ``update`` through to the plain calls)."""
    return torch.amp.GradScaler(policy.device_type if policy.grad_scaler else "cpu", enabled=policy.grad_scaler)


def configure_backends(policy: DevicePolicy) -> None:
    """Process-wide backend switches of the policy: cuDNN autotuning on for CUDA (nothing for other devices).

    Args:
        policy: the device's policy.
    """
    if policy.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True


def to_batch(images: torch.Tensor, device: torch.device, policy: DevicePolicy) -> torch.Tensor:
    """A (B, C, H, W) image batch on ``device``, channels-last if the policy says so (else unchanged).

    Args:
        images: (B, C, H, W).
        device: target device.
        policy: the device's policy.

    Returns:
        The batch on the device.
    """
    images = images.to(device, non_blocking=True)
    if policy.channels_last and images.dim() == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def channels_last_convs(module: nn.Module, policy: DevicePolicy) -> nn.Module:
    """Store the weights of the module's 2D convolutions channels-last when the policy says so.

    Only ``nn.Conv2d`` weights are touched (other 4-D parameters, e.g. the search cells' stacked depthwise
    kernels, keep their layout). Call it before building the optimiser.

    Args:
        module: any module.
        policy: the device's policy.

    Returns:
        ``module``.
    """
    if policy.channels_last:
        for conv in module.modules():
            if isinstance(conv, nn.Conv2d):
                conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
    return module


def keep_on_device(tensors: Sequence[torch.Tensor], device: torch.device, policy: DevicePolicy,
                   fraction: float = 0.5) -> list[torch.Tensor]:
    """The tensors moved to ``device`` when the policy keeps data resident and they take at most ``fraction`` of
    the device's free memory; otherwise unchanged (batches are then moved one at a time).

    Args:
        tensors: e.g. (images, labels) of a split.
        device: the training device.
        policy: the device's policy.
        fraction: share of the free device memory they may take. Defaults to 0.5.

    Returns:
        The tensors, on the device or where they were.
    """
    tensors = list(tensors)
    if not policy.resident_data or device.type != "cuda":
        return tensors
    need = sum(t.numel() * t.element_size() for t in tensors)
    free, _ = torch.cuda.mem_get_info(device)
    if need > fraction * free:
        return tensors
    return [t.to(device, non_blocking=True) for t in tensors]


def torch_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (batches, masks and permutations draw from it)."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``model`` in eval mode for the block and restore its previous mode afterwards, also when the
    block raises (a probe or an evaluation never leaves a training model in eval mode).

    Args:
        model: any module.

    Returns:
        A context manager yielding ``model`` (in eval mode).
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def versions() -> dict[str, str]:
    """Versions of Python and the key libraries, stored with every run for provenance."""
    import monai

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
        "cuda": torch.version.cuda or "none",
    }
