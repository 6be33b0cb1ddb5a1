"""nnU-Net v2 2D models as retrofit backbones, tested on a checkpoint that nnU-Net's own code wrote.

The module fixture writes a tiny MSD-layout phantom with shapnas's writer, converts it with
``nnUNetv2_convert_MSD_dataset``, plans and preprocesses it with ``nnUNetv2_plan_and_preprocess`` and trains
nnU-Net's own ``nnUNetTrainer`` (through ``nnunetv2.run.run_training.get_trainer_from_args``) for one epoch of
two iterations on the CPU. nnU-Net's commands run as subprocesses with ``nnUNet_raw``/``nnUNet_preprocessed``/
``nnUNet_results`` pointing into a temporary folder, so no nnU-Net setting leaks into other tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet, ResidualUNet
from torch import nn

from shapnas.data.phantoms import write_phantom_dataset
from shapnas.networks.genotype import Genotype
from shapnas.networks.nnunet import (NnUNetAdapter, NnUNetNormalisation, load_nnunet_model, nnunet_checkpoint_path,
                                     normalise_case)
from shapnas.networks.retrofit import build_discrete, build_supernet

DATASET_ID = 501
DATASET = f"Dataset{DATASET_ID:03d}_Phantom"
GENOTYPE = Genotype(edges=((0, 0, "sep_conv_3x3"), (0, 1, "skip_connect"), (1, 0, "max_pool_3x3"),
                           (1, 2, "dil_conv_5x5"), (2, 1, "avg_pool_3x3"), (2, 3, "sep_conv_5x5"),
                           (3, 0, "dil_conv_3x3"), (3, 4, "skip_connect")))
# nnU-Net's own trainer and data pipeline, shortened on the instance (its trainer variants all run 250 iterations
# per epoch, about 5 minutes on two CPU cores); found by name at the top of nnU-Net's trainer package
TRAIN_SCRIPT = """
import sys, torch
from nnunetv2.run.run_training import get_trainer_from_args
trainer = get_trainer_from_args(sys.argv[1], "2d", 0, "nnUNetTrainer", device=torch.device("cpu"))
trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch = 1, 2, 1
trainer.run_training()
"""


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _nnunet_env(root: Path) -> dict[str, str]:
    """The environment of nnU-Net's subprocesses: its three folders under ``root``, one process, one thread."""
    env = dict(os.environ)
    env.update(nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "preprocessed"),
               nnUNet_results=str(root / "results"), nnUNet_def_n_proc="1", nnUNet_n_proc_DA="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _run(args: list[str], env: dict[str, str], log: Path) -> float:
    """Run one nnU-Net command (its output appended to ``log``); fail with the log's tail. Returns seconds."""
    start = time.perf_counter()
    with log.open("a") as out:
        out.write(f"$ {' '.join(args)}\n")
        out.flush()
        done = subprocess.run(args, check=False, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=900)
    if done.returncode:
        pytest.fail(f"{args[0]} failed ({done.returncode}):\n{log.read_text()[-3000:]}")
    return time.perf_counter() - start


def _command(name: str) -> str:
    """An nnU-Net console script of this interpreter's environment."""
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found beside {sys.executable}: is nnunetv2 installed (requirements.txt)?")
    return path


@pytest.fixture(scope="module")
def nnunet_results(tmp_path_factory) -> Path:
    """A results folder written by nnU-Net v2 itself (plans.json, dataset.json, fold_0/checkpoint_final.pth)."""
    root = tmp_path_factory.mktemp("nnunet")
    for sub in ("raw", "preprocessed", "results"):
        (root / sub).mkdir()
    env, log = _nnunet_env(root), root / "nnunet.log"
    msd = write_phantom_dataset("msd", root / "Task05_Phantom", 8, seed=0)  # 96x96x32, 4 channels
    (msd / "imagesTs").mkdir(exist_ok=True)  # the MSD layout has it; nnU-Net's converter requires it
    times = {"convert": _run([_command("nnUNetv2_convert_MSD_dataset"), "-i", str(msd), "-overwrite_id",
                              str(DATASET_ID), "-np", "1"], env, log),
             "plan_and_preprocess": _run([_command("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", "2d",
                                          "--verify_dataset_integrity", "-np", "1", "-npfp", "1", "--no_pbar"],
                                         env, log),
             "train": _run([sys.executable, "-c", TRAIN_SCRIPT, str(DATASET_ID)],
                           {**env, "nnUNet_n_proc_DA": "0"}, log)}  # 0: nnU-Net's single-threaded augmenter
    (root / "times.json").write_text(json.dumps(times))
    return root / "results" / DATASET / "nnUNetTrainer__nnUNetPlans__2d"


@pytest.fixture(scope="module")
def nnunet_model(nnunet_results):
    return load_nnunet_model(nnunet_results, fold=0)


def _case(results: Path, case: str = "BRATS_001") -> tuple[np.ndarray, np.ndarray]:
    """A raw case read by nnU-Net's reader, in its axis order after ``transpose_forward``: image (C, S, H, W),
    label (S, H, W)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = PlansManager(str(results / "plans.json"))
    raw = results.parents[2] / "raw" / DATASET
    reader = plans.image_reader_writer_class()
    image, _ = reader.read_images(sorted(str(p) for p in (raw / "imagesTr").glob(f"{case}_*.nii.gz")))
    label, _ = reader.read_seg(str(raw / "labelsTr" / f"{case}.nii.gz"))
    axes = [0, *[a + 1 for a in plans.transpose_forward]]
    return image.transpose(axes), label.transpose(axes)[0]


def _patch(model, results: Path, seed: int = 0, batch: int = 2) -> torch.Tensor:
    """(B, C, *patch_size) normalised input: patches of a real case, zero-padded as nnU-Net's predictor pads."""
    from acvl_utils.cropping_and_padding.padding import pad_nd_image

    image, label = _case(results)
    data, _, _ = normalise_case(image, model.normalisation, label)
    slices = torch.randperm(data.shape[1], generator=_gen(seed))[:batch]
    padded = pad_nd_image(torch.from_numpy(data[:, slices.numpy()]), model.patch_size, "constant", {"value": 0})
    return padded.transpose(0, 1).contiguous()  # (B, C, H, W)


@pytest.mark.slow
def test_nnunet_normalise_case_equals_nnunets_preprocessed_data(nnunet_results, nnunet_model):
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    folder = nnunet_results.parents[2] / "preprocessed" / DATASET / "nnUNetPlans_2d"
    expected, expected_seg, _, properties = infer_dataset_class(str(folder))(str(folder)).load_case("BRATS_001")
    image, label = _case(nnunet_results)
    data, cropped, bbox = normalise_case(image, nnunet_model.normalisation, label)
    assert bbox == [list(b) for b in properties["bbox_used_for_cropping"]]
    assert np.array_equal(data, np.asarray(expected))  # same spacing: nnU-Net's resampling changed nothing
    assert np.array_equal(cropped, np.maximum(np.asarray(expected_seg)[0], 0))
    assert np.array_equal(normalise_case(image, nnunet_model.normalisation)[0], data)  # no label: same mask


@pytest.mark.slow
def test_nnunet_loaded_network_equals_nnunets_predictor(nnunet_results, nnunet_model):
    from acvl_utils.cropping_and_padding.padding import pad_nd_image
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    assert type(nnunet_model.network) is PlainConvUNet and nnunet_model.num_input_channels == 4
    assert nnunet_model.num_classes == 4 and nnunet_model.trainer_name == "nnUNetTrainer"
    assert nnunet_model.normalisation.schemes == ("ZScoreNormalization",) * 4
    predictor = nnUNetPredictor(use_mirroring=False, perform_everything_on_device=False, device=torch.device("cpu"),
                                allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(nnunet_results), use_folds=(0,))
    image, label = _case(nnunet_results)
    data, _, _ = normalise_case(image, nnunet_model.normalisation, label)
    one = torch.from_numpy(data[:, data.shape[1] // 2].copy())  # (C, H, W), smaller than the patch
    with torch.no_grad():
        expected = predictor.predict_sliding_window_return_logits(one[:, None])[:, 0]
        padded, slicer = pad_nd_image(one, nnunet_model.patch_size, "constant", {"value": 0}, True)  # as the predictor
        ours = nnunet_model.network(padded[None])[0][(slice(None), *slicer[1:])]
    assert ours.shape == expected.shape == (4, *one.shape[1:])
    # nnU-Net's predictor accumulates Gaussian-weighted logits in float16: equal to its precision
    torch.testing.assert_close(ours, expected.float(), rtol=1e-2, atol=1e-2)
    assert float((ours.argmax(0) == expected.argmax(0)).float().mean()) > 0.999


@pytest.mark.slow
def test_nnunet_adapter_decodes_exactly(nnunet_results, nnunet_model):
    adapter = NnUNetAdapter(nnunet_model.network)
    features = nnunet_model.network.encoder.output_channels
    assert adapter.skip_channels == list(features[:-1]) == adapter.decoder_channels
    x = _patch(nnunet_model, nnunet_results)
    with torch.no_grad():
        skips, bottom = adapter.encode(x)
        assert skips[0].shape[-2:] == x.shape[-2:] and len(skips) == len(features) - 1
        assert torch.equal(adapter.decode(skips, bottom), nnunet_model.network(x))


@pytest.mark.slow
@pytest.mark.parametrize("residual", ["projection", "gate"])
@pytest.mark.parametrize("decoder_input", [False, True])
def test_nnunet_retrofits_are_exact_at_implant(nnunet_results, nnunet_model, residual, decoder_input):
    x = _patch(nnunet_model, nnunet_results, seed=1)
    with torch.no_grad():
        expected = nnunet_model.network(x)
    adapter = NnUNetAdapter(nnunet_model.network)
    supernet = build_supernet(adapter, generator=_gen(), residual=residual, decoder_input=decoder_input)
    discrete = build_discrete(adapter, GENOTYPE, generator=_gen(), residual=residual, decoder_input=decoder_input)
    for model in (supernet.freeze_backbone(), discrete.freeze_backbone()):
        with torch.no_grad():
            assert torch.equal(model.eval()(x), expected)
        assert torch.equal(model.train()(x).detach(), expected)  # frozen backbone: eval even in train mode


@pytest.mark.slow
def test_nnunet_gradients_reach_cells_not_backbone(nnunet_results, nnunet_model):
    model = build_supernet(NnUNetAdapter(nnunet_model.network), generator=_gen()).freeze_backbone().train()
    model(_patch(nnunet_model, nnunet_results, seed=2, batch=1)).square().mean().backward()
    assert all(p.grad is None for p in nnunet_model.network.parameters())
    assert all(float(cell.project.weight.grad.abs().sum()) > 0 for cell in model.cells)


@pytest.mark.slow
def test_nnunet_damaged_results_give_clear_errors(nnunet_results, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(nnunet_results, copy)
    with pytest.raises(ValueError, match="no configuration '3d_lowres'"):
        load_nnunet_model(copy, configuration="3d_lowres")
    with pytest.raises(ValueError, match="3D; shapnas retrofits 2D"):
        load_nnunet_model(copy, configuration="3d_fullres")
    (copy / "fold_0" / "checkpoint_final.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read the nnU-Net checkpoint"):
        load_nnunet_model(copy)
    torch.save({"state_dict": {}}, copy / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(ValueError, match="expected an nnU-Net v2 checkpoint with 'network_weights'"):
        load_nnunet_model(copy)
    torch.save({"network_weights": {"encoder.x": torch.zeros(1)}}, copy / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(ValueError, match="network_weights do not match"):
        load_nnunet_model(copy)


def test_nnunet_missing_files_name_what_was_expected(tmp_path):
    model = tmp_path / "Dataset001_X" / "nnUNetTrainer__nnUNetPlans__2d"
    with pytest.raises(FileNotFoundError, match="no such folder; expected an nnU-Net v2 results folder"):
        load_nnunet_model(model)
    (model / "fold_0").mkdir(parents=True)
    (model / "dataset.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"plans\.json: missing; expected an nnU-Net v2 results folder"):
        load_nnunet_model(model)
    (model / "plans.json").write_text("{}")
    (model / "fold_0" / "checkpoint_best.pth").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"checkpoint_final\.pth: missing; expected fold_0/checkpoint_final"
                                                r"\.pth .*found: fold_0/checkpoint_best\.pth"):
        load_nnunet_model(model)
    with pytest.raises(FileNotFoundError, match="fold_3/checkpoint_final.pth: missing"):
        nnunet_checkpoint_path(model, fold=3)
    assert nnunet_checkpoint_path(model, checkpoint="checkpoint_best.pth") == model / "fold_0" / "checkpoint_best.pth"


def test_nnunet_normalise_case_uses_nnunets_schemes():
    """CT: clipped to the dataset's foreground percentiles, then its mean and std (plans statistics); z-score
    with the mask: statistics inside the nonzero region, outside stays 0; the crop is the nonzero box."""
    from nnunetv2.preprocessing.normalization.default_normalization_schemes import CTNormalization

    rng = np.random.default_rng(0)
    image = np.zeros((2, 3, 16, 16), dtype=np.float32)
    image[:, :, 2:14, 3:12] = rng.normal(100.0, 30.0, size=(2, 3, 12, 9))
    image[:, 1, 5, 6] = 0.0  # an enclosed hole: filled, so inside the mask
    image[:, :, 8, 7] = 0.0  # a tube open at both faces: not a hole, outside the mask
    stats = {"mean": 90.0, "std": 20.0, "percentile_00_5": 40.0, "percentile_99_5": 150.0}
    norm = NnUNetNormalisation(("CTNormalization", "ZScoreNormalization"), (False, True), {"0": stats, "1": stats})
    out, label, bbox = normalise_case(image, norm)
    assert bbox == [[0, 3], [2, 14], [3, 12]] and label is None and out.dtype == np.float32
    crop = image[:, :, 2:14, 3:12]
    assert np.array_equal(out[0], CTNormalization(False, stats).run(crop[0].copy()))
    np.testing.assert_allclose(out[0], (np.clip(crop[0], 40.0, 150.0) - 90.0) / 20.0, rtol=1e-6, atol=1e-6)
    inside = np.ones(crop.shape[1:], dtype=bool)
    inside[:, 6, 4] = False  # the tube, in crop coordinates
    expected = np.where(inside, (crop[1] - crop[1][inside].mean()) / crop[1][inside].std(), 0.0)
    np.testing.assert_allclose(out[1], expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="image has 3 channels; the nnU-Net configuration normalises 2"):
        normalise_case(np.zeros((3, 2, 4, 4)), norm)
    with pytest.raises(ValueError, match="no such class"):
        normalise_case(image, NnUNetNormalisation(("NoSuchNormalization", "CTNormalization"), (False, False)))


def _tiny_net(cls: type[nn.Module], conv_op: type[nn.Module] = nn.Conv2d, deep_supervision: bool = False,
              **extra) -> nn.Module:
    """A randomly initialised 3-stage nnU-Net architecture (dynamic_network_architectures), global RNG untouched."""
    dim = 2 if conv_op is nn.Conv2d else 3
    norm = nn.InstanceNorm2d if dim == 2 else nn.InstanceNorm3d
    blocks = {"n_conv_per_stage": 2} if cls is PlainConvUNet else {"n_blocks_per_stage": [1, 2, 2]}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return cls(input_channels=2, n_stages=3, features_per_stage=[8, 16, 32], conv_op=conv_op,
                   kernel_sizes=[[3] * dim] * 3, strides=[[1] * dim, [2] * dim, [2] * dim], num_classes=3,
                   n_conv_per_stage_decoder=[1, 2], conv_bias=True, norm_op=norm,
                   norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU,
                   nonlin_kwargs={"inplace": True}, deep_supervision=deep_supervision, **blocks, **extra).eval()


@pytest.mark.parametrize("cls", [PlainConvUNet, ResidualEncoderUNet])
@pytest.mark.parametrize("deep_supervision", [False, True])
def test_nnunet_adapter_on_both_encoders_is_exact(cls, deep_supervision):
    net = _tiny_net(cls, deep_supervision=deep_supervision)
    adapter = NnUNetAdapter(net)
    assert adapter.skip_channels == [8, 16] == adapter.decoder_channels and adapter.backbone_name == "nnunet"
    x = torch.randn(2, 2, 32, 24, generator=_gen(3))
    with torch.no_grad():
        expected = net(x)[0] if deep_supervision else net(x)  # deep supervision: full resolution first
        assert torch.equal(adapter(x), expected)
        for model in (build_supernet(adapter, generator=_gen(), decoder_input=True),
                      build_discrete(adapter, GENOTYPE, generator=_gen(), residual="gate")):
            assert torch.equal(model.freeze_backbone().eval()(x), expected)


def test_nnunet_adapter_rejects_other_networks():
    with pytest.raises(ValueError, match="expected Conv2d"):
        NnUNetAdapter(_tiny_net(PlainConvUNet, nn.Conv3d))
    with pytest.raises(ValueError, match="decoder UNetResDecoder; expected PlainConvUNet or ResidualEncoderUNet"):
        NnUNetAdapter(ResidualUNet(2, 3, [8, 16, 32], nn.Conv2d, 3, [1, 2, 2], [1, 1, 1], 3, [1, 1]))
    with pytest.raises(ValueError, match="expected PlainConvUNet"):
        NnUNetAdapter(nn.Conv2d(1, 1, 1))


# ---- the shapnas pipeline on an nnU-Net backbone: `python -m shapnas ... --backbone nnunet` ----------------------

# the smoke profile at a slice size the planned network takes (total stride 16), with the fewest steps
CLI_SETTINGS = ("slice_size=32", "max_slices_per_volume=2", "batch_size=4", "search_epochs=2", "warmup_epochs=1",
                "shapley_slices=2", "shapley_points_first=1", "normtune_lrs=0.001")
CLI_STAGES = (("pretrain",), ("search", "--policy", "shapley"), ("retrain", "--policy", "shapley"),
              ("evaluate", "--target", "shapley"), ("evaluate", "--target", "backbone"))


def _checkpoint(results: Path) -> Path:
    return results / "fold_0" / "checkpoint_final.pth"


def _msd_phantom(results: Path) -> Path:
    """The MSD-layout phantom the fixture converted (shapnas dataset ``msd``)."""
    return results.parents[2] / "Task05_Phantom"


def _cli_args(results: Path, root: Path, *extra: str) -> list[str]:
    settings = [f"backbone_checkpoint={_checkpoint(results)}", *CLI_SETTINGS, *extra]
    return ["--dataset", "msd", "--data-dir", str(_msd_phantom(results)), "--results", str(root), "--profile", "smoke",
            "--backbone", "nnunet", "--device", "cpu", *[a for s in settings for a in ("--set", s)]]


def _cli_config(results: Path, root: Path, **changes):
    from shapnas.config.stage_configs import RetrainConfig, resolve_config

    values = dict(s.split("=", 1) for s in CLI_SETTINGS)
    values.pop("normtune_lrs")
    return resolve_config(RetrainConfig, "smoke", {k: int(v) for k, v in values.items()}, dataset="msd",
                          data_dir=str(_msd_phantom(results)), results_root=str(root), backbone="nnunet",
                          device="cpu", backbone_checkpoint=str(_checkpoint(results)), **changes)


@pytest.fixture(scope="module")
def nnunet_cli_run(nnunet_results, tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """The shapnas stages run with ``python -m shapnas``'s entry point on the fixture's nnU-Net model (in process):
    (results root, seconds per command)."""
    from shapnas.cli import main

    root, times = tmp_path_factory.mktemp("shapnas-nnunet"), {}
    for stage in CLI_STAGES:
        start = time.perf_counter()
        assert main([*stage, *_cli_args(nnunet_results, root)]) == 0, stage
        times[" ".join(stage)] = time.perf_counter() - start
    return root, times


@pytest.mark.slow
def test_nnunet_cli_runs_pretrain_search_retrain_evaluate(nnunet_cli_run):
    root, times = nnunet_cli_run
    run = root / "msd" / "nnunet" / "seed-0"
    pretrain = json.loads((run / "pretrain" / "metrics.json").read_text())
    assert pretrain["epochs"] == 0 and pretrain["source"].endswith("fold_0/checkpoint_final.pth")
    assert json.loads((run / "search-shapley" / "metrics.json").read_text())["policy"] == "shapley"
    for target in ("shapley", "backbone"):
        metrics = json.loads((run / f"eval-{target}" / "metrics.json").read_text())
        assert metrics["backbone"] == "nnunet" and 0.0 <= metrics["dice_mean"] <= 1.0
        assert metrics["num_cases"] == len(metrics["per_case"]) > 0 and set(metrics["dice_per_class"]) == {
            "edema", "non-enhancing tumor", "enhancing tumour"}
    assert sum(times.values()) < 60, times


@pytest.mark.slow
def test_nnunet_pretrain_stage_stores_the_nnunet_network_exactly(nnunet_cli_run, nnunet_results, nnunet_model,
                                                                  monkeypatch):
    import shapnas.networks.nnunet as nnunet_module
    from shapnas.networks.checkpoints import load_model

    root, _ = nnunet_cli_run
    expected = nnunet_model.network.state_dict()

    def unread(*args, **kwargs):
        raise AssertionError("the stored stage re-read the nnU-Net results folder")

    monkeypatch.setattr(nnunet_module, "nnunet_checkpoint_path", unread)  # the stage is self-contained
    net, checkpoint = load_model(root / "msd" / "nnunet" / "seed-0" / "pretrain" / "model.pt")
    assert type(net) is type(nnunet_model.network) and checkpoint["backbone"]["name"] == "nnunet"
    assert list(net.state_dict()) == list(expected)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in expected.items())
    x = _patch(nnunet_model, nnunet_results, seed=3)
    with torch.no_grad():
        assert torch.equal(net(x), nnunet_model.network(x))


@pytest.mark.slow
def test_nnunet_implant_is_exact_and_finetunes_run(nnunet_cli_run, nnunet_results):
    from shapnas.networks.backbones import norm_and_bias_parameters
    from shapnas.pipeline import implant_check, run_evaluate

    root, _ = nnunet_cli_run
    cfg = _cli_config(nnunet_results, root, policy="shapley", normtune_lrs=(1e-3,))
    assert implant_check(cfg)["max_abs_diff"] == 0.0
    norms = [m for m in load_nnunet_model(nnunet_results).network.modules() if isinstance(m, nn.InstanceNorm2d)]
    chosen = {id(p) for p in norm_and_bias_parameters(load_nnunet_model(nnunet_results).network)}
    assert norms and len(chosen) > 2 * len(norms)
    for target in ("finetune", "normtune"):
        metrics = json.loads((run_evaluate(cfg, target) / "metrics.json").read_text())
        assert 0.0 <= metrics["dice_mean"] <= 1.0


@pytest.mark.slow
def test_nnunet_input_is_nnunets_normalisation(nnunet_results, nnunet_model, tmp_path):
    """The slices shapnas feeds an nnU-Net backbone equal nnU-Net's own preprocessed case (before any resize: the
    phantom's slices are 96 pixels, as ``slice_size``), zero outside nnU-Net's nonzero crop."""
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    from shapnas.data.layouts import dataset_spec, list_cases
    from shapnas.data.prepared import cache_dir, input_normaliser
    from shapnas.data.volumes import load_volume

    cfg = _cli_config(nnunet_results, tmp_path, slice_size=96)
    spec = dataset_spec("msd", _msd_phantom(nnunet_results))
    normalisation = input_normaliser(cfg, spec)
    assert normalisation == nnunet_model.normalisation
    case = next(c for c in list_cases("msd", _msd_phantom(nnunet_results)) if c.case_id == "BRATS_001")
    ours = load_volume(case, spec, 96, normalisation).image  # (S, C, 96, 96)
    folder = nnunet_results.parents[2] / "preprocessed" / DATASET / "nnUNetPlans_2d"
    data, _, _, properties = infer_dataset_class(str(folder))(str(folder)).load_case("BRATS_001")
    full = np.zeros((4, *properties["shape_before_cropping"]), dtype=np.float32)  # (C, Z, Y, X): SimpleITK's order
    full[(slice(None), *(slice(a, b) for a, b in properties["bbox_used_for_cropping"]))] = np.asarray(data)
    # shapnas slices the canonical (X, Y, Z) volume along Z, rows and columns reversed (to_slices)
    assert np.array_equal(ours, full.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
    shapnas_cfg = cfg.replace(backbone="basic_unet", backbone_checkpoint="")
    assert input_normaliser(shapnas_cfg, spec) is None
    assert cache_dir(cfg, case.image_paths[0].parents[1], spec, normalisation) != cache_dir(
        shapnas_cfg, case.image_paths[0].parents[1], spec)


@pytest.mark.slow
def test_nnunet_predict_uses_the_stored_normalisation(nnunet_cli_run, nnunet_results, tmp_path):
    import nibabel as nib

    from shapnas.cli import main
    from shapnas.data.prepared import prepare_data
    from shapnas.training.predict import checkpoint_normalisation, load_stage_model, model_slices, read_input

    root, _ = nnunet_cli_run
    stage = root / "msd" / "nnunet" / "seed-0" / "retrain-shapley"
    _, checkpoint = load_stage_model(stage, torch.device("cpu"))
    data = prepare_data(_cli_config(nnunet_results, root))
    volume = data.volumes["test"][0]
    image = next(p for p in (_msd_phantom(nnunet_results) / "imagesTr").iterdir() if p.name.startswith(volume.case_id))
    slices, _ = model_slices(read_input([image], checkpoint["spec"]["channel_names"]), checkpoint["spec"], 32,
                             normalisation=checkpoint_normalisation(checkpoint))
    assert np.array_equal(slices, volume.image)  # prediction preprocesses as training did
    out = tmp_path / "seg.nii.gz"
    assert main(["predict", "--run", str(stage), "--input", str(image), "--output", str(out), "--device", "cpu"]) == 0
    assert nib.load(out).shape == nib.load(image).shape[:3]


def test_nnunet_backbone_needs_its_checkpoint(capsys):
    from shapnas.cli import build_parser, main
    from shapnas.config.stage_configs import PretrainConfig

    with pytest.raises(ValueError, match="backbone='nnunet' is loaded from a trained model.*backbone_checkpoint"):
        PretrainConfig(dataset="msd", backbone="nnunet")
    assert PretrainConfig(dataset="msd", backbone="nnunet", backbone_checkpoint="m/fold_0/checkpoint_final.pth"
                          ).input_normalisation() == "nnunet:m/fold_0/checkpoint_final.pth"
    assert PretrainConfig(dataset="msd").input_normalisation() == "shapnas"
    assert main(["pretrain", "--dataset", "acdc", "--backbone", "nnunet", "--profile", "smoke"]) == 2
    assert "set backbone_checkpoint" in capsys.readouterr().err
    subparsers = next(a for a in build_parser()._actions if a.choices and "pretrain" in a.choices)
    text = " ".join(subparsers.choices["pretrain"].format_help().split())
    assert "nnunet" in text and "backbone_checkpoint=<nnU-Net results folder>/fold_K/checkpoint_final.pth" in text


@pytest.mark.slow
def test_nnunet_mismatches_are_named(nnunet_results, tmp_path):
    from shapnas.networks.backbones import load_backbone
    from shapnas.networks.nnunet import read_normalisation
    from shapnas.pipeline import run_pretrain

    checkpoint = _checkpoint(nnunet_results)
    with pytest.raises(ValueError, match=r"the nnU-Net model has 4 channels \(.*dataset\.json: .*FLAIR.*\); the "
                                         r"dataset has 3"):
        load_backbone(checkpoint, expected_in=3, expected_out=4, backbone="nnunet")
    with pytest.raises(ValueError, match=r"the nnU-Net model reads 4 channels .*; the dataset has 1"):
        read_normalisation(checkpoint, num_channels=1)
    with pytest.raises(ValueError, match=r"the nnU-Net model has 4 classes \(.*edema.*\); the dataset has 2"):
        run_pretrain(_cli_config(nnunet_results, tmp_path / "run", keep_classes={"msd": ["edema"]}))
    with pytest.raises(ValueError, match="its folder is 'model', not fold_K"):
        read_normalisation(tmp_path / "model" / "checkpoint_final.pth")
    copy = tmp_path / "strided" / nnunet_results.name
    shutil.copytree(nnunet_results, copy)
    plans = json.loads((copy / "plans.json").read_text())
    plans["configurations"]["2d"]["architecture"]["arch_kwargs"]["strides"][-1] = [4, 4]  # total stride 32
    (copy / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(ValueError, match=r"slice_size=48 is not a multiple of the nnU-Net network's total stride "
                                         r"32x32; .* patch size 96x80 \(e\.g\. --set slice_size=64\)"):
        read_normalisation(_checkpoint(copy), slice_size=48)
    assert read_normalisation(_checkpoint(copy), slice_size=64, num_channels=4).schemes[0] == "ZScoreNormalization"
