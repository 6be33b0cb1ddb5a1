"""Prepare an executed notebook for the book: reader-facing stream text, papermill's cells tagged, a
dataset-prefixed title, a provenance line (profile, seed, package version and commit, date, wall time and
the command that reproduces the page) and, folded under it, the parameters the page accepts with their
values in this run.

Used by :mod:`shapnas.book.run_notebooks` after every papermill execution (tag the parameters
cells for the book; the Pythia anatomy keeps the title as the first line of the first cell).
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import nbformat

import shapnas
from shapnas.config.names import DATASET_LABELS

__all__ = [
    "BOOK_TAGS",
    "DATASET_NAMES",
    "terminal_text",
    "page_title",
    "source_commit",
    "provenance_text",
    "parameter_rows",
    "parameters_text",
    "tag_for_book",
]

# tags that hide papermill's cells in the HTML (jupyter-book / myst-nb cell tags)
BOOK_TAGS = {"parameters": "remove-cell", "injected-parameters": "hide-input"}
# how a dataset is written in page titles ("ACDC · 1. The data"): distinct titles in the sidebar, the
# browser tab, search results and the previous/next links
DATASET_NAMES = DATASET_LABELS  # display names (shapnas.config.names)
TITLE_SEPARATOR = " · "

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_PROGRESS = re.compile(r"^(?P<desc>.*?):?\s*(?P<percent>\d+)%\|")


def terminal_text(text: str) -> str:
    """Stream text as a reader wants it in the book: colour and cursor codes dropped, each ``\\r`` returning to
    the line start, and of the progress bars only the final state of each finished bar kept."""
    text = _ANSI.sub(lambda m: "\n" if m.group().endswith("A") else "", text)  # cursor up: a nested bar ends
    lines = [line.split("\r")[-1].rstrip() for line in text.split("\n")]
    lines = [line for line in lines if line.strip()]
    bars = {m.group("desc"): i for i, m in ((i, _PROGRESS.match(line)) for i, line in enumerate(lines)) if m}
    shown = [line for i, line in enumerate(lines)
             if not (m := _PROGRESS.match(line)) or (bars[m.group("desc")] == i and m.group("percent") == "100")]
    return "\n".join(shown) + ("\n" if shown else "")


def _scrub(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text


def _collapse_streams(outputs: list[Any], replacements: dict[str, str]) -> list[Any]:
    """Merge consecutive stream outputs of the same name, keep what a reader needs, scrub machine paths."""
    merged: list[Any] = []
    for output in outputs:
        if output.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream" \
                and merged[-1].get("name") == output.get("name"):
            merged[-1]["text"] += output["text"]
        else:
            merged.append(output)
    for output in merged:
        if output.get("output_type") == "stream":
            output["text"] = _scrub(terminal_text(output["text"]), replacements)
        elif output.get("output_type") == "error":
            output["traceback"] = [_scrub(line, replacements) for line in output.get("traceback", [])]
    return [o for o in merged if o.get("output_type") != "stream" or o["text"]]


def page_title(title: str, dataset: str | None) -> str:
    """``"1. The data"`` → ``"ACDC · 1. The data"`` (unchanged without a dataset or when already prefixed)."""
    if not dataset:
        return title
    name = DATASET_NAMES.get(dataset, dataset.upper())
    return title if title.startswith(name + TITLE_SEPARATOR) else f"{name}{TITLE_SEPARATOR}{title}"


def source_commit(path: str | Path | None = None) -> str:
    """The short git commit of the checkout holding ``path`` (default: the package), ``+ local changes`` when
    tracked files differ from it; ``"no git checkout"`` outside one."""
    where = str(Path(path) if path else Path(shapnas.__file__).resolve().parents[1])
    try:
        commit = subprocess.run(["git", "-C", where, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return "no git checkout"
        dirty = subprocess.run(["git", "-C", where, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "no git checkout"
    return commit.stdout.strip() + (" + local changes" if dirty else "")


def provenance_text(metadata: dict[str, Any], *, profile: str | None, commit: str, command: str | None = None) -> str:
    """One Markdown line: profile, seed, shapnas version and commit, date (UTC) and wall time of an execution,
    and the command that reproduces it.

    Args:
        metadata: the executed notebook's ``metadata.papermill`` (``parameters``, ``start_time``, ``duration``).
        profile: the parameter profile the run injected (``None``: the notebook's own defaults).
        commit: :func:`source_commit`.
        command: the command line that reproduces the page (``None``: only ``python -m shapnas run`` is named).

    Returns:
        The line, e.g. ``*This page: profile `workshop`, seed 0, shapnas 0.1.0 (commit abc1234), executed
        2026-12-01 14:03 UTC in 61 s; reproduce it with `python -m shapnas run --datasets acdc ...`.*``
    """
    parameters = metadata.get("parameters") or {}
    parts = [f"profile `{profile}`" if profile else "the notebook's default parameters"]
    if "seed" in parameters:
        parts.append(f"seed {parameters['seed']}")
    if "dataset" in parameters:
        parts.append(f"dataset `{parameters['dataset']}`"
                     + (" (phantom data)" if not parameters.get("data_dir") else " (data folder given)"))
    parts.append(f"shapnas {shapnas.__version__} (commit {commit})")
    when = ""
    if metadata.get("start_time"):
        started = datetime.fromisoformat(str(metadata["start_time"]).replace("Z", ""))
        when = f", executed {started:%Y-%m-%d %H:%M} UTC"
    duration = metadata.get("duration")
    took = f" in {float(duration):.0f} s" if isinstance(duration, (int, float)) else ""
    how = f"; reproduce it with `{command}`" if command else " (papermill; `python -m shapnas run`)"
    return f"*This page: {', '.join(parts)}{when}{took}{how}.*"


def _markdown_cell_text(text: str) -> str:
    """``text`` safe inside a Markdown table cell (pipes escaped, one line)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _literal(value: Any) -> str:
    """A value as the parameters cell writes it (strings in double quotes, as the notebooks do)."""
    return '"' + value.replace('"', '\\"') + '"' if isinstance(value, str) else repr(value)


def parameter_rows(nb: Any) -> list[dict[str, str]]:
    """The parameters a page accepts: the names of its ``parameters``-tagged cell with their values in this run
    (the injected value, else the notebook's default) and the cell's comment on each.

    Args:
        nb: the executed notebook (``metadata.papermill.parameters`` holds what the run injected).

    Returns:
        One row per name, in the cell's order: ``name``, ``value`` (a Python literal), ``source``
        (``"this run"`` or ``"notebook default"``) and ``help``.
    """
    import copy

    from papermill.inspection import _infer_parameters

    injected = (nb.metadata.get("papermill") or {}).get("parameters") or {}
    nb = copy.deepcopy(nb)
    for cell in nb.cells:  # papermill's reader expects every cell to have a tags list
        cell.metadata.setdefault("tags", [])
    rows = []
    for parameter in _infer_parameters(nb):
        name = parameter.name
        value = _literal(injected[name]) if name in injected else str(parameter.default)
        if name == "data_dir" and injected.get(name):
            value = "the folder given with --data-dir"  # the reader's own folder, not this machine's path
        rows.append({"name": name, "value": value, "help": parameter.help or "",
                     "source": "this run" if name in injected else "notebook default"})
    return rows


PARAMETERS_TITLE = "Parameters of this page"


def parameters_text(rows: list[dict[str, str]], note: str | None = None) -> str:
    """A folded block (MyST ``dropdown``) listing the parameters a page accepts with their values in this run,
    and how to change one (``--set NAME=VALUE``).

    Args:
        rows: :func:`parameter_rows`.
        note: a sentence shown above the table (e.g. that a chapter's data come from another plan).

    Returns:
        The block ("" without rows).
    """
    if not rows:
        return ""
    lines = [f":::{{dropdown}} {PARAMETERS_TITLE} ({len(rows)}: names and values in this run)", ""]
    if note:
        lines += [note, ""]
    lines += ["Change one with `--set NAME=VALUE` on the command above (`dataset`, `seed`, `data_dir`, "
              "`results_root` and `device` have their own options: `--datasets`, `--seed`, `--data-dir`, "
              "`--results`, `--device`).", "",
              "| name | value in this run | set by | meaning |", "|---|---|---|---|"]
    lines += [f"| `{r['name']}` | `{_markdown_cell_text(r['value'])}` | {r['source']} | "
              f"{_markdown_cell_text(r['help'])} |" for r in rows]
    return "\n".join(lines + [":::"])


def _retitle(nb: Any, dataset: str | None) -> None:
    first = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    if first is None or not first.source.startswith("# "):
        return
    head, _, rest = first.source.partition("\n")
    first.source = "# " + page_title(head[2:].strip(), dataset) + ("\n" + rest if rest else "")


def _name_figures(nb: Any, dataset: str | None) -> None:
    """Prefix the figure names of the cells' ``mystnb.figure`` metadata with the dataset (``acdc-fig-alpha``):
    figure labels are global in the book, and every dataset's chapter 3 has an α figure."""
    for cell in nb.cells:
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure")
        if dataset and isinstance(figure, dict) and figure.get("name") and not figure["name"].startswith(dataset + "-"):
            figure["name"] = f"{dataset}-{figure['name']}"


_PROVENANCE = re.compile(r"^\s*\*This page: .*?\*\s*$\n?", flags=re.M)
_PARAMETERS = re.compile(r"^:::\{dropdown\} " + re.escape(PARAMETERS_TITLE) + r".*?^:::\s*$\n?", flags=re.M | re.S)
_NOTE = re.compile(r"^\s*\*Data of this chapter: .*?\*\s*$\n?", flags=re.M)


_ROLE = re.compile(r"\{[a-z:]+\}`([^`<]*?)(?:\s*<[^>]*>)?`")
_IMAGES = ("image/png", "image/jpeg", "image/svg+xml")


def _plain(text: str) -> str:
    """Markdown/MyST text as plain words for an alt attribute (roles, code marks and emphasis dropped)."""
    text = _ROLE.sub(r"\1", text)
    return " ".join(re.sub(r"[`*_#]", "", text).split())


def _add_alt_texts(nb: Any) -> None:
    """Give every figure an alt text that says what it shows: its caption (``mystnb.figure.caption``), else
    the heading of its section; never the image's file name (myst-nb's default). An alt text already set in
    ``mystnb.image.alt`` is kept."""
    heading = ""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            found = [line[2:].lstrip("# ") for line in cell.source.splitlines() if line.startswith("#")]
            heading = _plain(found[-1]) if found else heading
            continue
        if not any(mime in output.get("data", {}) for output in cell.get("outputs", []) for mime in _IMAGES):
            continue
        mystnb = cell.metadata.setdefault("mystnb", {})
        image = mystnb.setdefault("image", {})
        if not image.get("alt"):
            caption = (mystnb.get("figure") or {}).get("caption")
            image["alt"] = _plain(caption) if caption else f"Figure: {heading}" if heading else "Figure"


def _add_provenance(nb: Any, profile: str | None, command: str | None = None, note: str | None = None) -> None:
    """Put the provenance line right under the title, then a visible ``note`` and the folded parameters (in the
    title's cell, replacing earlier ones)."""
    metadata = nb.metadata.get("papermill")
    first = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    if not metadata or first is None or not first.source.startswith("# "):
        return
    title, _, rest = first.source.partition("\n")
    for pattern in (_PROVENANCE, _NOTE, _PARAMETERS):
        rest = pattern.sub("", rest.lstrip("\n"), count=1)
    blocks = [provenance_text(metadata, profile=profile, commit=source_commit(), command=command)]
    if note:
        blocks.append(f"*Data of this chapter: {note}*")
    folded = parameters_text(parameter_rows(nb))
    if folded:
        blocks.append(folded)
    first.source = f"{title}\n\n" + "\n\n".join(blocks) + f"\n\n{rest.lstrip()}".rstrip() + "\n"


def tag_for_book(path: str | Path, root: str | Path | None = None, *, dataset: str | None = None,
                 profile: str | None = None, command: str | None = None, note: str | None = None) -> None:
    """Prepare an executed copy for the book: papermill's cells tagged so the book hides them (defaults
    removed, injected values one click away), progress bars reduced to their final state, the paths of
    this machine (the book root, the package source, the Python environment) shortened in printed text
    (warnings, tracebacks), the title and the figure names prefixed with the dataset, every figure given an
    alt text (its caption, or its section's heading), and under the title a
    provenance line with the reproducing command and the page's parameters (folded).

    Args:
        path: the executed notebook, rewritten in place.
        root: the book root, shown as ``.``; ``None`` leaves it.
        dataset: prefixes the page title (``"ACDC · 1. The data"``) and the figure names; ``None`` leaves them.
        profile: the profile named in the provenance line.
        command: the command line that reproduces the page (in the provenance line).
        note: a sentence on where the chapter's data come from (shown under the provenance line).
    """
    source = Path(shapnas.__file__).resolve().parents[1]  # where the shapnas package lives (an editable install)
    replacements = {str(source): "<shapnas-source>", sys.prefix: "<python-env>"}
    if root:
        replacements[str(Path(root).resolve())] = "."
    replacements = dict(sorted(replacements.items(), key=lambda item: -len(item[0])))  # innermost paths first
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        extra = [BOOK_TAGS[t] for t in tags if t in BOOK_TAGS and BOOK_TAGS[t] not in tags]
        if extra:
            cell.metadata["tags"] = [*tags, *extra]
        if cell.cell_type == "code":
            cell.outputs = _collapse_streams(cell.outputs, replacements)
    _retitle(nb, dataset)
    _name_figures(nb, dataset)
    _add_alt_texts(nb)
    _add_provenance(nb, profile, command, note)
    nbformat.write(nb, str(path))
