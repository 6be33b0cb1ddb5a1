"""Arguments shared by the stage subcommands, and the config they build."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from shapnas.config import DATASET_NAMES, POLICY_NAMES, PROFILE_NAMES, RetrainConfig, config_from_profile

__all__ = ["add_run_arguments", "config_from_args", "parse_overrides"]


def add_run_arguments(parser: argparse.ArgumentParser, *, policy: bool = True) -> None:
    """Add --dataset, --data-dir, --results, --profile, --seed, --backbone, [--policy], --set, --device."""
    parser.add_argument("--dataset", required=True, choices=DATASET_NAMES, help="dataset name")
    parser.add_argument("--data-dir", default="", help="dataset root in its official layout (default: phantom data)")
    parser.add_argument("--results", default="results", help="results folder (default: results)")
    parser.add_argument("--profile", default="workshop", choices=PROFILE_NAMES, help="parameter profile (default: workshop)")
    parser.add_argument("--seed", type=int, default=0, help="run seed (default: 0)")
    parser.add_argument("--backbone", default=None, help="basic_unet (default) or unet")
    if policy:
        parser.add_argument("--policy", default=None, choices=POLICY_NAMES, help="pruning policy (default: none)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. --set search_epochs=20 (repeatable)")
    parser.add_argument("--device", default=None, help="auto (default: cuda when present), cpu or cuda:i")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (values parsed as YAML scalars)."""
    values = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set {item!r}; expected KEY=VALUE")
        key, value = item.split("=", 1)
        values[key.strip()] = yaml.safe_load(value)
    return values


def config_from_args(args: argparse.Namespace) -> RetrainConfig:
    """The full run config: the profile's values, then the named options, then ``--set`` overrides."""
    overrides = parse_overrides(args.overrides)
    unknown = sorted(set(overrides) - set(RetrainConfig.field_names()))
    if unknown:
        raise ValueError(f"--set: unknown config field(s) {', '.join(unknown)}; see the config docs")
    named = {"dataset": args.dataset, "data_dir": args.data_dir, "results_root": args.results, "seed": args.seed,
             "backbone": args.backbone, "policy": getattr(args, "policy", None), "device": args.device}
    return config_from_profile(RetrainConfig, args.profile, **{**named, **overrides})
