"""``python -m shapnas book``: build the companion book (Jupyter Book 1, stored outputs) and check its HTML."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "run"]

EXAMPLES = """Examples:
  python -m shapnas book
  python -m shapnas book --root . --no-strict"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``book``."""
    parser = subparsers.add_parser(
        "book", help="build the book from the executed notebooks and check the HTML",
        description="Run `jupyter-book build` with warnings as errors (-W -n --keep-going) on the executed "
                    "notebooks (no execution at build time). Datasets not executed yet are left out through a "
                    "generated toc under _build/. Then check: every page rendered, no broken internal links or "
                    "missing images, no error outputs.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=".", help="book root holding _config.yml and _toc.yml (default: .)")
    parser.add_argument("--no-strict", dest="strict", action="store_false",
                        help="let Sphinx warnings pass (the HTML check still runs)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Build and check; problems are printed and the exit status is 1."""
    from shapnas.book.build import BookError, build_book

    try:
        build_book(args.root, strict=args.strict)
    except BookError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
