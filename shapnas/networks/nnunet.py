"""A trained nnU-Net v2 2D model as a retrofit backbone: loaded with nnU-Net's own code, seen through a skip adapter.

A researcher's nnU-Net v2 results folder (``plans.json``, ``dataset.json``, ``fold_K/checkpoint_final.pth``) is
loaded into the network nnU-Net itself builds from the plans (``dynamic_network_architectures``: ``PlainConvUNet``
or ``ResidualEncoderUNet``, deep supervision off, as nnU-Net's predictor does), together with the configuration's
input normalisation (``normalization_schemes``, ``use_mask_for_norm`` and, for CT, the dataset's foreground
intensity statistics). :func:`normalise_case` applies that normalisation with nnU-Net's own classes
(``nnunetv2.preprocessing.normalization``) on the nonzero crop nnU-Net's preprocessor uses, so that shapnas sees
what the network was trained on. :class:`NnUNetAdapter` exposes the decoder's skips level by level
(``encode``/``up_feature``/``merge``/``head``) in exactly the order of nnU-Net's ``UNetDecoder.forward``, so a
retrofit built on it computes, at implant time, exactly what the nnU-Net network computes.

As the pipeline's backbone ``nnunet`` (``backbone_checkpoint=<results folder>/fold_K/checkpoint_final.pth``):
:func:`load_nnunet_backbone` gives the network with ``init_args`` holding the plans, ``dataset.json``, the
configuration and the normalisation, so that :func:`nnunet_from_init_args` rebuilds it from a stage's ``model.pt``
alone; :func:`read_normalisation` gives the data layer the normalisation (and checks the slice size against the
network's total stride); :func:`normalise_volume` normalises a whole case on its own grid.

Only the 2D configurations are supported (shapnas retrofits 2D U-Nets); nnU-Net's own trainer variants are not
imported (a custom trainer overriding ``build_network_architecture`` is not supported: the network is built from
the plans, as ``nnUNetTrainer.build_network_architecture`` does).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from torch import nn

from shapnas.networks.skip_adapter import SkipAdapter

__all__ = ["NnUNetNormalisation", "NnUNetModel", "NnUNetAdapter", "load_nnunet_model", "normalise_case",
           "nnunet_checkpoint_path", "split_checkpoint_path", "read_normalisation", "normalise_volume",
           "load_nnunet_backbone", "nnunet_from_init_args", "total_stride", "check_slice_size",
           "normalisation_to_dict", "normalisation_from_dict"]

_RESULTS_LAYOUT = "an nnU-Net v2 results folder holding plans.json, dataset.json and fold_K/<checkpoint>"


@dataclass(frozen=True)
class NnUNetNormalisation:
    """How nnU-Net normalises each input channel of one configuration (plain types, as in ``plans.json``).

    Attributes:
        schemes: the normaliser class name per channel (``ZScoreNormalization``, ``CTNormalization``, ...).
        use_mask_for_norm: per channel, whether statistics come from the nonzero mask only.
        intensity_properties: per channel (``"0"``, ``"1"``, ...), the dataset's foreground intensity statistics
            (``mean``, ``std``, ``percentile_00_5``, ``percentile_99_5``, ...); used by ``CTNormalization``.
    """

    schemes: tuple[str, ...]
    use_mask_for_norm: tuple[bool, ...]
    intensity_properties: dict[str, dict[str, float]] = field(default_factory=dict)


def normalisation_to_dict(normalisation: NnUNetNormalisation) -> dict[str, Any]:
    """An :class:`NnUNetNormalisation` as plain types (lists, dicts), for checkpoints and cache keys."""
    return {"schemes": list(normalisation.schemes), "use_mask_for_norm": list(normalisation.use_mask_for_norm),
            "intensity_properties": {k: dict(v) for k, v in normalisation.intensity_properties.items()}}


def normalisation_from_dict(values: dict[str, Any]) -> NnUNetNormalisation:
    """The :class:`NnUNetNormalisation` of :func:`normalisation_to_dict`'s dict."""
    return NnUNetNormalisation(tuple(str(s) for s in values["schemes"]),
                               tuple(bool(m) for m in values["use_mask_for_norm"]),
                               {str(k): {n: float(x) for n, x in v.items()}
                                for k, v in values.get("intensity_properties", {}).items()})


@dataclass
class NnUNetModel:
    """A loaded nnU-Net v2 2D model.

    Attributes:
        network: the network nnU-Net builds from the plans, trained weights loaded, deep supervision off, eval mode.
        normalisation: the configuration's input normalisation (:func:`normalise_case`).
        configuration: the nnU-Net configuration name (``2d``).
        channel_names: ``dataset.json`` ``channel_names`` (``{"0": "FLAIR", ...}``).
        labels: ``dataset.json`` ``labels`` (``{"background": 0, ...}``; regions as lists).
        num_input_channels: image channels the network reads.
        num_classes: output channels (segmentation heads).
        patch_size: the configuration's 2D patch size (H, W).
        spacing: the configuration's target in-plane spacing (mm).
        transpose_forward: nnU-Net's axis permutation of a case read by its reader (slices along the first
            spatial axis after it).
        trainer_name: the trainer class that wrote the checkpoint.
        checkpoint: the checkpoint file loaded.
    """

    network: nn.Module
    normalisation: NnUNetNormalisation
    configuration: str
    channel_names: dict[str, str]
    labels: dict[str, Any]
    num_input_channels: int
    num_classes: int
    patch_size: tuple[int, ...]
    spacing: tuple[float, ...]
    transpose_forward: tuple[int, ...]
    trainer_name: str
    checkpoint: Path


def nnunet_checkpoint_path(results_folder: str | Path, fold: int | str = 0,
                           checkpoint: str = "checkpoint_final.pth") -> Path:
    """The checkpoint file of ``fold`` in an nnU-Net v2 results folder, checked to exist with its metadata.

    Args:
        results_folder: ``<nnUNet_results>/DatasetXXX_Name/<trainer>__<plans>__<configuration>``.
        fold: the fold (``0``..``4`` or ``"all"``).
        checkpoint: the checkpoint file name. Defaults to ``checkpoint_final.pth``.

    Returns:
        ``results_folder/fold_<fold>/<checkpoint>``.

    Raises:
        FileNotFoundError: naming the missing file or folder and what was expected.
    """
    folder = Path(results_folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder; expected {_RESULTS_LAYOUT}")
    for name in ("plans.json", "dataset.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name}: missing; expected {_RESULTS_LAYOUT} "
                                    f"(nnUNetv2_train writes {name} there)")
    path = folder / f"fold_{fold}" / checkpoint
    if not path.is_file():
        found = sorted(str(p.relative_to(folder)) for p in folder.glob("fold_*/*.pth"))
        raise FileNotFoundError(f"{path}: missing; expected fold_{fold}/{checkpoint} in {folder} "
                                f"(checkpoints found: {', '.join(found) or 'none'})")
    return path


def split_checkpoint_path(checkpoint: str | Path) -> tuple[Path, int | str, str, str]:
    """The parts of an nnU-Net checkpoint path ``<results folder>/fold_<K>/<file>``.

    Args:
        checkpoint: e.g. ``.../Dataset501_X/nnUNetTrainer__nnUNetPlans__2d/fold_0/checkpoint_final.pth``.

    Returns:
        (results folder, fold (an int, or ``"all"``), checkpoint file name, configuration: the part of the results
        folder's name after its last ``__`` (nnU-Net names it ``<trainer>__<plans>__<configuration>``), ``2d`` when
        the name has none).

    Raises:
        ValueError: when the file's folder is not named ``fold_<K>``.
    """
    path = Path(checkpoint)
    if not path.parent.name.startswith("fold_"):
        raise ValueError(f"{path}: expected an nnU-Net checkpoint <results folder>/fold_K/<checkpoint>.pth "
                         f"({_RESULTS_LAYOUT}); its folder is {path.parent.name!r}, not fold_K")
    fold_text = path.parent.name.removeprefix("fold_")
    fold: int | str = int(fold_text) if fold_text.isdigit() else fold_text
    folder = path.parent.parent
    configuration = folder.name.rsplit("__", 1)[-1] if "__" in folder.name else "2d"
    return folder, fold, path.name, configuration


def _plans_of(checkpoint: str | Path) -> tuple[Any, Any, Path]:
    """nnU-Net's ``PlansManager`` and ``ConfigurationManager`` of a checkpoint's results folder (files checked)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder, fold, name, configuration = split_checkpoint_path(checkpoint)
    nnunet_checkpoint_path(folder, fold, name)
    plans_manager = PlansManager(str(folder / "plans.json"))
    if configuration not in plans_manager.available_configurations:
        raise ValueError(f"{folder / 'plans.json'}: no configuration {configuration!r}; "
                         f"available: {', '.join(plans_manager.available_configurations)}")
    return plans_manager, plans_manager.get_configuration(configuration), folder


def read_normalisation(checkpoint: str | Path, slice_size: int | None = None,
                       num_channels: int | None = None) -> NnUNetNormalisation:
    """The input normalisation of an nnU-Net checkpoint's configuration, read from its results folder's
    ``plans.json`` (the weights are not read), with the data's slice size and channels checked against the plans.

    Args:
        checkpoint: ``<results folder>/fold_K/checkpoint_final.pth`` (:func:`split_checkpoint_path`).
        slice_size: when given, checked to be a multiple of the network's total stride (:func:`check_slice_size`).
        num_channels: the dataset's image channels, when given checked against the configuration's.

    Returns:
        The configuration's :class:`NnUNetNormalisation`.

    Raises:
        FileNotFoundError: a missing results folder, ``plans.json``, ``dataset.json`` or checkpoint.
        ValueError: a configuration missing from the plans, a slice size the network cannot take, or a channel
            count other than the model's (naming both).
    """
    plans_manager, configuration_manager, folder = _plans_of(checkpoint)
    normalisation = _normalisation(plans_manager, configuration_manager)
    if num_channels is not None and num_channels != len(normalisation.schemes):
        channels = _read_json(folder / "dataset.json").get("channel_names", {})
        raise ValueError(f"{checkpoint}: the nnU-Net model reads {len(normalisation.schemes)} channels "
                         f"({folder / 'dataset.json'}: {channels}); the dataset has {num_channels}")
    if slice_size is not None:
        check_slice_size(slice_size, configuration_manager, checkpoint)
    return normalisation


def normalise_volume(image: np.ndarray, normalisation: NnUNetNormalisation) -> np.ndarray:
    """nnU-Net's normalisation of a whole case, on its own grid: :func:`normalise_case` (nonzero crop, nnU-Net's
    normaliser classes, statistics of the whole crop) pasted back into zeros, the value nnU-Net pads a cropped
    case with in training and prediction.

    The result does not depend on the axis order of ``image``: the crop is the bounding box of the nonzero voxels
    and the statistics are per channel over the crop, so a case in shapnas's canonical order gets, voxel by voxel,
    the values nnU-Net's preprocessing gives it.

    Args:
        image: (X, Y, Z, C) intensities, channels last (the canonical arrays of :mod:`shapnas.data.volumes`).
        normalisation: the model's :class:`NnUNetNormalisation`.

    Returns:
        (X, Y, Z, C) float32, zero outside nnU-Net's nonzero crop.
    """
    channels_first = np.moveaxis(image, -1, 0)  # (C, X, Y, Z)
    crop, _, bbox = normalise_case(channels_first, normalisation)
    out = np.zeros(channels_first.shape, dtype=np.float32)
    out[(slice(None), *(slice(a, b) for a, b in bbox))] = crop
    return np.moveaxis(out, 0, -1)  # (X, Y, Z, C)


def total_stride(configuration_manager: Any) -> tuple[int, ...]:
    """The network's total down-sampling per spatial axis (the product of its stages' strides).

    Args:
        configuration_manager: nnU-Net's ``ConfigurationManager`` of the model's configuration.

    Returns:
        (2,) strides: an input's height and width must be multiples of them.
    """
    strides = [np.broadcast_to(np.asarray(s, dtype=np.int64), (2,))
               for s in configuration_manager.network_arch_init_kwargs["strides"]]
    return tuple(int(v) for v in np.prod(np.stack(strides), axis=0))  # (2,): an int stride applies to both axes


def check_slice_size(slice_size: int, configuration_manager: Any, source: str | Path = "") -> None:
    """Raise when ``slice_size`` is not a multiple of the nnU-Net network's total stride.

    Args:
        slice_size: shapnas's square slice size.
        configuration_manager: nnU-Net's ``ConfigurationManager`` of the model's configuration.
        source: the checkpoint, named in the message.

    Raises:
        ValueError: naming the slice size, the stride and the plan's patch size.
    """
    stride = total_stride(configuration_manager)
    if any(slice_size % s for s in stride):
        patch = [int(v) for v in configuration_manager.patch_size]
        step = max(stride)
        nearest = max(step, int(round(min(patch) / step)) * step)
        raise ValueError(f"{source}: slice_size={slice_size} is not a multiple of the nnU-Net network's total stride "
                         f"{'x'.join(map(str, stride))}; set slice_size to a multiple of it near the plan's patch "
                         f"size {'x'.join(map(str, patch))} (e.g. --set slice_size={nearest})")


def _plain_json(value: Any) -> Any:
    """JSON-like data as dicts, lists and scalars only (tuples as lists), as ``weights_only`` loading reads."""
    if isinstance(value, dict):
        return {str(k): _plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_json(v) for v in value]
    return value


def load_nnunet_backbone(checkpoint: str | Path, expected_in: int | None = None, expected_out: int | None = None,
                         ) -> tuple[nn.Module, str, dict[str, Any]]:
    """A trained nnU-Net v2 2D model as a shapnas backbone (:func:`shapnas.networks.backbones.load_backbone`).

    Args:
        checkpoint: ``<results folder>/fold_K/checkpoint_final.pth`` (:func:`split_checkpoint_path`).
        expected_in: the dataset's image channels, checked against ``dataset.json``'s ``channel_names``.
        expected_out: the dataset's classes (background included), checked against ``dataset.json``'s labels.

    Returns:
        (network in eval mode, ``"nnunet"``, init_args): ``init_args`` holds what rebuilds the network without the
        results folder (:func:`nnunet_from_init_args`): ``plans``, ``dataset_json``, ``configuration``,
        ``normalisation`` (:func:`normalisation_to_dict`), ``source`` (the checkpoint path), all plain types.

    Raises:
        FileNotFoundError, ValueError: as :func:`load_nnunet_model`; ValueError also for a region-based model
            (sigmoid outputs, where shapnas trains softmax classes) and for channel or class counts other than
            the dataset's (naming both).
    """
    folder, fold, name, configuration = split_checkpoint_path(checkpoint)
    model = load_nnunet_model(folder, fold, name, configuration)
    if any(isinstance(v, (list, tuple)) for v in model.labels.values()):
        raise ValueError(f"{folder / 'dataset.json'}: a region-based nnU-Net model (labels {model.labels}); "
                         "shapnas retrofits models trained on plain classes (softmax)")
    for what, ours, theirs, names in (("channels", expected_in, model.num_input_channels, model.channel_names),
                                      ("classes", expected_out, model.num_classes, model.labels)):
        if ours is not None and ours != theirs:
            raise ValueError(f"{checkpoint}: the nnU-Net model has {theirs} {what} ({folder / 'dataset.json'}: "
                             f"{names}); the dataset has {ours}")
    init_args = {"plans": _plain_json(_read_json(folder / "plans.json")),
                 "dataset_json": _plain_json(_read_json(folder / "dataset.json")),
                 "configuration": configuration, "normalisation": normalisation_to_dict(model.normalisation),
                 "source": str(checkpoint)}
    return model.network, "nnunet", init_args


def nnunet_from_init_args(init_args: dict[str, Any]) -> nn.Module:
    """The (untrained) network of :func:`load_nnunet_backbone`'s ``init_args``, built as nnU-Net builds it; the
    global torch RNG is left untouched.

    Returns:
        The network (deep supervision off); load its state dict to get the trained one.
    """
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_manager = PlansManager(copy.deepcopy(init_args["plans"]))
    configuration_manager = plans_manager.get_configuration(init_args["configuration"])
    network, _, _ = _build_network(plans_manager, configuration_manager, copy.deepcopy(init_args["dataset_json"]))
    return network


def _numpy_safe_globals() -> list[Any]:
    """The numpy types nnU-Net's checkpoints pickle in their training log (scalars and dtypes): data, no code."""
    dtypes = {type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_)}
    return [np._core.multiarray.scalar, np.dtype, *sorted(dtypes, key=lambda t: t.__name__)]


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """An nnU-Net checkpoint read with ``weights_only=True`` (numpy scalars and dtypes allow-listed).

    Raises:
        ValueError: naming the file when it cannot be read or lacks ``network_weights``.
    """
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - re-raised with the path
        raise ValueError(f"{path}: cannot read the nnU-Net checkpoint ({error})") from error
    if not isinstance(data, dict) or "network_weights" not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: found {keys}; expected an nnU-Net v2 checkpoint with 'network_weights'")
    return data


def _normalisation(plans_manager: Any, configuration_manager: Any) -> NnUNetNormalisation:
    """The :class:`NnUNetNormalisation` of a configuration (nnU-Net's ``PlansManager``/``ConfigurationManager``)."""
    properties = plans_manager.foreground_intensity_properties_per_channel
    return NnUNetNormalisation(
        schemes=tuple(str(s) for s in configuration_manager.normalization_schemes),
        use_mask_for_norm=tuple(bool(m) for m in configuration_manager.use_mask_for_norm),
        intensity_properties={str(k): {n: float(v) for n, v in p.items()} for k, p in properties.items()})


def _build_network(plans_manager: Any, configuration_manager: Any, dataset_json: dict) -> tuple[nn.Module, int, int]:
    """The network nnU-Net builds for a configuration, without deep supervision (as its predictor does).

    Returns:
        (network, input channels, output channels).
    """
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    num_in = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
    num_out = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    with torch.random.fork_rng(devices=[]):  # nnU-Net's weight init draws from the global RNG: leave it untouched
        network = get_network_from_plans(configuration_manager.network_arch_class_name,
                                         configuration_manager.network_arch_init_kwargs,
                                         configuration_manager.network_arch_init_kwargs_req_import,
                                         num_in, num_out, allow_init=True, deep_supervision=False)
    return network, int(num_in), int(num_out)


def _load_weights(path: Path, network: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Load ``weights`` strictly (a ``module.`` or ``_orig_mod.`` prefix stripped), naming mismatches."""
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in weights.items()}
    own = network.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        raise ValueError(f"{path}: network_weights do not match the network built from plans.json "
                         f"(missing {missing[:5]}, unexpected {unexpected[:5]}, shapes {shapes[:5]})")
    network.load_state_dict(state)


def load_nnunet_model(results_folder: str | Path, fold: int | str = 0, checkpoint: str = "checkpoint_final.pth",
                      configuration: str = "2d") -> NnUNetModel:
    """Load a trained nnU-Net v2 2D model with nnU-Net's own plans handling and network construction.

    Args:
        results_folder: ``<nnUNet_results>/DatasetXXX_Name/<trainer>__<plans>__<configuration>``.
        fold: the fold whose checkpoint is loaded (``0``..``4`` or ``"all"``). Defaults to 0.
        checkpoint: the checkpoint file name. Defaults to ``checkpoint_final.pth``.
        configuration: the nnU-Net configuration; must be the one the checkpoint was trained with and 2D.
            Defaults to ``2d``.

    Returns:
        The :class:`NnUNetModel` (network in eval mode on the CPU).

    Raises:
        FileNotFoundError: a missing folder, ``plans.json``, ``dataset.json`` or checkpoint (named).
        ValueError: an unreadable checkpoint, a configuration missing from the plans, not 2D, or not the one
            the checkpoint was trained with, or weights that do not fit the planned network.
    """
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    path = nnunet_checkpoint_path(results_folder, fold, checkpoint)
    folder = Path(results_folder)
    plans_manager = PlansManager(str(folder / "plans.json"))
    dataset_json = _read_json(folder / "dataset.json")
    if configuration not in plans_manager.available_configurations:
        raise ValueError(f"{folder / 'plans.json'}: no configuration {configuration!r}; "
                         f"available: {', '.join(plans_manager.available_configurations)}")
    configuration_manager = plans_manager.get_configuration(configuration)
    if len(configuration_manager.patch_size) != 2:
        raise ValueError(f"{folder / 'plans.json'}: configuration {configuration!r} is "
                         f"{len(configuration_manager.patch_size)}D; shapnas retrofits 2D configurations (2d)")
    data = _read_checkpoint(path)
    trained = data.get("init_args", {}).get("configuration", configuration)
    if trained != configuration:
        raise ValueError(f"{path}: trained with configuration {trained!r}; requested {configuration!r}")
    network, num_in, num_out = _build_network(plans_manager, configuration_manager, dataset_json)
    _load_weights(path, network, data["network_weights"])
    return NnUNetModel(
        network=network.eval(), normalisation=_normalisation(plans_manager, configuration_manager),
        configuration=configuration, channel_names=dict(dataset_json.get("channel_names", {})),
        labels=dict(dataset_json.get("labels", {})), num_input_channels=num_in, num_classes=num_out,
        patch_size=tuple(int(s) for s in configuration_manager.patch_size),
        spacing=tuple(float(s) for s in configuration_manager.spacing),
        transpose_forward=tuple(int(a) for a in plans_manager.transpose_forward),
        trainer_name=str(data.get("trainer_name", "")), checkpoint=path)


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON file as a dict (nnU-Net's own reader)."""
    from batchgenerators.utilities.file_and_folder_operations import load_json

    return load_json(str(path))


def _normaliser_class(scheme: str) -> type:
    """nnU-Net's normaliser class of ``scheme``, found as its ``DefaultPreprocessor`` finds it.

    Raises:
        ValueError: for a scheme nnU-Net has no class for.
    """
    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    folder = str(Path(nnunetv2.__path__[0]) / "preprocessing" / "normalization")
    found = recursive_find_python_class(folder, scheme, "nnunetv2.preprocessing.normalization")
    if found is None:
        raise ValueError(f"normalisation scheme {scheme!r}: no such class in nnunetv2.preprocessing.normalization")
    return found


def normalise_case(image: np.ndarray, normalisation: NnUNetNormalisation, label: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray | None, list[list[int]]]:
    """Normalise one case as nnU-Net's ``DefaultPreprocessor`` does before resampling: crop to the nonzero
    region (``crop_to_nonzero``: all channels, holes filled), then each channel with its configuration's
    normaliser class, the nonzero mask given where ``use_mask_for_norm`` (outside it stays 0).

    Statistics of ``ZScoreNormalization`` are those of the whole cropped case (not of one slice), as in
    nnU-Net. The array must be in nnU-Net's axis order: as its reader returns a case ((C, Z, Y, X) for NIfTI
    read by ``SimpleITKIO``), permuted by ``transpose_forward``; a 2D configuration's slices are then
    ``out[:, s]``. No resampling is done: the case should already have the configuration's spacing.

    Args:
        image: (C, S, H, W) (or (C, H, W)) intensities, any real dtype.
        normalisation: the model's :class:`NnUNetNormalisation`.
        label: optional (S, H, W) (or (H, W)) labels, cropped alike.

    Returns:
        (normalised (C, S', H', W') float32 crop, the label crop or None, bbox: ``[[start, stop], ...]`` per
        spatial axis of the crop in ``image``).

    Raises:
        ValueError: when the channel count differs from the configuration's.
    """
    from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero

    if image.shape[0] != len(normalisation.schemes):
        raise ValueError(f"image has {image.shape[0]} channels; the nnU-Net configuration normalises "
                         f"{len(normalisation.schemes)} ({', '.join(normalisation.schemes)})")
    data = image.astype(np.float32)  # a copy, as nnU-Net's run_case_npy
    seg = None if label is None else np.asarray(label)[None].astype(np.int16)
    data, seg, bbox = crop_to_nonzero(data, seg)  # seg: -1 outside the nonzero mask where the label is 0
    for c, scheme in enumerate(normalisation.schemes):
        normaliser = _normaliser_class(scheme)(use_mask_for_norm=normalisation.use_mask_for_norm[c],
                                               intensityproperties=normalisation.intensity_properties.get(str(c), {}))
        data[c] = normaliser.run(data[c], seg[0])
    cropped_label = None if label is None else np.where(seg[0] < 0, 0, seg[0]).astype(np.asarray(label).dtype)
    return data, cropped_label, [[int(a), int(b)] for a, b in bbox]


class NnUNetAdapter(SkipAdapter):
    """nnU-Net's ``PlainConvUNet`` / ``ResidualEncoderUNet`` (``dynamic_network_architectures``, 2D) as a
    :class:`SkipAdapter`.

    The encoder returns one tensor per stage (full resolution first); the last is the bottom, the others are
    the skips. ``UNetDecoder.forward`` runs stage ``s = 0..n-2`` from the bottom: ``x = transpconvs[s](x)``,
    ``x = stages[s](cat((x, skips[-(s+2)]), 1))``; the logits are ``seg_layers[-1]`` of the last stage's output.
    Skip level ``l`` (full resolution first) is thus decoder stage ``s = n - 2 - l``; note that nnU-Net puts the
    upsampled feature *first* in the concatenation.

    Args:
        net: a 2D ``PlainConvUNet`` or ``ResidualEncoderUNet`` (its ``decoder`` a ``UNetDecoder``). With deep
            supervision on, the adapter's output is the full-resolution output (the first of the net's list).

    Raises:
        ValueError: for another decoder (``ResidualUNet``'s ``UNetResDecoder``) or a 3D network.
    """

    backbone_name = "nnunet"

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        encoder, decoder = getattr(net, "encoder", None), getattr(net, "decoder", None)
        if type(decoder) is not UNetDecoder or encoder is None or not getattr(encoder, "return_skips", False):
            raise ValueError(f"nnU-Net adapter: {type(net).__name__} with decoder {type(decoder).__name__}; "
                             "expected PlainConvUNet or ResidualEncoderUNet (UNetDecoder, encoder returning skips)")
        if encoder.conv_op is not nn.Conv2d:
            raise ValueError(f"nnU-Net adapter: conv_op {encoder.conv_op.__name__}; "
                             "expected Conv2d (a 2d configuration)")
        self.net = net
        self.skip_channels = [int(c) for c in encoder.output_channels[:-1]]
        # the transposed conv of each level outputs the skip's channels
        self.decoder_channels = [int(self._transpconv(level).out_channels) for level in range(len(self.skip_channels))]

    def _stage(self, level: int) -> int:
        """The decoder stage that reads skip ``level``."""
        return len(self.skip_channels) - 1 - level

    def _transpconv(self, level: int) -> nn.Module:
        return self.net.decoder.transpconvs[self._stage(level)]

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        outputs = self.net.encoder(x)  # [(B, f_0, H, W), (B, f_1, H/2, W/2), ..., bottom]
        return list(outputs[:-1]), outputs[-1]

    def up_feature(self, level: int, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self._transpconv(level)(deep)  # (B, f_l, H_l, W_l)

    def merge(self, level: int, skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        return self.net.decoder.stages[self._stage(level)](torch.cat((up, skip), 1))  # upsampled first, as nnU-Net

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.decoder.seg_layers[-1](x)  # (B, num_classes, H, W)
