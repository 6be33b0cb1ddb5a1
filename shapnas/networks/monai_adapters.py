"""Skip adapters of the MONAI 2D U-Net families: each splits a net into its encoder, its skips and its decoder.

An adapter calls MONAI's own submodules in the order of the net's ``forward`` (``BasicUNet``, ``UNet``,
``AttentionUnet``, ``BasicUNetPlusPlus``), so that the retrofit can rewrite the skips while the encoder and
decoder stay the pre-trained ones; :func:`adapt` picks the adapter of a network, nnU-Net's included
(:class:`shapnas.networks.nnunet.NnUNetAdapter`, imported only when such a network is adapted).
"""

from __future__ import annotations

import torch
from monai.networks.layers.simplelayers import SkipConnection
from monai.networks.nets import AttentionUnet, BasicUNet, BasicUNetPlusPlus, UNet
from monai.networks.nets.attentionunet import AttentionLayer
from torch import nn

from shapnas.networks.skip_adapter import SkipAdapter, SkipTransform

__all__ = ["BasicUNetAdapter", "MonaiUNetAdapter", "AttentionUNetAdapter", "UNetPlusPlusAdapter", "adapt"]


def _out_channels(module: nn.Module) -> int:
    """Output channels of a block: those of its last convolution."""
    convs = [m for m in module.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    return int(convs[-1].out_channels)


class BasicUNetAdapter(SkipAdapter):
    """MONAI ``BasicUNet``: skips ``x0..x3`` (inputs 2 of ``upcat_1..upcat_4``), bottom ``x4``.

    Args:
        net: a 2D ``monai.networks.nets.BasicUNet``.
    """

    backbone_name = "basic_unet"

    def __init__(self, net: BasicUNet) -> None:
        super().__init__()
        if not isinstance(net.conv_0.conv_0.conv, nn.Conv2d):
            raise ValueError("BasicUNet adapter: expected spatial_dims=2")
        self.net = net
        self.skip_channels = [_out_channels(net.conv_0)] + [_out_channels(getattr(net, f"down_{k}")) for k in (1, 2, 3)]
        self.decoder_channels = [_out_channels(self._upcat(level).upsample) for level in range(4)]

    def _upcat(self, level: int) -> nn.Module:
        return getattr(self.net, f"upcat_{level + 1}")  # skip x_l enters upcat_{l+1}

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        x0 = self.net.conv_0(x)  # (B, f0, H, W)
        x1 = self.net.down_1(x0)  # (B, f1, H/2, W/2)
        x2 = self.net.down_2(x1)
        x3 = self.net.down_3(x2)
        x4 = self.net.down_4(x3)  # (B, f4, H/16, W/16)
        return [x0, x1, x2, x3], x4

    def up_feature(self, level: int, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        upcat = self._upcat(level)
        up = upcat.upsample(deep)  # (B, up_chns, H_l, W_l), as UpCat.forward
        if upcat.is_pad:  # odd edge lengths: MONAI pads the upsampled tensor by one (replicate)
            pad = [0] * 4
            for i in range(2):
                if skip.shape[-i - 1] != up.shape[-i - 1]:
                    pad[i * 2 + 1] = 1
            up = torch.nn.functional.pad(up, pad, "replicate")
        return up

    def merge(self, level: int, skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        return self._upcat(level).convs(torch.cat([skip, up], dim=1))  # u_{l+1} of BasicUNet.forward

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.final_conv(x)  # (B, out_channels, H, W)


class MonaiUNetAdapter(SkipAdapter):
    """MONAI ``UNet``: nested ``Sequential(down, SkipConnection(subblock), up)`` blocks.

    The skip of a level is its ``SkipConnection``'s input (the ``down`` output); the decoder computes
    ``up_k(cat([skip_k, inner], dim=1))`` as ``SkipConnection`` in mode ``cat`` does.

    Args:
        net: a 2D ``monai.networks.nets.UNet`` (or subclass keeping the block structure).
    """

    backbone_name = "unet"

    def __init__(self, net: UNet) -> None:
        super().__init__()
        if getattr(net, "dimensions", 2) != 2:
            raise ValueError(f"UNet adapter: spatial_dims={net.dimensions}; expected 2")
        self.net = net
        downs, ups, block = [], [], net.model
        while isinstance(block, nn.Sequential) and len(block) == 3 and isinstance(block[1], SkipConnection):
            if block[1].mode != "cat" or block[1].dim != 1:
                raise ValueError(f"UNet adapter: SkipConnection mode={block[1].mode!r} dim={block[1].dim}; "
                                 "expected mode 'cat' on dim 1")
            downs.append(block[0])
            ups.append(block[2])
            block = block[1].submodule
        if not downs:
            raise ValueError("UNet adapter: no Sequential(down, SkipConnection, up) block found")
        # plain lists: the modules stay registered once, under ``net``
        self._downs, self._ups, self._bottom = downs, ups, [block]
        self.skip_channels = [_out_channels(d) for d in downs]
        # the feature entering level l is the inner block's output, already at the skip's resolution
        self.decoder_channels = [_out_channels(m) for m in ups[1:] + [block]]

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        skips = []
        for down in self._downs:
            x = down(x)  # (B, c_k, H_k, W_k)
            skips.append(x)
        return skips, self._bottom[0](x)

    def up_feature(self, level: int, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return deep  # (B, c, H_l, W_l): UNet upsamples inside the up block of the level below

    def merge(self, level: int, skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        return self._ups[level](torch.cat([skip, up], dim=1))  # SkipConnection 'cat', then up


class AttentionUNetAdapter(SkipAdapter):
    """MONAI ``AttentionUnet`` (Oktay et al. 2018): ``Sequential(head, AttentionLayer chain, 1×1 conv)``.

    Each ``AttentionLayer`` computes ``up = upconv(submodule(x))``, ``att = attention(g=up, x=x)``,
    ``merge(cat([att, up]))``; its skip is its input ``x`` (the head's or the previous level's conv block
    output), :meth:`up_feature` the ``upconv`` output and :meth:`merge` the attention gate on the (rewritten)
    skip followed by the merge conv. The deepest layer's submodule, a conv block, gives the bottom.

    Args:
        net: a 2D ``monai.networks.nets.AttentionUnet``.
    """

    backbone_name = "attention_unet"

    def __init__(self, net: AttentionUnet) -> None:
        super().__init__()
        if getattr(net, "dimensions", 2) != 2:
            raise ValueError(f"AttentionUnet adapter: spatial_dims={net.dimensions}; expected 2")
        self.net = net
        layers, layer = [], net.model[1]
        while isinstance(layer, AttentionLayer):
            layers.append(layer)
            inner = layer.submodule
            layer = inner[1] if isinstance(inner, nn.Sequential) and len(inner) == 2 else None
        if not layers:
            raise ValueError("AttentionUnet adapter: no AttentionLayer after the head")
        # plain lists: the modules stay registered once, under ``net``
        self._layers = layers
        self._downs = [lay.submodule[0] for lay in layers[:-1]] + [layers[-1].submodule]
        self.skip_channels = [_out_channels(net.model[0])] + [_out_channels(d) for d in self._downs[:-1]]
        self.decoder_channels = [_out_channels(lay.upconv) for lay in layers]

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        x = self.net.model[0](x)  # (B, c_0, H, W)
        skips = []
        for down in self._downs:
            skips.append(x)  # (B, c_l, H_l, W_l): the input of AttentionLayer l
            x = down(x)  # strided conv block
        return skips, x  # bottom (B, c_L, H_L, W_L)

    def up_feature(self, level: int, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self._layers[level].upconv(deep)  # (B, c_l, H_l, W_l): ``fromlower``

    def merge(self, level: int, skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        layer = self._layers[level]
        gated = layer.attention(g=up, x=skip)  # (B, c_l, H_l, W_l): skip · ψ(up, skip)
        return layer.merge(torch.cat((gated, up), dim=1))  # (B, c_l, H_l, W_l)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.model[2](x)  # 1×1 conv to (B, out_channels, H, W)


class UNetPlusPlusAdapter(SkipAdapter):
    """MONAI ``BasicUNetPlusPlus`` (Zhou et al. DLMIA 2018) without deep supervision: skips the encoder outputs
    ``x_0_0..x_3_0``, bottom ``x_4_0``.

    The nested decoder reads each encoder output at several nodes (laterally at its own level, and upsampled
    into the first node one level up), so it is no level chain: :meth:`decode_with` rewrites each skip once
    (``transform(level, skip, None)``) and runs the whole nested decoder on the rewritten skips; the encoder
    path keeps the original ones. No decoder feature enters a level before its skip is read, so cells cannot
    take a decoder input (``supports_decoder_input`` False, ``decoder_channels`` empty).

    Args:
        net: a 2D ``monai.networks.nets.BasicUNetPlusPlus`` with ``deep_supervision=False``.
    """

    backbone_name = "basic_unet_plus_plus"
    supports_decoder_input = False

    def __init__(self, net: BasicUNetPlusPlus) -> None:
        super().__init__()
        if not isinstance(net.conv_0_0.conv_0.conv, nn.Conv2d):
            raise ValueError("BasicUNetPlusPlus adapter: expected spatial_dims=2")
        if net.deep_supervision:
            raise ValueError("BasicUNetPlusPlus adapter: deep_supervision=True; expected False (one output)")
        self.net = net
        self.skip_channels = [_out_channels(getattr(net, f"conv_{i}_0")) for i in range(4)]
        self.decoder_channels = []

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        n = self.net
        x_0_0 = n.conv_0_0(x)  # (B, f0, H, W)
        x_1_0 = n.conv_1_0(x_0_0)  # (B, f1, H/2, W/2)
        x_2_0 = n.conv_2_0(x_1_0)
        x_3_0 = n.conv_3_0(x_2_0)
        x_4_0 = n.conv_4_0(x_3_0)  # (B, f4, H/16, W/16)
        return [x_0_0, x_1_0, x_2_0, x_3_0], x_4_0

    def decode_with(self, skips: list[torch.Tensor], bottom: torch.Tensor, transform: SkipTransform) -> torch.Tensor:
        """The nested decoder of ``BasicUNetPlusPlus.forward`` reading ``transform(level, skip, None)`` wherever
        the forward reads the encoder output ``x_level_0``.

        Returns:
            Logits (B, out_channels, H, W) of the full-depth node ``x_0_4``.
        """
        n = self.net
        e0, e1, e2, e3 = (transform(level, skip, None) for level, skip in enumerate(skips))
        x_0_1 = n.upcat_0_1(e1, e0)  # (B, f0, H, W)
        x_1_1 = n.upcat_1_1(e2, e1)  # (B, f1, H/2, W/2)
        x_0_2 = n.upcat_0_2(x_1_1, torch.cat([e0, x_0_1], dim=1))
        x_2_1 = n.upcat_2_1(e3, e2)
        x_1_2 = n.upcat_1_2(x_2_1, torch.cat([e1, x_1_1], dim=1))
        x_0_3 = n.upcat_0_3(x_1_2, torch.cat([e0, x_0_1, x_0_2], dim=1))
        x_3_1 = n.upcat_3_1(bottom, e3)  # (B, f3, H/8, W/8)
        x_2_2 = n.upcat_2_2(x_3_1, torch.cat([e2, x_2_1], dim=1))
        x_1_3 = n.upcat_1_3(x_2_2, torch.cat([e1, x_1_1, x_1_2], dim=1))
        x_0_4 = n.upcat_0_4(x_1_3, torch.cat([e0, x_0_1, x_0_2, x_0_3], dim=1))  # (B, f5, H, W)
        return n.final_conv_0_4(x_0_4)  # (B, out_channels, H, W)


def adapt(net: nn.Module) -> SkipAdapter:
    """The :class:`SkipAdapter` of a MONAI backbone or of an nnU-Net network (``dynamic_network_architectures``:
    :class:`shapnas.networks.nnunet.NnUNetAdapter`); an adapter is returned unchanged.

    Raises:
        ValueError: for a network type without an adapter.
    """
    if isinstance(net, SkipAdapter):
        return net
    if type(net).__module__.startswith("dynamic_network_architectures."):
        from shapnas.networks.nnunet import NnUNetAdapter  # imports nnunetv2 only when used

        return NnUNetAdapter(net)
    adapters: list[tuple[type[nn.Module], type[SkipAdapter]]] = [
        (BasicUNet, BasicUNetAdapter), (UNet, MonaiUNetAdapter), (AttentionUnet, AttentionUNetAdapter),
        (BasicUNetPlusPlus, UNetPlusPlusAdapter)]
    for kind, adapter in adapters:
        if isinstance(net, kind):
            return adapter(net)
    raise ValueError(f"no skip adapter for {type(net).__name__}; expected MONAI BasicUNet, UNet, AttentionUnet, "
                     "BasicUNetPlusPlus or nnU-Net's PlainConvUNet / ResidualEncoderUNet")
