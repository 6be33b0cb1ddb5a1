"""The retrofitted U-Net: exact at implant time, architecture parameters, pruning, coalitions, freezing."""

from __future__ import annotations

import copy

import pytest
import torch

from shapnas.networks.backbones import BACKBONE_SIZES, adapt, build_backbone
from shapnas.networks.genotype import Genotype
from shapnas.networks.retrofit import ArchitectureParameters, build_discrete, build_supernet, cell_width

E, P = 14, 8
GENOTYPE = Genotype(edges=((0, 0, "sep_conv_3x3"), (0, 1, "skip_connect"), (1, 0, "max_pool_3x3"),
                           (1, 2, "dil_conv_5x5"), (2, 1, "avg_pool_3x3"), (2, 3, "sep_conv_5x5"),
                           (3, 0, "dil_conv_3x3"), (3, 4, "skip_connect")))


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _backbone(name="basic_unet", size="tiny", seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_backbone(name, 1, 3, size)[0].eval()


def _x(seed=1, size=32):
    return torch.randn(2, 1, size, size, generator=_gen(seed))


# the backbones whose cells may read a decoder feature (UNet++'s nested skips have none: tests/test_more_backbones.py)
DECODER_INPUT_NAMES = [name for name in BACKBONE_SIZES if name != "basic_unet_plus_plus"]
NAME_AND_DECODER_INPUT = [(name, False) for name in BACKBONE_SIZES] + [(name, True) for name in DECODER_INPUT_NAMES]


@pytest.mark.parametrize("name, decoder_input", NAME_AND_DECODER_INPUT)
@pytest.mark.parametrize("per_level_alpha", [False, True])
@pytest.mark.parametrize("residual", ["projection", "gate"])
def test_fresh_supernet_reproduces_backbone_exactly(name, per_level_alpha, residual, decoder_input):
    net = _backbone(name)
    x = _x()
    with torch.no_grad():
        expected = net(x)
    model = build_supernet(adapt(net), per_level_alpha=per_level_alpha, generator=_gen(), residual=residual,
                           decoder_input=decoder_input).freeze_backbone()
    model.train()  # cells computed, with gradients
    out = model(x)
    assert torch.equal(out, expected)
    out.sum().backward()
    if residual == "gate":
        assert model.gates.grad is not None and model.gates.grad.abs().sum() > 0
    else:  # the zero projection is what learns first; nothing behind it has a gradient yet
        assert model.gates is None
        assert all(cell.project.weight.grad.abs().sum() > 0 for cell in model.cells)
        assert all(cell.preprocess.op[1].weight.grad is None or cell.preprocess.op[1].weight.grad.abs().sum() == 0
                   for cell in model.cells)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), expected)


@pytest.mark.parametrize("name, decoder_input", NAME_AND_DECODER_INPUT)
@pytest.mark.parametrize("residual", ["projection", "gate"])
def test_fresh_discrete_network_reproduces_backbone_exactly(name, residual, decoder_input):
    net = _backbone(name)
    x = _x(2)
    with torch.no_grad():
        expected = net(x)
    model = build_discrete(adapt(net), GENOTYPE, generator=_gen(), residual=residual,
                           decoder_input=decoder_input).freeze_backbone().train()
    assert torch.equal(model(x), expected)
    assert model.genotype() == GENOTYPE and model.arch is None
    with pytest.raises(ValueError, match="discrete"):
        model(x, coalition=torch.ones(E, P, dtype=torch.bool))


@pytest.mark.parametrize("name", DECODER_INPUT_NAMES)
def test_decoder_input_feeds_s1_only(name):
    """With decoder_input, s1 of every cell is the decoder feature at the skip's level: the cells change
    with the decoder feature (they would not if it were ignored), and s0 reads only the skip."""
    adapter = adapt(_backbone(name))
    model = build_supernet(adapter, generator=_gen(), decoder_input=True).freeze_backbone().eval()
    assert [cell.decoder_channels for cell in model.cells] == adapter.decoder_channels
    assert all(c > 0 for c in adapter.decoder_channels)
    for level, cell in enumerate(model.cells):
        with torch.no_grad():
            cell.project.weight.normal_(generator=_gen(level))
        channels, skip_c = cell.channels, cell.in_channels
        mask = cell.input_mask
        assert mask[:channels, :skip_c].all() and not mask[:channels, skip_c:].any()
        assert mask[channels:, skip_c:].all() and not mask[channels:, :skip_c].any()
        skip = torch.randn(2, skip_c, 8, 8, generator=_gen(10 + level))
        dec = torch.randn(2, cell.decoder_channels, 8, 8, generator=_gen(20 + level))
        arch = model.arch[0]
        with torch.no_grad():
            a = cell(skip, arch.op_probs(), arch.edge_probs(), arch.active, dec)
            b = cell(skip, arch.op_probs(), arch.edge_probs(), arch.active, 2 * dec + 1)
        assert not torch.allclose(a, b)
        with pytest.raises(ValueError, match="decoder feature"):
            cell(skip, arch.op_probs(), arch.edge_probs(), arch.active)
    skip_only = build_supernet(adapter, generator=_gen()).freeze_backbone().eval()
    assert all(cell.decoder_channels == 0 for cell in skip_only.cells)


def test_projection_residual_learns_under_adam():
    """A few Adam steps open the zero projection: the network leaves the backbone, α gets a gradient."""
    net = _backbone()
    model = build_supernet(adapt(net), generator=_gen()).freeze_backbone().train()
    optimizer = torch.optim.Adam(model.weight_parameters(), lr=1e-2)
    for step in range(3):
        optimizer.zero_grad()
        model(_x(step)).square().mean().backward()
        optimizer.step()
    assert all(float(cell.project.weight.detach().abs().max()) > 1e-3 for cell in model.cells)
    model.zero_grad()
    model(_x(9)).square().mean().backward()
    assert float(model.arch[0].alphas.grad.abs().sum()) > 0
    with torch.no_grad():
        assert not torch.allclose(model.eval()(_x(9)), net(_x(9)))


def test_gates_open_the_cells():
    model = build_supernet(adapt(_backbone()), generator=_gen(), residual="gate").freeze_backbone().eval()
    x = _x()
    with torch.no_grad():
        before = model(x)
        model.gates.fill_(0.5)
        assert not torch.allclose(model(x), before)


def test_architecture_parameters_init_and_distributions():
    arch = ArchitectureParameters(4, generator=_gen(5))
    twin = ArchitectureParameters(4, generator=_gen(5))
    assert torch.equal(arch.alphas, twin.alphas) and arch.alphas.shape == (E, P) and arch.betas.shape == (E,)
    assert 1e-4 < float(arch.alphas.detach().std()) < 1e-2
    probs = arch.op_probs()
    assert torch.allclose(probs.sum(1), torch.ones(E))
    edge_probs = arch.edge_probs()
    for start, count in [(0, 2), (2, 3), (5, 4), (9, 5)]:
        assert torch.allclose(edge_probs[start:start + count].sum(), torch.tensor(1.0))
    with torch.no_grad():
        arch.betas[9:14] = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0])
    expected = torch.softmax(torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0]), 0)
    assert torch.allclose(arch.edge_probs()[9:], expected)


def test_pruning_rules_and_masked_softmax():
    arch = ArchitectureParameters(4, generator=_gen(6))
    arch.prune(3, 5)
    probs = arch.op_probs()
    assert probs[3, 5] == 0 and torch.allclose(probs[3].sum(), torch.tensor(1.0))
    assert (3, 5) not in arch.players() and len(arch.players()) == E * (P - 1) - 1
    assert arch.num_active(3) == P - 2
    with pytest.raises(ValueError, match="already pruned"):
        arch.prune(3, 5)
    with pytest.raises(ValueError, match="'none' is never pruned"):
        arch.prune(3, 0)
    with pytest.raises(ValueError, match="outside"):
        arch.prune(14, 1)
    for op in range(1, P - 1):
        if op != 5:
            arch.prune(3, op)
    assert arch.num_active(3) == 1
    with pytest.raises(ValueError, match="last active op"):
        arch.prune(3, P - 1)
    alphas = arch.alphas.detach()
    expected = torch.softmax(alphas[3, [0, P - 1]], 0)
    assert torch.allclose(arch.op_probs()[3, [0, P - 1]], expected)


def test_coalition_zeroes_weights_without_renormalising():
    arch = ArchitectureParameters(4, generator=_gen(7))
    coalition = torch.rand(E, P, generator=_gen(8)) > 0.5
    assert torch.equal(arch.op_probs(coalition), arch.op_probs() * coalition)
    with pytest.raises(ValueError, match="coalition shape"):
        arch.op_probs(torch.ones(3, 3, dtype=torch.bool))


def test_decode_from_with_coalition_matches_manual_cells():
    model = build_supernet(adapt(_backbone()), generator=_gen(), residual="gate").freeze_backbone().eval()
    with torch.no_grad():
        model.gates.copy_(torch.tensor([0.3, -0.2, 0.5, 0.1]))
    x = _x(3)
    coalition = torch.rand(E, P, generator=_gen(9)) > 0.4
    arch = model.arch[0]
    with torch.no_grad():
        features = model.encode(x)
        out = model.decode_from(features, coalition=coalition)
        skips, bottom = features
        manual = [s + g * cell(s, arch.op_probs() * coalition, arch.edge_probs(), arch.active)
                  for s, g, cell in zip(skips, model.GATE_SCALE * model.gates, model.cells)]
        assert torch.allclose(out, model.adapter.decode(manual, bottom), atol=1e-6)
        assert torch.allclose(model(x, coalition=coalition), out)


def test_pruned_supernet_equals_unpruned_with_zero_probability():
    model = build_supernet(adapt(_backbone()), generator=_gen(), per_level_alpha=True, residual="gate").freeze_backbone().train()
    with torch.no_grad():
        model.gates.fill_(0.5)
    twin = copy.deepcopy(model)
    for edge, op in [(0, 4), (5, 1), (13, 7)]:
        model.prune(edge, op)
        for arch in twin.arch:
            with torch.no_grad():
                arch.alphas[edge, op] = float("-inf")  # probability exactly 0, op still computed
    assert all(not bool(arch.active[0, 4]) for arch in model.arch)
    assert torch.allclose(model(_x(4)), twin(_x(4)), atol=1e-5)
    assert len(model.arch[0].players()) == E * (P - 1) - 3


def test_prune_checks_every_level_before_changing_any():
    model = build_supernet(adapt(_backbone()), generator=_gen(), per_level_alpha=True)
    model.arch[2].active[1, 2] = False
    with pytest.raises(ValueError, match="already pruned"):
        model.prune(1, 2)
    assert bool(model.arch[0].active[1, 2])


def test_freeze_backbone_and_train_mode():
    model = build_supernet(adapt(_backbone("unet")), generator=_gen(), residual="gate").freeze_backbone()
    model.train()
    assert not model.adapter.training and not model.adapter.net.training
    assert all(cell.training for cell in model.cells)
    assert all(not p.requires_grad for p in model.adapter.parameters())
    skips, bottom = model.encode(_x())
    assert not bottom.requires_grad and not any(s.requires_grad for s in skips)
    weights = {id(p) for p in model.weight_parameters()}
    assert id(model.gates) in weights and all(id(p) in weights for p in model.cells.parameters())
    assert not weights & {id(p) for p in model.adapter.parameters()}
    assert model.arch_parameters() == [model.arch[0].alphas, model.arch[0].betas]


def test_search_steps_leave_the_backbone_untouched():
    net = _backbone()
    frozen = copy.deepcopy(net.state_dict())
    model = build_supernet(adapt(net), generator=_gen(), residual="gate").freeze_backbone().train()
    weight_opt = torch.optim.SGD(model.weight_parameters(), lr=0.1)
    arch_opt = torch.optim.Adam(model.arch_parameters(), lr=0.1)
    cell_buffers = copy.deepcopy(model.cells.state_dict())
    for step in range(2):
        weight_opt.zero_grad()
        arch_opt.zero_grad()
        model(_x(step)).square().mean().backward()
        weight_opt.step()
        arch_opt.step()
    assert all(torch.equal(v, frozen[k]) for k, v in net.state_dict().items())
    assert float(model.gates.detach().abs().sum()) > 0
    assert not torch.equal(model.cells.state_dict()["0.preprocess.op.2.running_mean"],
                           cell_buffers["0.preprocess.op.2.running_mean"])
    assert model.genotype().num_nodes == 4


def test_state_dict_round_trip_keeps_pruning():
    model = build_supernet(adapt(_backbone()), generator=_gen(), residual="gate").freeze_backbone().eval()
    with torch.no_grad():
        model.gates.fill_(0.2)
    model.prune(2, 3)
    fresh = build_supernet(adapt(_backbone()), generator=_gen(1), residual="gate").freeze_backbone().eval()
    fresh.load_state_dict(model.state_dict())
    assert not bool(fresh.arch[0].active[2, 3])
    with torch.no_grad():
        assert torch.equal(fresh(_x(5)), model(_x(5)))


def test_per_level_genotype_and_cell_op_probs():
    model = build_supernet(adapt(_backbone()), generator=_gen(), per_level_alpha=True)
    assert len(model.arch) == 4 and model.cell_op_probs().shape == (4, E, P)
    with torch.no_grad():
        for arch in model.arch:
            arch.alphas.zero_()
            arch.alphas[:, 5] = 3.0  # sep_conv_5x5 everywhere
    assert {op for _, _, op in model.genotype().edges} == {"sep_conv_5x5"}
    shared = build_supernet(adapt(_backbone()), generator=_gen())
    probs = shared.cell_op_probs()
    assert torch.equal(probs[0], probs[3])


@pytest.mark.parametrize("skip, k, channels, expected", [(8, 4, 0, 8), (64, 4, 0, 32), (2, 4, 0, 4), (30, 4, 0, 28),
                                                         (64, 4, 16, 16), (32, 1, 0, 32)])
def test_cell_width(skip, k, channels, expected):
    assert cell_width(skip, k, channels) == expected


def test_cell_width_and_supernet_widths():
    with pytest.raises(ValueError, match="multiple"):
        cell_width(16, 4, 6)
    model = build_supernet(adapt(_backbone("basic_unet", "paper")), generator=_gen())
    assert [cell.channels for cell in model.cells] == [32, 32, 32, 32]
    assert [cell.in_channels for cell in model.cells] == [32, 32, 64, 128]


def test_same_generator_same_supernet():
    a = build_supernet(adapt(_backbone()), generator=_gen(3))
    b = build_supernet(adapt(_backbone()), generator=_gen(3))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("name", DECODER_INPUT_NAMES)
def test_saved_retrofit_keeps_residual_and_decoder_input(tmp_path, name):
    """model.pt rebuilds the same form (from its config); a config without the keys means the old gate form."""
    from shapnas.networks.checkpoints import load_model, save_model
    from shapnas.networks.retrofit import retrofit_options

    class Spec:
        name, channel_names, class_names, label_values, modality, eval_regions = "x", ["i"], ["b", "f", "g"], \
            [0, 1, 2], "MR", {}

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net, init_args = build_backbone(name, 1, 3, "tiny")
    model = build_discrete(adapt(net.eval()), GENOTYPE, generator=_gen(), residual="projection", decoder_input=True)
    with torch.no_grad():
        for cell in model.cells:
            cell.project.weight.normal_(generator=_gen(4))
    path = save_model(tmp_path / "model.pt", kind="retrofit", net=net, backbone_name=name, init_args=init_args,
                      model=model, genotype=GENOTYPE, spec=Spec, slice_size=32,
                      config={"residual": "projection", "decoder_input": True})
    loaded, _ = load_model(path)
    assert loaded.gates is None and loaded.decoder_input
    with torch.no_grad():
        assert torch.equal(loaded(_x(6)), model.eval()(_x(6)))
    assert retrofit_options({}) == {"residual": "gate", "decoder_input": False}
