"""Seeded synthetic 3D datasets written in each dataset's official on-disk layout: the embedded default data.

Flavours: ``acdc`` (cardiac cine MRI), ``brats`` (brain tumour, four MRI channels), ``kits`` (kidney tumour CT),
``amos`` (abdominal multi-organ CT) and ``msd`` (MSD Task01-style 4D brain volumes). They are phantoms, not
patient data: anatomically plausible shapes, varying between patients, with noise, bias field, partial-volume
blur and low-contrast boundaries, so that segmenting them is a real (small) problem.

Each flavour but ``msd`` also has a second acquisition site (``site="b"``, :mod:`shapnas.data.phantoms.sites`):
other patients of the same anatomy model, imaged with another contrast, resolution, bias field and noise.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shapnas.data.phantoms.abdomen import write_amos
from shapnas.data.phantoms.brain import write_brats
from shapnas.data.phantoms.cardiac import write_acdc
from shapnas.data.phantoms.kidney import write_kits
from shapnas.data.phantoms.msd import write_msd
from shapnas.data.phantoms.sites import SITE_NAMES, site_acquisition, site_generators, site_record
from shapnas.runs.files import load_json, save_json

__all__ = ["PHANTOM_DATASETS", "PHANTOM_VARIANTS", "PHANTOM_VERSION", "SITE_NAMES", "write_phantom_dataset",
           "phantom_info", "phantom_marker"]

PHANTOM_VERSION = 2  # 2: KiTS masses large enough for 64-pixel slices (smaller ones vanished at the workshop's resolution)
MARKER = "_phantom.json"  # a leading "_" so that the loaders skip it
PHANTOM_VARIANTS: dict[str, tuple[str, ...]] = {  # first = default
    "acdc": ("acdc",), "brats": ("2021", "2020", "2023"), "kits": ("kits23", "kits21", "kits19"),
    "amos": ("amos",), "msd": ("msd", "nnunet"),
}
PHANTOM_DATASETS = tuple(PHANTOM_VARIANTS)
_WRITERS: dict[str, Callable[..., Path]] = {  # (out_dir, rngs, variant, site acquisition or None)
    "acdc": lambda out, rngs, variant, site: write_acdc(out, rngs, site),
    "brats": lambda out, rngs, variant, site: write_brats(out, rngs, variant, site),
    "kits": lambda out, rngs, variant, site: write_kits(out, rngs, variant, site),
    "amos": lambda out, rngs, variant, site: write_amos(out, rngs, site),
    "msd": lambda out, rngs, variant, site: write_msd(out, rngs, variant),
}


def phantom_info(out_dir: Path) -> dict[str, Any] | None:
    """The parameters a phantom folder was written with (its marker file), or None if it is not one."""
    marker = Path(out_dir) / MARKER
    return load_json(marker) if marker.is_file() else None


def phantom_marker(dataset: str, variant: str, num_patients: int, seed: int, site: str = "a") -> dict[str, Any]:
    """The marker (``_phantom.json``) a phantom folder of these parameters holds, as plain JSON types.

    Site ``a``'s marker is the one written before sites existed (no site keys), so existing folders stay valid;
    another site's adds ``site`` and its acquisition parameters (``site_parameters``), so a folder written with
    other parameters is written again.

    Args:
        dataset: the flavour.
        variant: its layout edition.
        num_patients: patients written.
        seed: phantom seed.
        site: acquisition site, one of ``SITE_NAMES``.

    Returns:
        The marker dict.
    """
    marker: dict[str, Any] = {"dataset": dataset, "variant": variant, "num_patients": num_patients, "seed": seed,
                              "version": PHANTOM_VERSION}
    if site != "a":
        marker.update(site=site, site_parameters=site_record(dataset, site))
    return marker


def write_phantom_dataset(dataset: str, out_dir: Path, num_patients: int, seed: int, *,
                          variant: str | None = None, site: str = "a") -> Path:
    """Write a phantom dataset of ``num_patients`` patients in ``dataset``'s official layout.

    The folder is written beside ``out_dir`` and renamed into place, so an interrupted call leaves no half
    dataset; an existing phantom folder is replaced (kept when it holds the same phantom data: a concurrent run
    that wrote it may be reading it), any other non-empty folder is refused. Patient ``i``
    of site ``a`` draws from child ``i`` of ``np.random.default_rng(seed)``, so it does not depend on
    ``num_patients``; another site's patients come from that site's own seed stream
    (:func:`shapnas.data.phantoms.sites.site_generators`).

    Args:
        dataset: ``acdc``, ``brats``, ``kits``, ``amos`` or ``msd``.
        out_dir: the dataset root to write.
        num_patients: patients to write (ACDC: two frames each).
        seed: phantom seed.
        variant: layout edition: brats ``2021`` (default), ``2020``, ``2023``; kits ``kits23`` (default),
            ``kits21``, ``kits19``; msd ``msd`` (4D, default) or ``nnunet`` (``_0000`` files).
        site: acquisition site: ``a`` (default, the phantoms as always) or ``b`` (a second site; not for msd).

    Returns:
        The dataset root to use as ``data_dir``.

    Raises:
        ValueError: unknown dataset, variant or site, ``num_patients < 1``, or ``out_dir`` is a non-phantom folder.
    """
    if dataset not in PHANTOM_VARIANTS:
        raise ValueError(f"dataset={dataset!r}; expected one of {', '.join(PHANTOM_DATASETS)}")
    variant = variant or PHANTOM_VARIANTS[dataset][0]
    if variant not in PHANTOM_VARIANTS[dataset]:
        raise ValueError(f"variant={variant!r} for {dataset}; expected one of {', '.join(PHANTOM_VARIANTS[dataset])}")
    acquisition = site_acquisition(dataset, site)
    if num_patients < 1:
        raise ValueError(f"num_patients={num_patients}; expected at least 1")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and phantom_info(out_dir) is None)):
        raise ValueError(f"{out_dir}: exists and is not a phantom dataset; refusing to overwrite it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.writing-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _WRITERS[dataset](staging, site_generators(seed, num_patients, site), variant, acquisition)
        marker = phantom_marker(dataset, variant, num_patients, seed, site)
        save_json(staging / MARKER, marker)
        if phantom_info(out_dir) == marker:  # a concurrent run wrote the same data meanwhile and may be reading it
            return out_dir
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir
