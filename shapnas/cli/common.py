"""Arguments shared by the subcommands (one spelling of each), and the config they build."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from shapnas.config import DATASET_NAMES, POLICY_NAMES, PROFILE_NAMES, RetrainConfig, resolve_config
from shapnas.overrides import parse_overrides

__all__ = ["add_run_arguments", "add_data_dir_argument", "add_set_argument", "config_from_args", "parse_data_dirs",
           "parse_names"]


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--data-dir [DATASET=]DIR`` (repeatable), parsed by :func:`parse_data_dirs`."""
    parser.add_argument("--data-dir", dest="data_dirs", action="append", default=[], metavar="[DATASET=]DIR",
                        help="a dataset root in its official layout, e.g. --data-dir acdc=/data/ACDC/database; "
                             "repeat for several datasets; a bare DIR when one dataset is chosen "
                             "(default: the embedded phantom data)")


def add_set_argument(parser: argparse.ArgumentParser, where: str = "") -> None:
    """Add ``--set KEY=VALUE`` (repeatable), parsed and type-checked by :func:`shapnas.overrides.parse_overrides`."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a config field{where}, e.g. --set search_epochs=20 (repeatable; "
                             "an unknown name lists the valid ones)")


def add_run_arguments(parser: argparse.ArgumentParser, *, policy: bool = True) -> None:
    """Add --dataset, --data-dir, --results, --profile, --seed, --backbone, [--policy], --set, --device."""
    parser.add_argument("--dataset", required=True, choices=DATASET_NAMES, help="dataset name")
    add_data_dir_argument(parser)
    parser.add_argument("--results", default="results", help="results folder (default: results)")
    parser.add_argument("--profile", default="workshop", choices=PROFILE_NAMES, help="parameter profile (default: workshop)")
    parser.add_argument("--seed", type=int, default=0, help="run seed (default: 0)")
    parser.add_argument("--backbone", default=None, help="basic_unet (default) or unet")
    if policy:
        parser.add_argument("--policy", default=None, choices=POLICY_NAMES, help="pruning policy (default: none)")
    add_set_argument(parser)
    parser.add_argument("--device", default=None, help="auto (default: cuda when present), cpu or cuda:i")


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


def parse_names(text: str, allowed: Sequence[str], option: str) -> list[str]:
    """Comma-separated names, each one of ``allowed`` (duplicates dropped, order kept); ValueError otherwise."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if not names or unknown:
        raise ValueError(f"{option} {text!r}; expected comma-separated names from {', '.join(allowed)}")
    return list(dict.fromkeys(names))


def config_from_args(args: argparse.Namespace) -> RetrainConfig:
    """The full run config of a stage command: :func:`shapnas.config.resolve_config` of the profile, the named
    options and the ``--set`` overrides (names and types checked)."""
    named = {"dataset": args.dataset, "data_dir": parse_data_dirs(args.data_dirs, [args.dataset]).get(args.dataset),
             "results_root": args.results, "seed": args.seed, "backbone": args.backbone,
             "policy": getattr(args, "policy", None), "device": args.device}
    return resolve_config(RetrainConfig, args.profile, parse_overrides(args.overrides, RetrainConfig), **named)
