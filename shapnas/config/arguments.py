"""Command-line arguments that reach a config, one spelling everywhere: ``--data-dir [DATASET=]DIR`` and
``--set KEY=VALUE`` for ``python -m shapnas`` (:mod:`shapnas.cli.common`) and the benchmarks, and the arguments
every benchmark shares with the config they build (``--dataset``, ``--data-dir``, ``--profile``, ``--seed``,
``--results``, ``--set``; a benchmark adds only its own options).

They live beside the configs, not in :mod:`shapnas.cli`, because the benchmarks (like the core) never import the
command line.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from shapnas.config.names import DATASET_NAMES
from shapnas.config.overrides import parse_overrides
from shapnas.config.stage_configs import PROFILE_NAMES, PretrainConfig, resolve_config

__all__ = ["add_data_dir_argument", "add_set_argument", "parse_data_dirs", "benchmark_parser", "benchmark_config"]

C = TypeVar("C", bound=PretrainConfig)


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--data-dir [DATASET=]DIR`` (repeatable), parsed by :func:`parse_data_dirs`."""
    parser.add_argument("--data-dir", dest="data_dirs", action="append", default=[], metavar="[DATASET=]DIR",
                        help="a dataset root in its official layout, e.g. --data-dir acdc=/data/ACDC/database; "
                             "repeat for several datasets; a bare DIR when one dataset is chosen "
                             "(default: the embedded phantom data)")


def add_set_argument(parser: argparse.ArgumentParser, where: str = "", *, several: bool = False) -> None:
    """Add ``--set KEY=VALUE`` (repeatable), parsed and type-checked by :func:`shapnas.config.overrides.parse_overrides`.

    Args:
        parser: the command's parser.
        where: words that say which config the overrides reach (in the help text).
        several: also accept several values after one ``--set`` (``--set a=1 b=2``, as the benchmarks do).
    """
    parser.add_argument("--set", dest="overrides", action="extend" if several else "append", default=[],
                        nargs="+" if several else None, metavar="KEY=VALUE",
                        help=f"override a config field{where}, e.g. --set search_epochs=20 (repeatable; "
                             "an unknown name lists the valid ones)")


def parse_data_dirs(items: Sequence[str], datasets: Sequence[str]) -> dict[str, str]:
    """``--data-dir`` values to dataset -> folder.

    Args:
        items: ``DATASET=DIR`` (DATASET one of ``datasets``) or a bare ``DIR`` when ``datasets`` has exactly one.
        datasets: the datasets of the command.

    Returns:
        Dataset name -> data root, for the datasets given a folder (the others use phantom data).

    Raises:
        ValueError: a bare DIR with several datasets, a dataset not chosen, an empty folder or one given twice.
    """
    dirs: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if sep and name.strip() in DATASET_NAMES:
            name, path = name.strip(), path.strip()
        elif len(datasets) == 1:
            name, path = datasets[0], item.strip()
        else:
            raise ValueError(f"--data-dir {item!r}: a bare DIR needs exactly one dataset, got {len(datasets)} "
                             f"({', '.join(datasets)}); write --data-dir DATASET=DIR for each")
        if name not in datasets or not path:
            raise ValueError(f"--data-dir {item!r}; expected [DATASET=]DIR with DATASET one of {', '.join(datasets)}")
        if name in dirs:
            raise ValueError(f"--data-dir: {name} given twice ({dirs[name]}, {path})")
        dirs[name] = path
    return dirs


def benchmark_parser(description: str, *, results: str = "") -> argparse.ArgumentParser:
    """A parser with the shared benchmark arguments.

    Args:
        description: the benchmark's docstring (shown by ``--help`` as written).
        results: the default results folder; empty means a new temporary folder per run.

    Returns:
        The parser; the benchmark adds its own options and calls ``parse_args``.
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="acdc", choices=DATASET_NAMES,
                        help="dataset (the embedded phantom data unless --data-dir; default: acdc)")
    add_data_dir_argument(parser)
    parser.add_argument("--profile", default="workshop", choices=PROFILE_NAMES,
                        help="parameter profile (default: workshop)")
    parser.add_argument("--seed", type=int, default=0, help="run seed (default: 0)")
    parser.add_argument("--results", default=results,
                        help=f"results folder (data cache, backbone; default: {results or 'a temporary folder'})")
    add_set_argument(parser, several=True)
    return parser


def benchmark_config(args: argparse.Namespace, config_type: type[C], *, fixed: Mapping[str, Any] | None = None,
                     **named: Any) -> C:
    """The config of a benchmark run: the profile, the shared arguments and the ``--set`` overrides.

    Args:
        args: parsed :func:`benchmark_parser` arguments.
        config_type: the stage config the benchmark needs (``SearchConfig``, ``RetrainConfig``, …).
        fixed: overrides the benchmark itself needs (e.g. ``{"policy": "none"}``); a ``--set`` of the same
            name gives way to them.
        named: named values that replace the shared ones (e.g. ``seed=`` for one of several seeds).

    Returns:
        The config; ``args.results`` is filled with a new temporary folder when it was empty, so that
        every later call of the same run uses the same folder.
    """
    if not args.results:
        args.results = tempfile.mkdtemp(prefix="shapnas-bench-")
    values = {"dataset": args.dataset, "seed": args.seed, "results_root": args.results,
              "data_dir": parse_data_dirs(args.data_dirs, [args.dataset]).get(args.dataset), **named}
    overrides = {**parse_overrides(args.overrides, config_type), **(fixed or {})}
    return resolve_config(config_type, args.profile, overrides, **values)
