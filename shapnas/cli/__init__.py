"""The ``python -m shapnas`` command line: one module per subcommand, each with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main", "build_parser"]

# subcommand name -> module under shapnas.cli (each defines add_parser(subparsers) and run(args) -> int)
SUBCOMMANDS = {
    "phantoms": "phantoms_cmd",
    "data": "data_cmd",
    "pretrain": "stages_cmd",
    "search": "stages_cmd",
    "retrain": "stages_cmd",
    "finetune": "stages_cmd",
    "normtune": "stages_cmd",
    "scratch": "stages_cmd",
    "evaluate": "stages_cmd",
    "predict": "predict_cmd",
    "summary": "summary_cmd",
    "transfer": "transfer_cmd",
    "stability": "stability_cmd",
    "run": "run_cmd",
    "book": "book_cmd",
    "matrix": "matrix_cmd",
    "ablations": "ablations_cmd",
    "protocol": "protocol_cmd",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m shapnas",
        description="Retrofit NAS for pre-trained 2D U-Nets with Shapley-guided pruning (Benedykciuk et al. 2026).",
        epilog="Run 'python -m shapnas COMMAND --help' for a command's options and examples.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    seen: set[str] = set()
    for name, module_name in SUBCOMMANDS.items():
        if module_name in seen:
            continue
        try:
            module = importlib.import_module(f"shapnas.cli.{module_name}")
        except ModuleNotFoundError as error:
            if error.name == f"shapnas.cli.{module_name}":
                continue  # subcommand not built yet
            raise
        seen.add(module_name)
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; user errors print one line and exit 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
