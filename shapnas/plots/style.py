"""One call that sets a notebook up for the book: quiet known warnings, whole pandas tables, readable figures.

The notebooks call :func:`setup_notebook` in their (hidden) imports cell instead of repeating warning filters
and display options on every page (house-style.md: thin notebooks, logic in the package).
"""

from __future__ import annotations

import warnings

import matplotlib
import pandas as pd

__all__ = ["BOOK_RC", "setup_notebook"]

# Figures are drawn about 6.5–9 inches wide and shown at the book's column width (~ 760 px), so 9 pt text
# stays ~ 9–11 px on screen; savefig dpi 110 keeps PNGs sharp without making them heavy.
BOOK_RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8.5,
    "ytick.labelsize": 8.5,
    "legend.fontsize": 8.5,
    "figure.titlesize": 10,
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "savefig.bbox": "tight",
}


def setup_notebook() -> None:
    """Set up a companion notebook for reading.

    - MONAI's ``FutureWarning``s (defaults that change in a later release) and ipywidgets'
      "IProgress not found" and seaborn 0.13's call of a deprecated matplotlib argument are silenced: they
      are noise on every page and nbval would compare them.
    - pandas shows tables whole: no row or column truncation (``…``), no wrapped frames, full cell text.
    - matplotlib uses :data:`BOOK_RC` (text readable at the book's column width).
    """
    warnings.filterwarnings("ignore", category=FutureWarning, module="monai")
    warnings.filterwarnings("ignore", message="IProgress not found")
    warnings.filterwarnings("ignore", message="vert: bool was deprecated", module="seaborn")  # seaborn 0.13.2
    for option, value in (("display.max_rows", None), ("display.max_columns", None), ("display.width", None),
                          ("display.max_colwidth", None), ("display.expand_frame_repr", False)):
        pd.set_option(option, value)
    matplotlib.rcParams.update(BOOK_RC)
