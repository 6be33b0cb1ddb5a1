"""The skip adapter: a U-Net seen as ``encode(x) -> (skips, bottom)`` and ``decode_with(skips, bottom, transform)``.

Every backbone's adapter subclasses :class:`SkipAdapter` (MONAI's in :mod:`shapnas.networks.monai_adapters`, nnU-Net's
in :mod:`shapnas.networks.nnunet`); it lives apart from both so that neither imports the other at import time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["SkipAdapter", "SkipTransform", "keep_skip"]

SkipTransform = Callable[[int, torch.Tensor, torch.Tensor | None], torch.Tensor]
"""``transform(level, skip, up) -> new skip`` (same shape as ``skip``); ``up`` is the decoder feature entering
the level, or None where the backbone has none (``BasicUNetPlusPlus``)."""


def keep_skip(level: int, skip: torch.Tensor, up: torch.Tensor | None) -> torch.Tensor:
    """The identity :data:`SkipTransform`: the backbone's own decoder."""
    return skip


class SkipAdapter(nn.Module, ABC):
    """A U-Net seen as ``encode(x) -> (skips, bottom)`` and ``decode_with(skips, bottom, transform) -> logits``.

    The default decoder runs level by level from the deepest: ``up = up_feature(level, deep, skip)``, then
    ``deep = merge(level, transform(level, skip, up), up)``; an adapter of such a backbone implements
    :meth:`up_feature` and :meth:`merge`, one whose decoder is not a level chain overrides :meth:`decode_with`.

    Attributes:
        net: the wrapped module (``adapter.net.state_dict()`` is the MONAI or nnU-Net state dict).
        skip_channels: channels of each skip tensor, full resolution first.
        decoder_channels: channels of the decoder feature entering each skip level (:meth:`up_feature`); empty
            when the backbone has no such feature.
        supports_decoder_input: whether a cell may read that decoder feature (``decoder_input``).
        backbone_name: the backbone's name (a ``BACKBONE_SIZES`` name of :mod:`shapnas.networks.backbones`, or
            ``nnunet``).
    """

    net: nn.Module
    skip_channels: list[int]
    decoder_channels: list[int]
    supports_decoder_input: bool = True
    backbone_name: str = ""

    @abstractmethod
    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Encoder: (B, C_in, H, W) -> (skips, full resolution first; bottom tensor)."""

    def up_feature(self, level: int, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """The decoder feature entering skip level ``level``, at the skip's resolution: ``deep`` (the
        decoder output one level down, or the bottom) upsampled as the backbone does. ``skip`` gives the shape."""
        raise NotImplementedError(f"{type(self).__name__}: no level-by-level decoder (see decode_with)")

    def merge(self, level: int, skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        """The decoder block of ``level`` on its skip and :meth:`up_feature`: the next ``deep`` tensor."""
        raise NotImplementedError(f"{type(self).__name__}: no level-by-level decoder (see decode_with)")

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from the last decoder output (identity unless the backbone has a final conv)."""
        return x

    def decode_with(self, skips: list[torch.Tensor], bottom: torch.Tensor, transform: SkipTransform) -> torch.Tensor:
        """The decoder with every skip replaced by ``transform(level, skip, up)`` where the decoder reads it.

        Args:
            skips: the encoder's skips, full resolution first (:meth:`encode`).
            bottom: the encoder's bottom tensor.
            transform: the new skip of a level from the skip and the decoder feature entering the level.

        Returns:
            Logits (B, out_channels, H, W).
        """
        x = bottom
        for level in reversed(range(len(skips))):
            skip = skips[level]
            up = self.up_feature(level, x, skip)  # (B, C_dec, H_l, W_l)
            x = self.merge(level, transform(level, skip, up), up)
        return self.head(x)

    def decode(self, skips: list[torch.Tensor], bottom: torch.Tensor) -> torch.Tensor:
        """Decoder: skips and bottom -> logits (B, out_channels, H, W), the skips unchanged."""
        return self.decode_with(skips, bottom, keep_skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(*self.encode(x))
