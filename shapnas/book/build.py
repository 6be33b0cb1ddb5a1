"""Build the companion book with Jupyter Book 1 from stored outputs, then check the HTML it wrote.

Strict by default (``-W -n --keep-going``: every warning is an error, as QuantEcon's CI).
Pages whose executed notebook is missing (a dataset not run yet) are dropped from a generated table of
contents under ``_build/`` (the committed ``_toc.yml`` is never changed). The check afterwards: every page
of the toc rendered, no broken internal link or missing image, no error output in an executed notebook.
The module is also a tiny Sphinx extension (``setup``) that removes page assets Sphinx 7 registers twice.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import nbformat
import yaml

__all__ = [
    "BookError",
    "toc_files",
    "source_of",
    "executed_toc",
    "build_book",
    "check_html",
    "notebook_errors",
    "write_method_figures",
    "setup",
]

SOURCE_SUFFIXES = (".md", ".ipynb")


class BookError(RuntimeError):
    """The book did not build, or its HTML failed the check (the message lists every problem)."""


def _entries(node: Any) -> Iterator[dict[str, Any]]:
    """Every mapping in a toc tree that can hold ``file`` / ``parts`` / ``chapters`` / ``sections``."""
    if isinstance(node, dict):
        yield node
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key, []) or []:
                yield from _entries(child)


def toc_files(toc: dict[str, Any]) -> list[str]:
    """Every page of a ``jb-book`` toc (``root`` first), as written there (no suffix)."""
    return [toc["root"], *(e["file"] for e in _entries(toc) if "file" in e and e is not toc)]


def source_of(root: Path, page: str) -> Path | None:
    """The source file (``.md`` or ``.ipynb``) of a toc entry, or ``None`` when there is none."""
    for suffix in SOURCE_SUFFIXES:
        path = root / f"{page}{suffix}"
        if path.exists():
            return path
    return None


def _prune(node: dict[str, Any], root: Path) -> dict[str, Any] | None:
    """A copy of a toc node without entries whose source is missing; ``None`` when nothing is left."""
    kept = dict(node)
    for key in ("parts", "chapters", "sections"):
        if key in node:
            children = [c for c in (_prune(child, root) for child in node[key] or []) if c is not None]
            if children:
                kept[key] = children
            else:
                kept.pop(key)
    if "file" in kept and source_of(root, kept["file"]) is None:
        if not any(k in kept for k in ("chapters", "sections")):
            return None
        raise BookError(f"toc entry {kept['file']!r} has sub-pages but no source file under {root}")
    if "caption" in kept and not any(k in kept for k in ("chapters", "parts")):
        return None
    return kept


def _extra_dataset_parts(root: Path, listed: list[str]) -> list[dict[str, Any]]:
    """Parts for datasets executed under ``book/datasets/`` but absent from the toc (e.g. ``msd``)."""
    parts = []
    base = root / "book" / "datasets"
    for folder in sorted(p for p in base.glob("*") if p.is_dir()) if base.exists() else []:
        pages = [f"book/datasets/{folder.name}/{nb.stem}" for nb in sorted(folder.glob("*.ipynb"))]
        if pages and not any(page in listed for page in pages):
            parts.append({"caption": f"{folder.name.upper()} (not in _toc.yml)",
                          "chapters": [{"file": page} for page in pages]})
    return parts


def executed_toc(root: str | Path, toc_path: str | Path | None = None) -> tuple[Path, list[str]]:
    """The toc to build with: the committed one, or a generated one under ``_build/`` without the pages whose
    executed notebook is missing (and with a part for each executed dataset the committed toc lacks).

    Args:
        root: the book root.
        toc_path: the committed toc; defaults to ``<root>/_toc.yml``.

    Returns:
        (toc path to pass to ``jupyter-book build --toc``, pages left out because their source is missing).
    """
    root = Path(root)
    toc_path = Path(toc_path) if toc_path else root / "_toc.yml"
    toc = yaml.safe_load(toc_path.read_text())
    listed = toc_files(toc)
    missing = [page for page in listed if source_of(root, page) is None]
    extra = _extra_dataset_parts(root, listed)
    if not missing and not extra:
        return toc_path, []
    if source_of(root, toc["root"]) is None:
        raise BookError(f"the toc root {toc['root']!r} has no source file under {root}")
    pruned = _prune(toc, root)
    if extra:
        parts = pruned.setdefault("parts", [])
        datasets = [i for i, part in enumerate(parts)
                    if any(str(c.get("file", "")).startswith("book/datasets/") and c["file"].count("/") == 3
                           for c in part.get("chapters", []))]
        at = datasets[-1] + 1 if datasets else len(parts)
        parts[at:at] = extra
    generated = root / "_build" / "_toc_executed.yml"
    generated.parent.mkdir(parents=True, exist_ok=True)
    generated.write_text("# generated by `python -m shapnas book` from _toc.yml: only the executed pages\n"
                         + yaml.safe_dump(pruned, sort_keys=False, allow_unicode=True))
    return generated, missing


class _Links(HTMLParser):
    """Collects ids and the local targets of links, images, scripts and stylesheets of one page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.targets: list[tuple[str, str]] = []  # (attribute, value)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"])
        for attribute in ("href", "src"):
            if values.get(attribute) and tag in ("a", "img", "script", "link", "source"):
                self.targets.append((f"{tag} {attribute}", values[attribute]))


def _parse(path: Path, cache: dict[Path, _Links]) -> _Links:
    if path not in cache:
        parser = _Links()
        parser.feed(path.read_text(errors="replace"))
        cache[path] = parser
    return cache[path]


def check_html(html_dir: str | Path, pages: list[str]) -> list[str]:
    """Problems in a built HTML book: pages not rendered, broken internal links and anchors, missing images.

    Only the toc's pages and ``index.html`` are read (older pages of earlier builds may linger in ``_build``).

    Args:
        html_dir: ``_build/html``.
        pages: the toc pages that must be rendered (``<page>.html``).

    Returns:
        One line per problem (empty when the book is fine).
    """
    html_dir = Path(html_dir).resolve()
    problems = [f"page {page!r} was not rendered ({page}.html missing)" for page in pages
                if not (html_dir / f"{page}.html").exists()]
    cache: dict[Path, _Links] = {}
    files = [html_dir / f"{page}.html" for page in pages] + [html_dir / "index.html"]
    for path in (f for f in files if f.exists()):
        name = path.relative_to(html_dir)
        for what, value in _parse(path, cache).targets:
            url = urlsplit(value)
            if url.scheme or url.netloc or value.startswith(("mailto:", "javascript:", "data:")):
                continue
            target = (path.parent / unquote(url.path)).resolve() if url.path else path
            if not target.exists():
                problems.append(f"{name}: {what}={value!r} points to a missing file")
            elif url.fragment and target.suffix == ".html" and unquote(url.fragment) not in _parse(target, cache).ids:
                problems.append(f"{name}: {what}={value!r} points to a missing anchor")
    return problems


def notebook_errors(paths: list[Path]) -> list[str]:
    """Error outputs (a cell that raised) in executed notebooks, one line per cell."""
    problems = []
    for path in paths:
        nb = nbformat.read(str(path), as_version=4)
        for index, cell in enumerate(nb.cells):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    problems.append(f"{path}: cell {index} has an error output "
                                    f"({output.get('ename')}: {output.get('evalue')})")
    return problems


def build_book(root: str | Path = ".", *, strict: bool = True, log: Callable[[str], None] = print) -> Path:
    """Build the book with Jupyter Book 1 (stored outputs) and check its HTML.

    Args:
        root: the book root (``_config.yml``, ``_toc.yml``).
        strict: ``-W -n --keep-going`` (warnings are errors); ``False`` lets warnings pass.
        log: where progress lines go.

    Returns:
        ``<root>/_build/html/index.html``.

    Raises:
        BookError: the build failed, or the HTML check found problems (all listed).
    """
    from shapnas.book.findings import ensure_findings
    from shapnas.book.protocol_section import write_protocol_section
    from shapnas.book.transfer_section import write_transfer_section
    from shapnas.book.workshop_values import ensure_workshop_snippets

    root = Path(root).resolve()
    ensure_findings(root)  # the introduction includes the run's findings (a placeholder before any run)
    ensure_workshop_snippets(root)  # and the workshop page the run's measured values
    write_transfer_section(root, root / "results")  # the transfer chapter's tables, from the transfer runs
    write_protocol_section(root, root / "results")  # the training-protocol page's tables, from the protocol runs
    toc, missing = executed_toc(root)
    if missing:
        log(f"{len(missing)} page(s) not executed, left out of this build: {', '.join(missing)}")
    command = [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
               "build", str(root), "--builder", "html", "--toc", str(toc)]
    if strict:
        command += ["-W", "-n", "--keep-going"]
    log("building the book: jupyter-book build " + " ".join(command[4:]).replace(str(root), "."))
    result = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        text = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)  # no colour codes
        tail = "\n".join(text.splitlines()[-40:])
        raise BookError(f"jupyter-book build failed (exit {result.returncode}):\n{tail}")
    pages = toc_files(yaml.safe_load(Path(toc).read_text()))
    html_dir = root / "_build" / "html"
    notebooks = [p for p in (source_of(root, page) for page in pages) if p is not None and p.suffix == ".ipynb"]
    problems = check_html(html_dir, pages) + notebook_errors(notebooks)
    if problems:
        raise BookError("the built book failed the HTML check:\n  " + "\n  ".join(problems))
    index = html_dir / "index.html"
    log(f"book built and checked ({len(pages)} pages). Open it: {index}")
    return index


def write_method_figures(images_dir: str | Path) -> list[Path]:
    """Draw the method chapter's figures (retrofitted U-Net, cell DAG) as PNG files.

    Args:
        images_dir: where to write ``retrofit_unet.png`` and ``cell_dag.png``.

    Returns:
        The files written.
    """
    from shapnas.plots.search import plot_cell_graph, plot_retrofit_diagram

    images_dir = Path(images_dir)
    images_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, figure in (("retrofit_unet.png", plot_retrofit_diagram()), ("cell_dag.png", plot_cell_graph(None))):
        path = images_dir / name
        figure.savefig(path, dpi=120, bbox_inches="tight", metadata={"Software": None})
        written.append(path)
    return written


def _unique_assets(app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """Drop repeated script and stylesheet entries of a page (Sphinx 7 lets extensions that add assets while
    reading register them twice, e.g. sphinx-thebe's ``const THEBE_JS_URL``: a console SyntaxError)."""
    for key in ("script_files", "css_files"):
        assets = context.get(key)
        if not assets:
            continue
        seen: set[Any] = set()
        unique = []
        for asset in assets:
            identity = (str(getattr(asset, "filename", asset) or ""),  # None and "" both mean an inline script
                        tuple(sorted((getattr(asset, "attributes", None) or {}).items())))
            if identity not in seen:
                seen.add(identity)
                unique.append(asset)
        assets[:] = unique


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension hook (``_config.yml``: ``sphinx: extra_extensions: [shapnas.book.build]``): unique page assets."""
    app.connect("html-page-context", _unique_assets, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
