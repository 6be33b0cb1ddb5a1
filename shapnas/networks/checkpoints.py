"""Self-describing model checkpoints (``model.pt``) of backbones and retrofitted networks.

A ``model.pt`` holds plain types and tensors only (``torch.load(..., weights_only=True)`` reads it)::

    {"kind": "backbone" | "retrofit", "backbone": backbone payload (name, init_args, state_dict),
     "genotype": genotype dict or None, "cell_channels": int, "state_dict": full model state,
     "spec": {channel_names, class_names, label_values, modality}, "slice_size": int, "config": dict}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from shapnas.networks.backbones import adapt, backbone_payload, net_from_payload
from shapnas.networks.genotype import Genotype
from shapnas.networks.retrofit import build_discrete, retrofit_options
from shapnas.runs.files import load_checkpoint, save_checkpoint

__all__ = ["spec_dict", "save_model", "load_model"]


def spec_dict(spec: Any) -> dict[str, Any]:
    """The parts of a :class:`~shapnas.data.layouts.DatasetSpec` a checkpoint needs, as plain types."""
    return {
        "name": spec.name,
        "channel_names": list(spec.channel_names),
        "class_names": list(spec.class_names),
        "label_values": [int(v) for v in spec.label_values],
        "modality": spec.modality,
        "eval_regions": {k: list(v) for k, v in spec.eval_regions.items()},
    }


def save_model(path: str | Path, *, kind: str, net: torch.nn.Module, backbone_name: str, init_args: dict[str, Any],
               model: torch.nn.Module | None = None, genotype: Genotype | None = None, cell_channels: int = 0,
               partial_channels: int = 4,
               spec: Any, slice_size: int, config: dict[str, Any]) -> Path:
    """Save a backbone (``kind='backbone'``) or a retrofitted discrete network (``kind='retrofit'``).

    Args:
        path: destination ``model.pt``.
        kind: ``backbone`` or ``retrofit``.
        net: the MONAI backbone (its state is stored in the backbone payload).
        backbone_name: a :data:`~shapnas.networks.backbones.BACKBONE_NAMES` name (``basic_unet``, ``unet`` …).
        init_args: the backbone's constructor arguments.
        model: the retrofitted network (kind ``retrofit``).
        genotype: its genotype (kind ``retrofit``).
        cell_channels: the cell width used to build it.
        partial_channels: the search's K (sets the per-level width when ``cell_channels`` is 0).
        spec: the dataset spec.
        slice_size: the slice size it was trained at.
        config: the stage config as a dict.

    Returns:
        The path written.
    """
    state = (model if model is not None else net).state_dict()
    return save_checkpoint(path, {
        "kind": kind,
        "backbone": backbone_payload(net, backbone_name, init_args),
        "genotype": genotype.to_dict() if genotype is not None else None,
        "cell_channels": int(cell_channels),
        "partial_channels": int(partial_channels),
        "state_dict": {k: v.detach().cpu() for k, v in state.items()},
        "spec": spec_dict(spec),
        "slice_size": int(slice_size),
        "config": config,
    })


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the network saved by :func:`save_model` (eval mode, on ``device``).

    Returns:
        (model, checkpoint dict without tensors' duplicates): a MONAI backbone for kind ``backbone``,
        a discrete :class:`~shapnas.networks.retrofit.RetrofitUNet` for kind ``retrofit``.
    """
    checkpoint = load_checkpoint(path)
    payload = checkpoint["backbone"]
    net = net_from_payload(payload)
    if checkpoint["kind"] == "backbone":
        model = net
    elif checkpoint["kind"] == "retrofit":
        genotype = Genotype.from_dict(checkpoint["genotype"])
        model = build_discrete(adapt(net), genotype, channels=int(checkpoint["cell_channels"]),
                               k=int(checkpoint.get("partial_channels", 4)),
                               **retrofit_options(checkpoint.get("config") or {}))
    else:
        raise ValueError(f"{path}: kind={checkpoint['kind']!r}; expected 'backbone' or 'retrofit'")
    model.load_state_dict(checkpoint["state_dict"])
    model.to(device).eval()
    return model, checkpoint
