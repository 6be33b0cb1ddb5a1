"""Training-time augmentation of 2D slices with MONAI: the policies ``none`` and ``standard``.

``standard`` is the usual segmentation recipe (as nnU-Net's, Isensee et al. Nat. Methods 2021, at smaller
magnitudes for 2D slices): a small random affine (rotation, scaling, translation) and mirroring along the axes the
dataset's anatomy allows (:data:`FLIP_AXES`), applied to an image and its label with the same matrix (bilinear for
the image, nearest for the label, so labels keep their class ids); then, on the image only, Gaussian noise,
Gaussian smoothing, intensity scaling and shift and contrast (gamma), each with its own probability. Every slice of
a batch gets its own draw. The operations are MONAI's: the matrices from ``create_rotate``/``create_scale``/
``create_translate``, one batched resampling with ``monai.networks.layers.AffineTransform`` (one grid for the whole
batch rather than a ``RandAffine`` grid per slice), and the intensity transforms ``ScaleIntensity``,
``ShiftIntensity``, ``AdjustContrast``, ``GaussianSmooth`` and ``RandGaussianNoise`` on the slices drawn for them.
Randomness comes only from the ``torch.Generator`` passed in: one fixed-size block of uniforms a batch (choices,
magnitudes and the noise's ``set_random_state`` seeds), so a run's seed fixes every augmented batch. ``none``
returns its inputs and draws nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai.networks.layers import AffineTransform
from monai.transforms import AdjustContrast, GaussianSmooth, RandGaussianNoise, ScaleIntensity, ShiftIntensity
from monai.transforms.utils import create_rotate, create_scale, create_translate
from monai.utils import convert_to_tensor

from shapnas.config.stage_configs import AUGMENTATION_NAMES

__all__ = ["AUGMENTATION_NAMES", "FLIP_AXES", "DRAWS", "AUGMENTERS", "check_augmentation", "flip_axes",
           "affine_matrices", "BatchAugmenter", "build_augmenter", "augment_batch"]

# Spatial axes of a (H, W) slice that may be mirrored, per dataset; a dataset not named is never mirrored. Slices
# are laid out with rows anterior/superior on top and columns patient right on the left
# (shapnas.data.volumes.to_slices), so axis 1 is left/right. Only the brain is mirrored (tumours occur in either
# hemisphere); a cardiac short-axis slice (ACDC: the right ventricle on the patient's right), the abdomen (AMOS
# names right and left organs) and KiTS's kidneys beside the liver and spleen are not; up/down never.
FLIP_AXES: dict[str, tuple[int, ...]] = {"brats": (1,)}
# the standard policy: magnitude and probability (per slice) of each transform
ROTATE_DEG = 15.0  # rotation in [-15°, 15°]
SCALE = 0.1  # zoom factor per axis in [0.9, 1.1]
TRANSLATE = 0.05  # shift up to 5 % of the slice size per axis
AFFINE_PROB = 0.5
FLIP_PROB = 0.5  # per allowed axis
NOISE_STD, NOISE_PROB = 0.1, 0.15  # Gaussian noise, its std drawn in [0, 0.1] (intensities z-scored or in [-1, 1])
SMOOTH_SIGMA, SMOOTH_PROB = (0.5, 1.0), 0.15  # Gaussian smoothing, sigma in pixels per axis
INTENSITY_SCALE, INTENSITY_SCALE_PROB = 0.1, 0.2  # x (1 + f), f in [-0.1, 0.1]
INTENSITY_SHIFT, INTENSITY_SHIFT_PROB = 0.1, 0.2  # x + o, o in [-0.1, 0.1]
GAMMA, GAMMA_PROB = (0.7, 1.5), 0.2  # contrast: gamma on the min-max rescaled slice (nnU-Net's range)
# the uniforms drawn per slice, one column each: whether a transform applies (u < its probability) and its
# magnitudes; a fixed block of B x len(DRAWS) per batch, whatever is applied
DRAWS = ("affine", "rotate", "scale_0", "scale_1", "shift_0", "shift_1", "flip_0", "flip_1", "noise", "noise_seed",
         "smooth", "sigma_0", "sigma_1", "intensity_scale", "factor", "intensity_shift", "offset", "contrast",
         "gamma")


def check_augmentation(name: str) -> str:
    """``name`` if it is an augmentation policy.

    Args:
        name: a policy name.

    Returns:
        ``name``.

    Raises:
        ValueError: an unknown name, listing the valid ones.
    """
    if name not in AUGMENTATION_NAMES:
        raise ValueError(f"augmentation={name!r}; expected one of {', '.join(AUGMENTATION_NAMES)}")
    return name


def flip_axes(dataset: str) -> tuple[int, ...]:
    """The spatial axes (0: rows, 1: columns) a dataset's slices may be mirrored along (:data:`FLIP_AXES`;
    none for a dataset not listed)."""
    return FLIP_AXES.get(dataset, ())


def _between(u: float, low: float, high: float) -> float:
    """A uniform draw ``u`` in [0, 1) mapped to [low, high)."""
    return low + u * (high - low)


def affine_matrices(draws: list[dict[str, float]], spatial_size: Sequence[int],
                    axes: Sequence[int]) -> tuple[list[int], np.ndarray]:
    """The slices the spatial transform moves and their (3, 3) matrices (pull direction, centred pixel coordinates
    ``(i, j)``: an output pixel reads the input at ``matrix @ (i, j, 1)``, as MONAI's ``Affine``).

    Args:
        draws: per slice, the uniforms of :data:`DRAWS` by name.
        spatial_size: (H, W).
        axes: the axes that may be mirrored.

    Returns:
        (indices of the moved slices, (n, 3, 3) float64 matrices translate @ rotate @ scale @ mirror).
    """
    indices, matrices = [], []
    for index, u in enumerate(draws):
        mirror = [-1.0 if axis in axes and u[f"flip_{axis}"] < FLIP_PROB else 1.0 for axis in range(2)]
        moved = u["affine"] < AFFINE_PROB
        if not moved and mirror == [1.0, 1.0]:
            continue
        scale = [_between(u[f"scale_{a}"], 1 - SCALE, 1 + SCALE) if moved else 1.0 for a in range(2)]
        shift = [_between(u[f"shift_{a}"], -TRANSLATE, TRANSLATE) * spatial_size[a] if moved else 0.0
                 for a in range(2)]
        angle = math.radians(_between(u["rotate"], -ROTATE_DEG, ROTATE_DEG)) if moved else 0.0
        scales = [s * m for s, m in zip(scale, mirror)]
        matrices.append(create_translate(2, shift) @ create_rotate(2, angle) @ create_scale(2, scales))
        indices.append(index)
    return indices, np.asarray(matrices, dtype=np.float64).reshape(-1, 3, 3)


def _intensity(image: torch.Tensor, u: dict[str, float]) -> torch.Tensor:
    """One slice's image-only transforms (noise, smoothing, scaling, shift, gamma), those its draws select.

    Args:
        image: (C, H, W).
        u: its uniforms of :data:`DRAWS` by name.

    Returns:
        (C, H, W), the input itself when nothing applies.
    """
    if u["noise"] < NOISE_PROB:
        noise = RandGaussianNoise(prob=1.0, std=NOISE_STD)
        noise.set_random_state(seed=int(u["noise_seed"] * (2**32 - 1)))
        image = noise(image)
    if u["smooth"] < SMOOTH_PROB:
        image = GaussianSmooth(sigma=[_between(u[f"sigma_{a}"], *SMOOTH_SIGMA) for a in range(2)])(image)
    if u["intensity_scale"] < INTENSITY_SCALE_PROB:
        image = ScaleIntensity(minv=None, maxv=None, factor=_between(u["factor"], -INTENSITY_SCALE,
                                                                    INTENSITY_SCALE))(image)
    if u["intensity_shift"] < INTENSITY_SHIFT_PROB:
        image = ShiftIntensity(offset=_between(u["offset"], -INTENSITY_SHIFT, INTENSITY_SHIFT))(image)
    if u["contrast"] < GAMMA_PROB:
        image = AdjustContrast(gamma=_between(u["gamma"], *GAMMA))(image)
    return image


class BatchAugmenter:
    """The ``standard`` policy applied to batches of slices, one random draw per slice.

    Args:
        dataset: the dataset name (which axes may be mirrored, :func:`flip_axes`).
    """

    def __init__(self, dataset: str) -> None:
        self.axes = flip_axes(dataset)
        resample = {"normalized": False, "zero_centered": True, "padding_mode": "reflection", "align_corners": False}
        # reflection padding: the border a shift or rotation uncovers shows mirrored anatomy with its labels
        self.warp_image = AffineTransform(mode="bilinear", **resample)
        self.warp_label = AffineTransform(mode="nearest", **resample)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch.

        Args:
            images: (B, C, H, W) float.
            labels: (B, 1, H, W) or (B, H, W) integer class ids, on the images' device.
            generator: the run's generator; B x len(:data:`DRAWS`) uniforms are drawn from it.

        Returns:
            (images (B, C, H, W), labels as given): new tensors of the inputs' dtypes on their device; labels hold
            only values they held before (nearest interpolation).
        """
        uniforms = torch.rand(images.shape[0], len(DRAWS), generator=generator, dtype=torch.float64,
                              device=generator.device)  # (B, len(DRAWS))
        draws = [dict(zip(DRAWS, row)) for row in uniforms.tolist()]
        label_maps = labels if labels.dim() == 4 else labels[:, None]  # (B, 1, H, W)
        out_images, out_labels = images.clone(), label_maps.clone()
        indices, matrices = affine_matrices(draws, images.shape[-2:], self.axes)
        if indices:
            index = torch.as_tensor(indices, device=images.device)
            theta = torch.as_tensor(matrices, dtype=torch.float32, device=images.device)  # (n, 3, 3)
            out_images[index] = self.warp_image(images[index], theta).to(images.dtype)  # (n, C, H, W)
            moved = self.warp_label(label_maps[index].float(), theta)  # (n, 1, H, W), nearest: class ids
            out_labels[index] = moved.to(labels.dtype)
        for b, u in enumerate(draws):
            original = out_images[b]  # (C, H, W)
            image = _intensity(original, u)
            if image is not original:
                out_images[b] = convert_to_tensor(image, track_meta=False).to(images.dtype)
        return out_images, out_labels.reshape(labels.shape)


# policy name -> the augmenter factory of a dataset (None: no augmentation); the keys are AUGMENTATION_NAMES
AUGMENTERS: dict[str, Callable[[str], BatchAugmenter] | None] = {"none": None, "standard": BatchAugmenter}


def build_augmenter(policy: str, dataset: str) -> BatchAugmenter | None:
    """The augmenter of a policy: None for ``none`` (the training loop then runs as without augmentation).

    Args:
        policy: ``none`` or ``standard``.
        dataset: the dataset name (mirroring axes).

    Returns:
        A :class:`BatchAugmenter`, or None.

    Raises:
        ValueError: an unknown policy.
    """
    factory = AUGMENTERS[check_augmentation(policy)]
    return None if factory is None else factory(dataset)


def augment_batch(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, *, policy: str,
                  dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment one batch of training slices under ``policy`` (a one-off; a training loop keeps one
    :func:`build_augmenter` for all its batches).

    Args:
        images: (B, C, H, W) float.
        labels: (B, 1, H, W) or (B, H, W) integer class ids.
        generator: the run's generator (untouched by ``none``).
        policy: ``none`` or ``standard``.
        dataset: the dataset name (mirroring axes).

    Returns:
        ``(images, labels)`` themselves for ``none``; new tensors of the same shapes, dtypes and device otherwise.

    Raises:
        ValueError: an unknown policy.
    """
    augmenter = build_augmenter(policy, dataset)
    if augmenter is None:
        return images, labels
    return augmenter(images, labels.to(images.device), generator)
