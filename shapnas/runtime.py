"""Seeding, device choice, evaluation mode and provenance (versions) shared by every stage."""

from __future__ import annotations

import os
import platform
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["seed_everything", "pick_device", "torch_generator", "eval_mode", "versions"]


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
