"""Figures and tables of the prepared data (notebook 01_data and the book): sample slices with class
overlays, class frequencies, intensity histograms and the split table."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from shapnas.data.prepared import PreparedData
from shapnas.data.splits import SPLIT_NAMES

__all__ = ["class_colours", "plot_sample_slices", "plot_class_frequencies", "plot_intensity_histograms",
           "split_table"]


def class_colours(num_classes: int) -> np.ndarray:
    """(num_classes, 4) RGBA colours; class 0 (background) transparent, the others from ``tab10``/``tab20``."""
    from matplotlib import colormaps

    base = colormaps["tab10" if num_classes <= 11 else "tab20"]
    colours = np.array([base(k % base.N) for k in range(num_classes - 1)]).reshape(-1, 4)
    return np.vstack([[0, 0, 0, 0], colours])


def _pick_cases(prepared: PreparedData, num_cases: int) -> list[Any]:
    volumes = sorted((v for name in SPLIT_NAMES for v in prepared.volumes[name]), key=lambda v: v.case_id)
    picks = np.unique(np.linspace(0, len(volumes) - 1, min(num_cases, len(volumes))).round().astype(int))
    return [volumes[i] for i in picks]


def plot_sample_slices(prepared: PreparedData, num_cases: int = 3) -> Figure:
    """One row per case (its slice with the most classes, then the most foreground): every channel, then
    channel 0 with a colour overlay of the classes; a legend names them.

    Args:
        prepared: prepared data.
        num_cases: rows (cases evenly spaced over the sorted case ids).

    Returns:
        The figure.
    """
    spec = prepared.spec
    cases = _pick_cases(prepared, num_cases)
    num_channels = len(spec.channel_names)
    colours = class_colours(len(spec.class_names))
    width = max(2.4 * (num_channels + 1), 5.0)
    fig = Figure(figsize=(width, 2.4 * len(cases) + 0.3 + 0.2 * len(spec.class_names) / 3), layout="constrained")
    axes = np.asarray(fig.subplots(len(cases), num_channels + 1, squeeze=False))
    for row, volume in zip(axes, cases):
        num_present = np.array([len(np.unique(s)) for s in volume.label])  # (S,)
        foreground = (volume.label > 0).sum(axis=(1, 2)) / volume.label[0].size  # (S,) in [0, 1]
        k = int(np.argmax(num_present + foreground))
        for c in range(num_channels):
            row[c].imshow(volume.image[k, c], cmap="gray")
            row[c].set_title(f"{volume.case_id} [{k}] {spec.channel_names[c]}", fontsize=8)
        row[-1].imshow(volume.image[k, 0], cmap="gray")
        row[-1].imshow(volume.label[k], cmap=ListedColormap(colours), vmin=-0.5, vmax=len(colours) - 0.5,
                       interpolation="nearest", alpha=0.5)
        row[-1].set_title("labels", fontsize=8)
        for ax in row:
            ax.set_axis_off()
    handles = [Patch(color=colours[k], label=name) for k, name in enumerate(spec.class_names) if k > 0]
    ncol = min(len(handles), max(2, int(width / 1.7)))
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=8)
    fig.suptitle(f"{spec.name}: sample slices ({prepared.data_dir.name})")
    return fig


def plot_class_frequencies(summary: dict[str, Any]) -> Figure:
    """Bar chart of each foreground class's share of pixels, from :func:`shapnas.data.prepared.summarize`.

    Linear, starting at zero, every bar labelled with its share: a log axis with a cut baseline made a class
    1.5× rarer than another look 20× smaller.
    """
    frequencies = summary["class_frequencies"]
    names = [n for n in frequencies if n != summary["classes"][0]]
    values = np.asarray([frequencies[n] for n in names], dtype=float)
    fig = Figure(figsize=(max(4.5, 0.5 * len(names) + 2.5), 3.4), layout="constrained")
    ax = fig.subplots()
    bars = ax.bar(range(len(names)), 100 * values, color=class_colours(len(names) + 1)[1:])
    ax.bar_label(bars, [f"{100 * v:.2g}%" for v in values], fontsize=8, padding=2)
    crowded = len(names) > 4
    ax.set_xticks(range(len(names)), names, rotation=45 if crowded else 0, ha="right" if crowded else "center")
    ax.set_ylim(0, 100 * float(values.max(initial=0)) * 1.18 + 1e-9)
    ax.set_ylabel("share of pixels (%)")
    ax.set_title(f"{summary['dataset']}: class frequencies (background {frequencies[summary['classes'][0]]:.1%})")
    return fig


def plot_intensity_histograms(prepared: PreparedData, bins: int = 60) -> Figure:
    """Per channel, histograms of the normalised intensities of the training slices: background and each
    foreground class (up to 6; the rest pooled)."""
    spec = prepared.spec
    volumes = prepared.volumes["train_w"] + prepared.volumes["train_a"]
    images = np.concatenate([v.image for v in volumes])  # (N, C, H, W)
    labels = np.concatenate([v.label for v in volumes])  # (N, H, W)
    colours = class_colours(len(spec.class_names))
    fig = Figure(figsize=(3.2 * len(spec.channel_names), 2.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(spec.channel_names)))
    for c, ax in enumerate(axes):
        values = images[:, c]
        edges = np.linspace(float(values.min()), float(values.max()) + 1e-6, bins + 1)
        groups = [("background", labels == 0, "0.5")]
        shown = [k for k in range(1, len(spec.class_names)) if (labels == k).any()][:6]
        groups += [(spec.class_names[k], labels == k, colours[k]) for k in shown]
        for name, mask, colour in groups:
            ax.hist(values[mask], bins=edges, density=True, histtype="step", color=colour, label=name)
        ax.set_title(spec.channel_names[c])
        ax.set_yscale("log")
        ax.set_xlabel("normalised intensity")
        ax.set_ylabel("density (log scale)")
    axes[0].legend(fontsize=7)
    return fig


def split_table(prepared: PreparedData) -> pd.DataFrame:
    """One row per split: patients, cases (volumes), slices and foreground share of pixels (%, two decimals)."""
    rows = []
    for name in SPLIT_NAMES:
        volumes = prepared.volumes[name]
        pixels = sum(v.label.size for v in volumes)
        foreground = sum(int((v.label > 0).sum()) for v in volumes)
        rows.append({"split": name, "patients": len(prepared.splits[name]), "cases": len(volumes),
                     "slices": sum(v.label.shape[0] for v in volumes),
                     "foreground (%)": round(100 * foreground / pixels, 2) if pixels else float("nan")})
    return pd.DataFrame(rows).set_index("split")
