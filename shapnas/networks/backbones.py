"""MONAI 2D U-Net backbones: their sizes, construction, checkpoints and the parameters a control tunes.

The families are MONAI's ``BasicUNet``, ``UNet``, ``AttentionUnet`` and ``BasicUNetPlusPlus``; their skip adapters
(``encode(x) -> (skips, bottom)`` and ``decode_with(skips, bottom, transform)``) live in
:mod:`shapnas.networks.monai_adapters` and are re-exported here. A trained nnU-Net v2 2D model is the
loadable-only backbone ``nnunet`` (:mod:`shapnas.networks.nnunet`, imported only when such a model is loaded or
adapted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from monai.networks.nets import AttentionUnet, BasicUNet, BasicUNetPlusPlus, UNet
from torch import nn

from shapnas.networks.monai_adapters import (
    AttentionUNetAdapter,
    BasicUNetAdapter,
    MonaiUNetAdapter,
    UNetPlusPlusAdapter,
    adapt,
)
from shapnas.networks.skip_adapter import SkipAdapter, SkipTransform

__all__ = [
    "BACKBONE_SIZES", "BACKBONE_NAMES", "build_backbone", "new_backbone", "net_from_payload", "SkipAdapter",
    "BasicUNetAdapter", "MonaiUNetAdapter", "AttentionUNetAdapter", "UNetPlusPlusAdapter", "UNetPlusPlusLogits",
    "SkipTransform", "adapt", "backbone_payload", "load_backbone", "norm_and_bias_parameters", "NNUNET",
]

BACKBONE_SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "basic_unet": {
        "micro": {"features": [4, 4, 8, 16, 32, 4]},  # capacity-limited CPU backbone (does a narrower backbone leave room for the cells?)
        "tiny": {"features": [8, 8, 16, 32, 64, 8]},  # CPU workshop
        "small": {"features": [16, 16, 32, 64, 128, 16]},
        "paper": {"features": [32, 32, 64, 128, 256, 32]},  # MONAI default
    },
    "unet": {
        "micro": {"channels": [4, 8, 16, 32], "strides": [2, 2, 2], "num_res_units": 1},
        "tiny": {"channels": [8, 16, 32, 64], "strides": [2, 2, 2], "num_res_units": 1},
        "small": {"channels": [16, 32, 64, 128], "strides": [2, 2, 2], "num_res_units": 2},
        "paper": {"channels": [32, 64, 128, 256, 512], "strides": [2, 2, 2, 2], "num_res_units": 2},
    },
    # the widths of ``unet`` (3 skips up to ``small``, 4 at ``paper``); batch norms, one conv block per level
    "attention_unet": {
        "micro": {"channels": [4, 8, 16, 32], "strides": [2, 2, 2]},
        "tiny": {"channels": [8, 16, 32, 64], "strides": [2, 2, 2]},
        "small": {"channels": [16, 32, 64, 128], "strides": [2, 2, 2]},
        "paper": {"channels": [32, 64, 128, 256, 512], "strides": [2, 2, 2, 2]},
    },
    # the widths of ``basic_unet``; the nested decoder has 10 UpCat nodes instead of 4 (about 1.2x the weights)
    "basic_unet_plus_plus": {
        "micro": {"features": [4, 4, 8, 16, 32, 4]},
        "tiny": {"features": [8, 8, 16, 32, 64, 8]},
        "small": {"features": [16, 16, 32, 64, 128, 16]},
        "paper": {"features": [32, 32, 64, 128, 256, 32]},
    },
}
"""Constructor keyword arguments of each MONAI backbone (``spatial_dims=2``) per size."""
BACKBONE_NAMES: tuple[str, ...] = tuple(BACKBONE_SIZES)
NNUNET = "nnunet"
"""The loadable-only backbone: a trained nnU-Net v2 2D model (:mod:`shapnas.networks.nnunet`), never built here."""

_MAX_LISTED = 5

class UNetPlusPlusLogits(BasicUNetPlusPlus):
    """MONAI ``BasicUNetPlusPlus`` without deep supervision whose ``forward`` returns the logits tensor
    (B, out_channels, H, W) rather than MONAI's one-element list; the modules and state dict are MONAI's.

    Args:
        **kwargs: ``BasicUNetPlusPlus``'s constructor arguments (``deep_supervision`` must stay False).

    Raises:
        ValueError: for ``deep_supervision=True`` (four outputs, where the pipeline trains one).
    """

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("deep_supervision", False):
            raise ValueError("basic_unet_plus_plus: deep_supervision=True; expected False (one output)")
        super().__init__(**kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, out_channels, H, W) of the full-depth node ``x_0_4``."""
        return super().forward(x)[0]


_CLASSES: dict[str, type[nn.Module]] = {"basic_unet": BasicUNet, "unet": UNet, "attention_unet": AttentionUnet,
                                        "basic_unet_plus_plus": UNetPlusPlusLogits}


def _construct(name: str, init_args: dict[str, Any]) -> nn.Module:
    """``_CLASSES[name](**init_args)`` with lists turned into the tuples MONAI expects."""
    return _CLASSES[name](**{k: tuple(v) if isinstance(v, list) else v for k, v in init_args.items()})


def build_backbone(name: str, in_channels: int, out_channels: int, size: str) -> tuple[nn.Module, dict[str, Any]]:
    """A freshly initialised MONAI 2D backbone (its init draws from the global torch RNG).

    Args:
        name: ``basic_unet`` (MONAI ``BasicUNet``), ``unet`` (MONAI ``UNet``), ``attention_unet`` (MONAI
            ``AttentionUnet``) or ``basic_unet_plus_plus`` (MONAI ``BasicUNetPlusPlus`` without deep
            supervision, as :class:`UNetPlusPlusLogits`).
        in_channels: image channels.
        out_channels: classes including background.
        size: ``micro``, ``tiny``, ``small`` or ``paper`` (:data:`BACKBONE_SIZES`).

    Returns:
        (net, init_args): the net and its constructor arguments as plain types (lists, ints).
    """
    if name not in BACKBONE_SIZES:
        raise ValueError(f"backbone {name!r}; expected one of {', '.join(BACKBONE_SIZES)}")
    if size not in BACKBONE_SIZES[name]:
        raise ValueError(f"backbone size {size!r}; expected one of {', '.join(BACKBONE_SIZES[name])}")
    init_args = {"spatial_dims": 2, "in_channels": int(in_channels), "out_channels": int(out_channels),
                 **{k: list(v) if isinstance(v, (list, tuple)) else v for k, v in BACKBONE_SIZES[name][size].items()}}
    return _construct(name, init_args), init_args


def new_backbone(name: str, in_channels: int, out_channels: int, size: str,
                 seed: int) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`build_backbone` with its init drawn from a forked RNG seeded with ``seed`` (the global torch RNG
    is left untouched).

    Returns:
        (net, init_args) as :func:`build_backbone`.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_backbone(name, in_channels, out_channels, size)


def net_from_payload(payload: dict[str, Any]) -> nn.Module:
    """The backbone stored in a :func:`backbone_payload` (``name``, ``init_args``, ``state_dict``): a MONAI net, or
    for ``nnunet`` the network nnU-Net builds from the stored plans
    (:func:`shapnas.networks.nnunet.nnunet_from_init_args`; the user's results folder is not read).

    Raises:
        ValueError: for a backbone name without a class.
    """
    if payload.get("name") == NNUNET:
        from shapnas.networks.nnunet import nnunet_from_init_args  # imports nnunetv2 only when used

        net = nnunet_from_init_args(payload["init_args"])
    elif payload.get("name") in _CLASSES:
        net = _construct(payload["name"], payload["init_args"])
    else:
        raise ValueError(f"backbone name {payload.get('name')!r}; expected one of {', '.join(_CLASSES)} or {NNUNET}")
    net.load_state_dict(payload["state_dict"])
    return net


_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def norm_and_bias_parameters(net: nn.Module) -> list[nn.Parameter]:
    """The parameters a parameter-efficient control tunes: every normalisation layer's affine weight and bias and
    every other layer's bias (BitFit, Ben Zaken et al. ACL 2022, with the norms' scales, as is usual for
    convolutional nets); each once, in ``net.parameters()`` order.

    Args:
        net: a backbone (MONAI ``BasicUNet``, ``BasicUNetPlusPlus``: instance norms with affine parameters;
            ``AttentionUnet``: batch norms; ``UNet``: biases and PReLU slopes are left out, its instance norms
            carry no affine parameters).

    Returns:
        The parameters (about 1 % of the tiny BasicUNet's, 0.6 % of the tiny UNet's).
    """
    chosen: set[int] = set()
    for module in net.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if isinstance(module, _NORMS) or name == "bias":
                chosen.add(id(parameter))
    return [p for p in net.parameters() if id(p) in chosen]


def backbone_payload(net: nn.Module, name: str, init_args: dict[str, Any]) -> dict[str, Any]:
    """The backbone as plain types and tensors (``torch.load(..., weights_only=True)`` reads it).

    Returns:
        ``{"name": name, "init_args": init_args (lists for tuples), "state_dict": CPU tensors}``.
    """
    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in init_args.items()}
    return {"name": name, "init_args": plain, "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}}


def _listing(items: list[str]) -> str:
    more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return ", ".join(items[:_MAX_LISTED]) + more


def _check_state(path: Path, net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """ValueError naming missing/unexpected keys and shape mismatches between ``state`` and ``net``."""
    own = net.state_dict()
    problems = []
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs expected {tuple(v.shape)}"
              for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch: {_listing(shapes)}")
    if problems:
        raise ValueError(f"{path}: state_dict does not match {type(net).__name__}(init_args): " + "; ".join(problems))


def _looks_like_nnunet(path: Path) -> bool:
    """Whether ``path`` sits where nnU-Net writes checkpoints: ``<results folder>/fold_K/`` beside ``plans.json``."""
    return path.parent.name.startswith("fold_") and (path.parent.parent / "plans.json").is_file()


def load_backbone(path: str | Path, expected_in: int | None = None, expected_out: int | None = None,
                  backbone: str | None = None) -> tuple[nn.Module, str, dict[str, Any]]:
    """Load a 2D MONAI backbone checkpoint (``torch.load(..., weights_only=True)``), or a trained nnU-Net v2 2D
    model, validated.

    Accepted formats (a dict saved with ``torch.save``):

    - a user's own: ``{"backbone": one of BACKBONE_NAMES, "init_args": {constructor kwargs},
      "state_dict": net.state_dict()}``; ``init_args`` are the MONAI constructor arguments
      (``in_channels``, ``out_channels``, ``features`` or ``channels``/``strides``/``num_res_units`` …),
      ``spatial_dims`` must be 2 (filled in when absent); a ``module.`` key prefix is stripped;
    - :func:`backbone_payload` (``{"name", "init_args", "state_dict"}``);
    - a shapnas ``model.pt`` holding such a payload under ``"backbone"``;
    - an nnU-Net v2 checkpoint ``<results folder>/fold_K/checkpoint_final.pth`` (with ``backbone='nnunet'``, or
      recognised by its ``fold_K`` folder beside ``plans.json``): loaded with nnU-Net's own code,
      :func:`shapnas.networks.nnunet.load_nnunet_backbone` (name ``nnunet``).

    Args:
        path: the checkpoint file.
        expected_in: the dataset's image channels, checked against ``in_channels`` when given.
        expected_out: the dataset's classes, checked against ``out_channels`` when given.
        backbone: the configured backbone name; ``nnunet`` reads ``path`` as an nnU-Net checkpoint. Defaults to
            None (recognised from the path).

    Returns:
        (net in eval mode on CPU, backbone name, init_args as plain types).

    Raises:
        ValueError: naming the file and what does not match.
    """
    path = Path(path)
    if backbone == NNUNET or _looks_like_nnunet(path):
        from shapnas.networks.nnunet import load_nnunet_backbone  # imports nnunetv2 only when used

        net, name, init_args = load_nnunet_backbone(path, expected_in, expected_out)
        return net.eval(), name, init_args
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - re-raised with the path
        raise ValueError(f"{path}: cannot read checkpoint ({error})") from error
    if isinstance(data, dict) and isinstance(data.get("backbone"), dict):
        data = data["backbone"]
    if not isinstance(data, dict) or "state_dict" not in data or "init_args" not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: found {keys}; expected a dict with 'backbone' ({'|'.join(_CLASSES)}), "
                         "'init_args' and 'state_dict'")
    name = data.get("backbone", data.get("name"))
    if name not in _CLASSES:
        raise ValueError(f"{path}: backbone {name!r}; expected one of {', '.join(_CLASSES)}")
    init_args = {k: list(v) if isinstance(v, tuple) else v for k, v in dict(data["init_args"]).items()}
    init_args.setdefault("spatial_dims", 2)
    if init_args["spatial_dims"] != 2:
        raise ValueError(f"{path}: spatial_dims={init_args['spatial_dims']}; expected 2 (2D slices)")
    for key, expected in (("in_channels", expected_in), ("out_channels", expected_out)):
        if expected is not None and init_args.get(key) != expected:
            raise ValueError(f"{path}: {key}={init_args.get(key)}; the dataset needs {expected}")
    try:
        net = _construct(name, init_args)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: cannot build {name} from init_args {init_args} ({error})") from error
    state = {k.removeprefix("module."): v for k, v in data["state_dict"].items()}
    _check_state(path, net, state)
    net.load_state_dict(state)
    return net.eval(), name, init_args
