"""MONAI ``AttentionUnet`` and ``BasicUNetPlusPlus`` as retrofit backbones: adapters reproducing the nets exactly,
cells implanted on their skips (exact at implant time), checkpoints, and the options they cannot take."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import AttentionUnet, BasicUNetPlusPlus

from shapnas.networks.backbones import (
    BACKBONE_NAMES,
    BACKBONE_SIZES,
    AttentionUNetAdapter,
    UNetPlusPlusAdapter,
    UNetPlusPlusLogits,
    adapt,
    backbone_payload,
    build_backbone,
    load_backbone,
    norm_and_bias_parameters,
)
from shapnas.networks.genotype import Genotype
from shapnas.networks.retrofit import RetrofitUNet, build_discrete, build_supernet

NAMES = ["attention_unet", "basic_unet_plus_plus"]
ADAPTERS = {"attention_unet": AttentionUNetAdapter, "basic_unet_plus_plus": UNetPlusPlusAdapter}
E, P = 14, 8
GENOTYPE = Genotype(edges=((0, 0, "sep_conv_3x3"), (0, 1, "skip_connect"), (1, 0, "max_pool_3x3"),
                           (1, 2, "dil_conv_5x5"), (2, 1, "avg_pool_3x3"), (2, 3, "sep_conv_5x5"),
                           (3, 0, "dil_conv_3x3"), (3, 4, "skip_connect")))
# spatial sizes each net takes: AttentionUnet's transposed convs need H, W divisible by 2^levels (MONAI does not
# pad); BasicUNetPlusPlus pads its upsampled features, so odd edges work (33: 16 -> 32 + 1; 40: 5 -> 2 -> 4 + 1)
SIZES = {"attention_unet": [32, 40], "basic_unet_plus_plus": [32, 33, 40]}
CASES = [(name, spatial) for name in NAMES for spatial in SIZES[name]]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _net(name: str, size: str = "micro", seed: int = 0) -> torch.nn.Module:
    """A seeded backbone (1 image channel, 3 classes) in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_backbone(name, 1, 3, size)[0].eval()


def _x(spatial: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(2, 1, spatial, spatial, generator=_gen(seed))  # (B, C, H, W)


def _perturb_projections(model: RetrofitUNet, seed: int = 4) -> None:
    """Give every cell a non-zero output projection, so that the cells change the skips."""
    with torch.no_grad():
        for level, cell in enumerate(model.cells):
            cell.project.weight.normal_(generator=_gen(seed + level))


@pytest.mark.parametrize("name, spatial", CASES)
@pytest.mark.parametrize("size", ["micro", "tiny"])
def test_adapter_reproduces_the_net(name, size, spatial):
    net = _net(name, size)
    adapter = adapt(net)
    assert isinstance(adapter, ADAPTERS[name]) and adapter.backbone_name == name
    x = _x(spatial)
    with torch.no_grad():
        expected = net(x)
        skips, bottom = adapter.encode(x)
        assert torch.equal(adapter.decode(*adapter.encode(x)), expected)
        assert torch.equal(adapter(x), expected)
    assert expected.shape == (2, 3, spatial, spatial)
    assert [s.shape[1] for s in skips] == adapter.skip_channels
    edges = [s.shape[-1] for s in skips]
    assert edges == sorted(edges, reverse=True) and edges[0] == spatial, "full resolution first"
    assert bottom.shape[-1] < edges[-1]


def test_skip_and_decoder_channels():
    attention, plus = adapt(_net("attention_unet", "tiny")), adapt(_net("basic_unet_plus_plus", "tiny"))
    assert attention.skip_channels == [8, 16, 32] and attention.decoder_channels == [8, 16, 32]
    assert plus.skip_channels == [8, 8, 16, 32] and plus.decoder_channels == []
    assert attention.supports_decoder_input and not plus.supports_decoder_input
    with torch.no_grad():
        skips, bottom = attention.encode(_x())
        deep = bottom
        for level in reversed(range(len(skips))):  # the decoder feature entering each level: the skip's size
            up = attention.up_feature(level, deep, skips[level])
            assert up.shape == (2, attention.decoder_channels[level], *skips[level].shape[2:])
            deep = attention.merge(level, skips[level], up)


def test_plain_monai_nets_adapt_too():
    """A MONAI ``BasicUNetPlusPlus`` (list output) and ``AttentionUnet`` built by hand get the same adapters."""
    plus = BasicUNetPlusPlus(spatial_dims=2, in_channels=1, out_channels=3, features=(4, 4, 8, 16, 32, 4)).eval()
    attention = AttentionUnet(spatial_dims=2, in_channels=1, out_channels=3, channels=(4, 8), strides=(2,)).eval()
    x = _x()
    with torch.no_grad():
        assert torch.equal(adapt(plus)(x), plus(x)[0])
        assert torch.equal(adapt(attention)(x), attention(x))
    assert adapt(attention).skip_channels == [4]
    supervised = BasicUNetPlusPlus(spatial_dims=2, features=(4, 4, 8, 16, 32, 4), deep_supervision=True)
    with pytest.raises(ValueError, match="deep_supervision=True"):
        adapt(supervised)
    with pytest.raises(ValueError, match="deep_supervision=True"):
        UNetPlusPlusLogits(spatial_dims=2, features=(4, 4, 8, 16, 32, 4), deep_supervision=True)
    with pytest.raises(ValueError, match="spatial_dims"):
        adapt(AttentionUnet(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,)))


def test_unet_plus_plus_rewrites_each_skip_once_for_the_whole_decoder():
    """``decode_with`` calls the transform once per level (no decoder feature), and the decoder reads the new
    skips everywhere: doubling skip l equals decoding with skip l doubled."""
    adapter = adapt(_net("basic_unet_plus_plus"))
    with torch.no_grad():
        skips, bottom = adapter.encode(_x())
        calls = []

        def double_level_1(level, skip, up):
            calls.append((level, up))
            return 2 * skip if level == 1 else skip

        out = adapter.decode_with(skips, bottom, double_level_1)
        assert calls == [(0, None), (1, None), (2, None), (3, None)]
        assert torch.equal(out, adapter.decode([skips[0], 2 * skips[1], *skips[2:]], bottom))
        assert not torch.equal(out, adapter.decode(skips, bottom))


@pytest.mark.parametrize("name, spatial", CASES)
@pytest.mark.parametrize("per_level_alpha, residual", [(False, "projection"), (True, "gate")])
def test_fresh_supernet_reproduces_backbone_exactly(name, spatial, per_level_alpha, residual):
    net = _net(name)
    x = _x(spatial)
    with torch.no_grad():
        expected = net(x)
    model = build_supernet(adapt(net), per_level_alpha=per_level_alpha, generator=_gen(),
                           residual=residual).freeze_backbone()
    model.train()  # cells computed, with gradients; the frozen backbone stays in eval mode
    out = model(x)
    assert torch.equal(out, expected)
    out.sum().backward()
    if residual == "gate":
        assert model.gates.grad is not None and model.gates.grad.abs().sum() > 0
    else:
        assert all(cell.project.weight.grad.abs().sum() > 0 for cell in model.cells)
    assert all(p.grad is None for p in model.adapter.parameters())
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), expected)
        assert torch.equal(model.decode_from(model.encode(x), coalition=torch.ones(E, P, dtype=torch.bool)), expected)


@pytest.mark.parametrize("name, spatial", CASES)
def test_fresh_discrete_network_reproduces_backbone_exactly(name, spatial):
    net = _net(name)
    x = _x(spatial, seed=2)
    with torch.no_grad():
        expected = net(x)
    model = build_discrete(adapt(net), GENOTYPE, generator=_gen()).freeze_backbone().train()
    assert torch.equal(model(x), expected)
    assert model.genotype() == GENOTYPE and model.arch is None


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_the_cells_not_the_frozen_backbone(name):
    net = _net(name)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model = build_supernet(adapt(net), generator=_gen()).freeze_backbone().train()
    _perturb_projections(model)
    x = _x()
    with torch.no_grad():
        assert not torch.equal(model(x), net(x)), "the cells change the output once they are open"
    model(x).square().mean().backward()
    for cell in model.cells:
        assert cell.project.weight.grad.abs().sum() > 0
        assert cell.preprocess.op[1].weight.grad.abs().sum() > 0  # behind the open projection
    assert all(p.grad is None and not p.requires_grad for p in model.adapter.parameters())
    assert all(a.alphas.grad is not None for a in model.arch)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items()), "BN statistics untouched"


def test_attention_unet_cells_may_read_the_decoder_feature():
    net = _net("attention_unet")
    adapter = adapt(net)
    x = _x()
    with torch.no_grad():
        expected = net(x)
    model = build_supernet(adapter, generator=_gen(), decoder_input=True).freeze_backbone().eval()
    assert [cell.decoder_channels for cell in model.cells] == adapter.decoder_channels
    with torch.no_grad():
        assert torch.equal(model(x), expected)
        _perturb_projections(model)
        assert not torch.equal(model(x), expected)


def test_unet_plus_plus_refuses_decoder_input():
    from shapnas.config.stage_configs import SearchConfig

    adapter = adapt(_net("basic_unet_plus_plus"))
    message = r"decoder_input=True is not available for backbone 'basic_unet_plus_plus'"
    with pytest.raises(ValueError, match=message):
        build_supernet(adapter, generator=_gen(), decoder_input=True)
    with pytest.raises(ValueError, match=message):
        build_discrete(adapter, GENOTYPE, generator=_gen(), decoder_input=True)
    cells = build_discrete(adapter, GENOTYPE, generator=_gen()).cells
    with pytest.raises(ValueError, match=message):
        RetrofitUNet(adapter, list(cells), None, GENOTYPE, decoder_input=True)
    with pytest.raises(ValueError, match=message):
        SearchConfig(dataset="acdc", backbone="basic_unet_plus_plus", decoder_input=True)
    assert SearchConfig(dataset="acdc", backbone="attention_unet", decoder_input=True).decoder_input


@pytest.mark.parametrize("name", NAMES)
def test_backbone_checkpoint_round_trip(tmp_path, name):
    net = _net(name, seed=3)
    init_args = build_backbone(name, 1, 3, "micro")[1]
    path = tmp_path / "backbone.pt"
    torch.save(backbone_payload(net, name, init_args), path)
    loaded, loaded_name, loaded_args = load_backbone(path, expected_in=1, expected_out=3)
    assert loaded_name == name and loaded_args == init_args and not loaded.training
    x = _x()
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


def test_users_plain_monai_unet_plus_plus_checkpoint(tmp_path):
    """A state dict saved from MONAI's own ``BasicUNetPlusPlus`` loads (same keys); deep supervision does not."""
    features = [4, 4, 8, 16, 32, 4]
    net = BasicUNetPlusPlus(spatial_dims=2, in_channels=1, out_channels=3, features=tuple(features)).eval()
    path = tmp_path / "mine.pt"
    init_args = {"in_channels": 1, "out_channels": 3, "features": features}
    torch.save({"backbone": "basic_unet_plus_plus", "init_args": init_args, "state_dict": net.state_dict()}, path)
    loaded, name, _ = load_backbone(path)
    with torch.no_grad():
        assert name == "basic_unet_plus_plus" and torch.equal(loaded(_x()), net(_x())[0])
    torch.save({"backbone": "basic_unet_plus_plus", "init_args": {**init_args, "deep_supervision": True},
                "state_dict": net.state_dict()}, path)
    with pytest.raises(ValueError, match="cannot build basic_unet_plus_plus"):
        load_backbone(path)


@pytest.mark.parametrize("name", NAMES)
def test_saved_retrofit_round_trip(tmp_path, name):
    """model.pt of a retrofitted network (kind ``retrofit``) and of its backbone rebuild the same functions."""
    from shapnas.networks.checkpoints import load_model, save_model

    class Spec:
        name, channel_names, class_names, label_values, modality, eval_regions = "x", ["i"], ["b", "f", "g"], \
            [0, 1, 2], "MR", {}

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net, init_args = build_backbone(name, 1, 3, "micro")
    model = build_discrete(adapt(net.eval()), GENOTYPE, generator=_gen(), residual="projection")
    _perturb_projections(model)
    config = {"residual": "projection", "decoder_input": False}
    path = save_model(tmp_path / "model.pt", kind="retrofit", net=net, backbone_name=name, init_args=init_args,
                      model=model, genotype=GENOTYPE, spec=Spec, slice_size=32, config=config)
    loaded, checkpoint = load_model(path)
    assert checkpoint["backbone"]["name"] == name and not loaded.decoder_input
    x = _x(seed=6)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    backbone_path = save_model(tmp_path / "backbone.pt", kind="backbone", net=net, backbone_name=name,
                               init_args=init_args, spec=Spec, slice_size=32, config=config)
    with torch.no_grad():
        assert torch.equal(load_model(backbone_path)[0](x), net(x))


@pytest.mark.parametrize("name", NAMES)
def test_norm_and_bias_parameters(name):
    net = _net(name, "tiny")
    chosen = norm_and_bias_parameters(net)
    ids = [id(p) for p in chosen]
    total = sum(p.numel() for p in net.parameters())
    assert len(ids) == len(set(ids)) and 0 < sum(p.numel() for p in chosen) < 0.02 * total
    norms = [m for m in net.modules() if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d))]
    assert norms and all(id(m.weight) in ids for m in norms if m.weight is not None)


def test_registry_config_and_cli_know_the_new_backbones():
    from shapnas.cli import build_parser
    from shapnas.config.names import BACKBONE_NAMES as CONFIG_NAMES
    from shapnas.config.stage_configs import PretrainConfig

    assert set(NAMES) <= set(BACKBONE_NAMES) and CONFIG_NAMES == BACKBONE_NAMES
    assert all(tuple(BACKBONE_SIZES[name]) == ("micro", "tiny", "small", "paper") for name in NAMES)
    for name in NAMES:
        assert PretrainConfig(dataset="acdc", backbone=name).backbone == name
    subparsers = next(a for a in build_parser()._actions if a.choices and "pretrain" in a.choices)
    text = " ".join(subparsers.choices["pretrain"].format_help().split())
    assert all(name in text for name in BACKBONE_NAMES)
