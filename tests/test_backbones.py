"""MONAI backbones: sizes, skip adapters reproducing the nets exactly, checkpoints and their validation."""

from __future__ import annotations

import json

import pytest
import torch
from monai.networks.nets import SegResNet, UNet

from shapnas.networks.backbones import (
    BACKBONE_SIZES,
    BasicUNetAdapter,
    MonaiUNetAdapter,
    adapt,
    backbone_payload,
    build_backbone,
    load_backbone,
    net_from_payload,
    new_backbone,
)

CASES = [(name, size) for name in BACKBONE_SIZES for size in BACKBONE_SIZES[name]]


def _net(name="basic_unet", size="tiny", in_channels=2, out_channels=3, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_backbone(name, in_channels, out_channels, size)


@pytest.mark.parametrize("name, size", CASES)
@pytest.mark.parametrize("spatial", [32, 48])
def test_adapter_reproduces_the_net(name, size, spatial):
    net, init_args = _net(name, size)
    net.eval()
    adapter = adapt(net)
    x = torch.randn(2, 2, spatial, spatial, generator=torch.Generator().manual_seed(spatial))
    with torch.no_grad():
        expected = net(x)
        skips, bottom = adapter.encode(x)
        assert torch.equal(adapter(x), expected)
        assert torch.equal(adapter.decode(skips, bottom), expected)
    assert [s.shape[1] for s in skips] == adapter.skip_channels
    sizes = [s.shape[-1] for s in skips]
    assert sizes == sorted(sizes, reverse=True), "full resolution first"
    assert json.loads(json.dumps(init_args)) == init_args and init_args["spatial_dims"] == 2


def test_skip_levels_and_channels():
    basic = adapt(_net("basic_unet", "tiny")[0])
    unet = adapt(_net("unet", "tiny")[0])
    assert isinstance(basic, BasicUNetAdapter) and basic.skip_channels == [8, 8, 16, 32]
    assert isinstance(unet, MonaiUNetAdapter) and unet.skip_channels == [8, 16, 32]
    x = torch.randn(1, 2, 32, 32)
    with torch.no_grad():
        assert [s.shape[-1] for s in basic.encode(x)[0]] == [32, 16, 8, 4]
        assert [s.shape[-1] for s in unet.encode(x)[0]] == [16, 8, 4]


def test_basic_unet_odd_sizes_still_match():
    net = _net("basic_unet", "tiny")[0].eval()
    x = torch.randn(1, 2, 40, 40)  # 5×5 at the deepest skip: MONAI pads, the adapter calls the same modules
    with torch.no_grad():
        assert torch.equal(adapt(net)(x), net(x))


@pytest.mark.parametrize("name", list(BACKBONE_SIZES))
def test_adapter_state_dict_is_the_monai_one(name):
    net = _net(name)[0]
    adapter = adapt(net)
    assert list(adapter.state_dict()) == [f"net.{k}" for k in net.state_dict()]
    assert adapter.net is net and adapt(adapter) is adapter


def test_unsupported_nets_and_skip_modes():
    with pytest.raises(ValueError, match="SegResNet"):
        adapt(SegResNet(spatial_dims=2, in_channels=1, out_channels=2, init_filters=8))
    with pytest.raises(ValueError, match="spatial_dims"):
        adapt(UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,)))
    net = UNet(spatial_dims=2, in_channels=1, out_channels=2, channels=(4, 8, 16), strides=(2, 2))
    net.model[1].mode = "add"
    with pytest.raises(ValueError, match="mode='add'"):
        adapt(net)
    with pytest.raises(ValueError, match="backbone size"):
        build_backbone("unet", 1, 2, "huge")
    with pytest.raises(ValueError, match="backbone"):
        build_backbone("segresnet", 1, 2, "tiny")


@pytest.mark.parametrize("name", list(BACKBONE_SIZES))
def test_payload_round_trip(tmp_path, name):
    net, init_args = _net(name, seed=3)
    path = tmp_path / "backbone.pt"
    torch.save(backbone_payload(net, name, init_args), path)
    assert torch.load(path, weights_only=True)["name"] == name
    loaded, loaded_name, loaded_args = load_backbone(path, expected_in=2, expected_out=3)
    assert loaded_name == name and loaded_args == init_args and not loaded.training
    x = torch.randn(1, 2, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), net.eval()(x))


def test_user_checkpoint_format(tmp_path):
    net, _ = _net("unet", seed=4)
    path = tmp_path / "mine.pt"
    state = {f"module.{k}": v for k, v in net.state_dict().items()}  # saved from DataParallel
    torch.save({"backbone": "unet", "state_dict": state,
                "init_args": {"in_channels": 2, "out_channels": 3, "channels": (8, 16, 32, 64),
                              "strides": (2, 2, 2), "num_res_units": 1}}, path)
    loaded, name, init_args = load_backbone(path)
    assert name == "unet" and init_args["spatial_dims"] == 2 and init_args["channels"] == [8, 16, 32, 64]
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))
    shapnas_model = tmp_path / "model.pt"  # a shapnas model.pt holds the payload under "backbone"
    torch.save({"kind": "backbone", "backbone": backbone_payload(net, "unet", init_args)}, shapnas_model)
    assert load_backbone(shapnas_model)[1] == "unet"


def _save(path, name="basic_unet", **changes):
    net, init_args = _net(name)
    payload = {"backbone": name, "init_args": dict(init_args), "state_dict": dict(net.state_dict())}
    payload.update(changes)
    torch.save(payload, path)
    return payload


def test_checkpoint_errors_name_file_and_mismatch(tmp_path):
    path = tmp_path / "bad.pt"
    payload = _save(path)
    state = dict(payload["state_dict"])
    removed = sorted(state)[:7]
    for key in removed:
        del state[key]
    state["extra.weight"] = torch.zeros(1)
    torch.save({**payload, "state_dict": state}, path)
    with pytest.raises(ValueError) as error:
        load_backbone(path)
    message = str(error.value)
    assert str(path) in message and "missing keys" in message and removed[0] in message and "(+2 more)" in message
    assert "unexpected keys: extra.weight" in message

    wide, _ = _net("basic_unet", "small")  # same keys, other widths
    torch.save({**payload, "state_dict": wide.state_dict()}, path)
    expected = r"shape mismatch: conv_0\.conv_0\.conv\.weight \(16, 2, 3, 3\) vs expected \(8, 2, 3, 3\)"
    with pytest.raises(ValueError, match=expected):
        load_backbone(path)


@pytest.mark.parametrize("change, expected_in, expected_out, message", [
    ({"spatial_dims": 3}, None, None, "spatial_dims=3; expected 2"),
    ({}, 1, None, "in_channels=2; the dataset needs 1"),
    ({}, None, 5, "out_channels=3; the dataset needs 5"),
    ({"features": "wide"}, None, None, "cannot build basic_unet"),
])
def test_checkpoint_init_args_errors(tmp_path, change, expected_in, expected_out, message):
    path = tmp_path / "args.pt"
    payload = _save(path)
    torch.save({**payload, "init_args": {**payload["init_args"], **change}}, path)
    with pytest.raises(ValueError, match=message):
        load_backbone(path, expected_in=expected_in, expected_out=expected_out)


def test_checkpoint_format_errors(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"weights": {}}, path)
    with pytest.raises(ValueError, match="expected a dict with 'backbone'"):
        load_backbone(path)
    _save(path, backbone="resnet")
    with pytest.raises(ValueError, match="backbone 'resnet'"):
        load_backbone(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_backbone(path)


@pytest.mark.parametrize("name", list(BACKBONE_SIZES))
def test_seeded_backbone_and_payload_round_trip(name):
    """new_backbone: same seed, same weights, global RNG untouched; net_from_payload rebuilds it exactly."""
    before = torch.random.get_rng_state()
    net, init_args = new_backbone(name, 1, 3, "tiny", seed=7)
    again, _ = new_backbone(name, 1, 3, "tiny", seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)
    rebuilt = net_from_payload(backbone_payload(net, name, init_args))
    for key, value in net.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]) and torch.equal(value, rebuilt.state_dict()[key])
    with pytest.raises(ValueError, match="expected one of"):
        net_from_payload({"name": "segresnet", "init_args": {}, "state_dict": {}})


def test_config_knows_every_backbone_and_width():
    """The config validates names without importing torch: its lists must be the registry's."""
    from shapnas.config.names import BACKBONE_NAMES, BACKBONE_SIZE_NAMES
    from shapnas.config.stage_configs import PretrainConfig

    assert BACKBONE_NAMES == tuple(BACKBONE_SIZES)
    assert all(tuple(sizes) == BACKBONE_SIZE_NAMES for sizes in BACKBONE_SIZES.values())
    with pytest.raises(ValueError, match="backbone_size='huge'; expected one of micro, tiny, small, paper"):
        PretrainConfig(dataset="acdc", backbone_size="huge")
