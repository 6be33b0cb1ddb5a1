"""Arguments shared by the subcommands (one spelling of each, :mod:`shapnas.config.arguments`), and the config
they build."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from shapnas.config.arguments import add_data_dir_argument, add_set_argument, parse_data_dirs
from shapnas.config.names import BACKBONE_NAMES, DATASET_NAMES, LOADABLE_BACKBONE_NAMES, POLICY_NAMES
from shapnas.config.overrides import parse_overrides
from shapnas.config.stage_configs import PROFILE_NAMES, RetrainConfig, resolve_config

__all__ = ["add_plan_arguments", "add_run_arguments", "add_data_dir_argument", "add_set_argument", "add_setting_argument", "config_from_args",
           "parse_data_dirs", "parse_names", "setting_folder_arg", "BACKBONE_HELP"]

BACKBONE_HELP = (f"backbone U-Net, one of {', '.join(BACKBONE_NAMES)} (default: basic_unet), or a trained model "
                 f"loaded only: {', '.join(LOADABLE_BACKBONE_NAMES)} (an nnU-Net v2 2D model; with "
                 "--set backbone_checkpoint=<nnU-Net results folder>/fold_K/checkpoint_final.pth)")
"""The ``--backbone`` help of every command that takes one."""


def add_run_arguments(parser: argparse.ArgumentParser, *, policy: bool = True) -> None:
    """Add --dataset, --data-dir, --results, --profile, --seed, --backbone, [--policy], --set, --device."""
    parser.add_argument("--dataset", required=True, choices=DATASET_NAMES, help="dataset name")
    add_data_dir_argument(parser)
    parser.add_argument("--results", default="results", help="results folder (default: results)")
    parser.add_argument("--profile", default="workshop", choices=PROFILE_NAMES, help="parameter profile (default: workshop)")
    parser.add_argument("--seed", type=int, default=0, help="run seed (default: 0)")
    parser.add_argument("--backbone", default=None, help=BACKBONE_HELP)
    if policy:
        parser.add_argument("--policy", default=None, choices=POLICY_NAMES, help="pruning policy (default: none)")
    add_set_argument(parser, several=True)
    parser.add_argument("--device", default=None, help="auto (default: cuda when present), cpu or cuda:i")


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a command that runs a profile's plan on Dask (``ablations``, ``protocol``): ``--profile``,
    ``--datasets``, ``--results``, ``--data-dir``, ``--set``, ``--scheduler``, ``--workers``."""
    parser.add_argument("--profile", default="workshop", choices=PROFILE_NAMES, help="profile and plan (default: workshop)")
    parser.add_argument("--datasets", default=None,
                        help=f"comma-separated subset of the plan's datasets ({', '.join(DATASET_NAMES)}; default: the plan's)")
    parser.add_argument("--results", default="results", help="results folder (default: results)")
    add_data_dir_argument(parser)
    add_set_argument(parser, " in every run")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="an existing Dask scheduler, e.g. tcp://head:8786 (default: a local cluster)")
    parser.add_argument("--workers", type=int, default=None, help="workers of the local cluster (default: one per GPU, else one per core, at most 8; on CPUs each job gets cores/N threads)")


def add_setting_argument(parser: argparse.ArgumentParser) -> None:
    """``--setting``: which setting's stages a reader reads (:func:`setting_folder_arg`)."""
    parser.add_argument("--setting", default="same_site",
                        help="same_site (default), transfer-n<N> (one transfer folder, N labelled target patients) "
                             "or all")


def setting_folder_arg(value: str) -> str | None:
    """The ``setting`` argument of :func:`shapnas.runs.records.finished_stages` for a ``--setting`` value.

    Args:
        value: ``same_site``, ``all`` or ``transfer-n<N>``.

    Returns:
        ``""`` (same site), None (all settings) or the ``transfer-n<N>`` folder name.

    Raises:
        ValueError: any other value.
    """
    from shapnas.runs.identity import parse_setting_folder

    if value in ("same_site", "all"):
        return {"same_site": "", "all": None}[value]
    if parse_setting_folder(value) is None:
        raise ValueError(f"--setting {value!r}; expected same_site, all or transfer-n<N> (e.g. transfer-n8)")
    return value


def parse_names(text: str, allowed: Sequence[str], option: str) -> list[str]:
    """Comma-separated names, each one of ``allowed`` (duplicates dropped, order kept); ValueError otherwise."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if not names or unknown:
        raise ValueError(f"{option} {text!r}; expected comma-separated names from {', '.join(allowed)}")
    return list(dict.fromkeys(names))


def config_from_args(args: argparse.Namespace) -> RetrainConfig:
    """The full run config of a stage command: :func:`shapnas.config.stage_configs.resolve_config` of the profile, the named
    options and the ``--set`` overrides (names and types checked)."""
    named = {"dataset": args.dataset, "data_dir": parse_data_dirs(args.data_dirs, [args.dataset]).get(args.dataset),
             "results_root": args.results, "seed": args.seed, "backbone": args.backbone,
             "policy": getattr(args, "policy", None), "device": args.device}
    return resolve_config(RetrainConfig, args.profile, parse_overrides(args.overrides, RetrainConfig), **named)
