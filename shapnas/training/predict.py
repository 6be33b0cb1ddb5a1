"""Segment a whole NIfTI volume slice by slice with a trained stage's model, writing a label NIfTI.

The input goes through the training preprocessing, :func:`shapnas.data.volumes.network_input` (closest-canonical
RAS, slice axis, normalisation (an nnU-Net backbone's own, stored in the checkpoint), resize to the checkpoint's
slice size); the logits are resized back bilinearly to the input's in-plane size before the arg-max, classes are
mapped back to the dataset's on-disk label values, and the volume is reoriented to the input's voxel order and
written with the input's affine and shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from shapnas.data.volumes import canonical_slice_axis, network_input, read_nifti
from shapnas.training.evaluate import predict_volume

__all__ = ["InputCase", "read_input", "model_slices", "checkpoint_normalisation", "from_slices", "load_stage_model",
           "predict_case", "predict_nifti"]

_RAS = nib.orientations.axcodes2ornt(("R", "A", "S"))


@dataclass
class InputCase:
    """An input volume read for prediction.

    Args:
        data: (X, Y, Z, C) float32 in closest-canonical (RAS) voxel order.
        affine: the first input file's affine.
        ornt: ``nib.io_orientation`` of that affine (file voxel axes -> RAS).
        shape: the file's 3D voxel shape.
        header: the first input file's NIfTI header.
        path: the first input file.
    """

    data: np.ndarray
    affine: np.ndarray
    ornt: np.ndarray
    shape: tuple[int, int, int]
    header: Any
    path: Path


def _load_one(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, ...], Any]:
    """(canonical data with trailing singleton axes dropped, affine, orientation, file shape, header)."""
    data, affine, ornt = read_nifti(path)
    header = nib.load(path).header
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    return data, affine, ornt, tuple(int(n) for n in header.get_data_shape()), header


def read_input(paths: Sequence[str | Path], channel_names: Sequence[str]) -> InputCase:
    """Read one case: a 3D file per channel (in ``channel_names`` order) or a single (X, Y, Z, C) file.

    Args:
        paths: the input file(s).
        channel_names: the checkpoint's channels, e.g. ``("flair", "t1", "t1ce", "t2")``.

    Returns:
        The :class:`InputCase`.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: unreadable file, wrong dimensionality or channel count, channels on different grids;
            the message names the file and what was expected.
    """
    paths = [Path(p) for p in paths]
    num_channels = len(channel_names)
    names = ", ".join(channel_names)
    if len(paths) == 1:
        data, affine, ornt, shape, header = _load_one(paths[0])
        data = data[..., None] if data.ndim == 3 else data
        if data.ndim != 4 or data.shape[-1] != num_channels:
            raise ValueError(f"{paths[0]}: image shape {shape} and 1 input file; the model expects {num_channels} "
                             f"channel(s) ({names}): one 3D file (X, Y, Z) per channel in that order, or one 4D file "
                             f"(X, Y, Z, {num_channels})")
        return InputCase(data.astype(np.float32), affine, ornt, shape[:3], header, paths[0])
    if len(paths) != num_channels:
        raise ValueError(f"{paths[0]}: {len(paths)} input files given; the model expects {num_channels} "
                         f"channel(s) ({names}), one 3D file each in that order, or one 4D file")
    channels = []
    first = None
    for path in paths:
        data, affine, ornt, shape, header = _load_one(path)
        if data.ndim != 3:
            raise ValueError(f"{path}: image shape {data.shape}; expected a 3D image (X, Y, Z) per channel")
        shape = shape[:3]
        if first is None:
            first = (affine, ornt, shape, header)
        elif shape != first[2] or not np.allclose(affine, first[0], rtol=1e-4, atol=1e-2):
            raise ValueError(f"{path}: shape {shape} / affine differ from {paths[0]} (shape {first[2]}); "
                             "expected every channel on one grid")
        channels.append(data.astype(np.float32))
    affine, ornt, shape, header = first
    return InputCase(np.stack(channels, axis=-1), affine, ornt, shape, header, paths[0])


def model_slices(case: InputCase, spec: dict[str, Any], slice_size: int,
                 slice_axis_hint: int | None = None, normalisation: Any = None) -> tuple[np.ndarray, int]:
    """The model's input slices of a case: :func:`shapnas.data.volumes.network_input`, as in training.

    Args:
        case: the input.
        spec: the checkpoint's spec (``modality``; ``name`` = ``brats`` forces the nonzero mask).
        slice_size: the checkpoint's slice size.
        slice_axis_hint: voxel axis of the file holding the slices (KiTS19: 0), or None (from the geometry).
        normalisation: an nnU-Net backbone's ``NnUNetNormalisation`` (:func:`checkpoint_normalisation`), or None
            for shapnas's. Defaults to None.

    Returns:
        (slices (S, C, slice_size, slice_size) float32, canonical slice axis).
    """
    axis, _ = canonical_slice_axis(case.affine, case.ornt, spec["modality"], slice_axis_hint)
    slices = network_input(case.data, axis, modality=spec["modality"], dataset=spec.get("name", ""),
                           slice_size=slice_size, normalisation=normalisation)
    return slices, axis


def checkpoint_normalisation(checkpoint: dict[str, Any]) -> Any:
    """The input normalisation a ``model.pt``'s network was trained with: its nnU-Net backbone's
    (``NnUNetNormalisation``, stored with the backbone), or None for shapnas's own."""
    backbone = checkpoint.get("backbone") or {}
    if backbone.get("name") != "nnunet":
        return None
    from shapnas.networks.nnunet import normalisation_from_dict  # imports nnunetv2 only for nnU-Net backbones

    return normalisation_from_dict(backbone["init_args"]["normalisation"])


def from_slices(slices: np.ndarray, axis: int) -> np.ndarray:
    """Inverse of ``shapnas.data.volumes.to_slices``: (S, H, W) -> canonical (X, Y, Z)."""
    a, b = [k for k in range(3) if k != axis]
    return np.moveaxis(slices[:, ::-1, ::-1], (0, 1, 2), (axis, b, a))


def load_stage_model(stage: str | Path, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model of a stage directory (its ``model.pt``) or of a ``model.pt`` file, in eval mode.

    Raises:
        FileNotFoundError: no ``model.pt`` there.
        ValueError: the checkpoint lacks what prediction needs.
    """
    path = Path(stage)
    path = path if path.suffix == ".pt" and not path.is_dir() else path / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model checkpoint not found; expected a stage directory holding model.pt "
                                "(pretrain, finetune or retrain-<policy>)")
    from shapnas.networks.checkpoints import load_model  # imports the retrofit modules only when a model is loaded

    model, checkpoint = load_model(path, device)
    missing = [k for k in ("spec", "slice_size") if k not in checkpoint]
    missing += [f"spec.{k}" for k in ("channel_names", "class_names", "label_values", "modality")
                if k not in checkpoint.get("spec", {})]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {', '.join(missing)}; expected a shapnas model.pt")
    return model, checkpoint


def _default_slice_axis(spec: dict[str, Any], checkpoint: dict[str, Any]) -> int | None:
    """The checkpoint's ``slice_axis_hint``; else KiTS19 (kits without a cyst class) slices voxel axis 0."""
    if checkpoint.get("slice_axis_hint") is not None:
        return int(checkpoint["slice_axis_hint"])
    if spec.get("name") == "kits" and "cyst" not in spec["class_names"]:
        return 0
    return None


def _write_labels(path: Path, labels: np.ndarray, case: InputCase) -> Path:
    header = case.header.copy()
    header.set_data_dtype(np.uint8)
    header.set_slope_inter(None, None)
    header.set_intent("none")
    image = nib.Nifti1Image(labels.astype(np.uint8), case.affine, header=header)
    image.header["cal_min"], image.header["cal_max"] = 0, int(labels.max(initial=0))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)
    return path


def predict_case(model: torch.nn.Module, checkpoint: dict[str, Any], inputs: str | Path | Sequence[str | Path],
                 output_path: str | Path, *, device: torch.device | str = "cpu", batch_size: int = 16,
                 slice_axis_hint: int | None = None) -> Path:
    """Segment one case with a model and its checkpoint metadata; write a uint8 label NIfTI.

    Args:
        model: on ``device``; maps (B, C, H, W) to logits (B, K, H, W).
        checkpoint: ``spec`` ({name, channel_names, class_names, label_values, modality}), ``slice_size``,
            optionally ``slice_axis_hint`` (a ``model.pt`` dict, see ``shapnas.networks.checkpoints``).
        inputs: one 3D file (or one 4D file) or one 3D file per channel in ``spec.channel_names`` order.
        output_path: the ``.nii.gz``/``.nii`` to write.
        device: where the model lives. Defaults to ``cpu``.
        batch_size: slices per forward pass. Defaults to 16.
        slice_axis_hint: voxel axis of the input holding the slices; None uses the checkpoint's (KiTS19: 0)
            or the geometry, as in training. Defaults to None.

    Returns:
        The output path; the file has the input's 3D shape and affine, voxel values in ``spec.label_values``.

    Raises:
        FileNotFoundError: a missing input.
        ValueError: a bad input, naming the file and the problem.
    """
    device = torch.device(device)
    spec = checkpoint["spec"]
    paths = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if not paths:
        raise ValueError("no input file given; expected one NIfTI file per channel or one 4D file")
    case = read_input(paths, spec["channel_names"])
    label_values = np.asarray(spec["label_values"], dtype=np.int64)
    if label_values.max() > 255 or label_values.min() < 0:
        raise ValueError(f"{case.path}: label values {label_values.tolist()} do not fit a uint8 label file")
    hint = slice_axis_hint if slice_axis_hint is not None else _default_slice_axis(spec, checkpoint)
    slices, axis = model_slices(case, spec, int(checkpoint["slice_size"]), hint, checkpoint_normalisation(checkpoint))
    a, b = [k for k in range(3) if k != axis]
    height, width = case.data.shape[b], case.data.shape[a]  # in-plane size of the slices (to_slices)
    pred = predict_volume(model, slices, device, batch_size, output_size=(height, width))  # (S, H, W)
    if pred.size and int(pred.max()) >= len(label_values):
        raise ValueError(f"{case.path}: the model predicts class {int(pred.max())}; the checkpoint lists "
                         f"{len(label_values)} classes")
    canonical = from_slices(label_values[pred], axis)  # (X, Y, Z) canonical
    disk = nib.orientations.apply_orientation(canonical, nib.orientations.ornt_transform(_RAS, case.ornt))
    if disk.shape != case.shape:
        raise ValueError(f"{case.path}: prediction shape {disk.shape} != input shape {case.shape} (internal error)")
    return _write_labels(Path(output_path), disk, case)


def predict_nifti(stage: str | Path, inputs: str | Path | Sequence[str | Path], output_path: str | Path, *,
                  device: torch.device | str = "cpu", batch_size: int = 16,
                  slice_axis_hint: int | None = None) -> Path:
    """Segment one case with a stage's model (whole volume, slice by slice) and write its label NIfTI.

    Args:
        stage: a stage directory with ``model.pt`` (``retrain-<policy>`` for the found architecture,
            ``pretrain``/``finetune`` for the backbone) or the ``model.pt`` file.
        inputs: one 3D file (or one 4D file) or one 3D file per channel in the checkpoint's channel order.
        output_path: the ``.nii.gz``/``.nii`` to write.
        device: where to run the model. Defaults to ``cpu``.
        batch_size: slices per forward pass. Defaults to 16.
        slice_axis_hint: see :func:`predict_case`. Defaults to None.

    Returns:
        The output path (uint8 labels in the dataset's on-disk values, the input's affine and 3D shape).

    Raises:
        FileNotFoundError: a missing input or checkpoint.
        ValueError: a bad input (naming the file and the problem) or checkpoint.
    """
    model, checkpoint = load_stage_model(stage, torch.device(device))
    return predict_case(model, checkpoint, inputs, output_path, device=device, batch_size=batch_size,
                        slice_axis_hint=slice_axis_hint)
