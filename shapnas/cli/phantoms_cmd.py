"""``python -m shapnas phantoms``: write a seeded phantom dataset in a dataset's official layout."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``phantoms``."""
    from shapnas.data.phantoms import PHANTOM_DATASETS, PHANTOM_VARIANTS

    variants = "; ".join(f"{d}: {', '.join(v)}" for d, v in PHANTOM_VARIANTS.items() if len(v) > 1)
    parser = subparsers.add_parser(
        "phantoms", help="write a synthetic phantom dataset in an official layout",
        description="Write seeded synthetic 3D volumes (NIfTI) in the on-disk layout of ACDC, BraTS, KiTS, AMOS "
                    f"or MSD. They are phantoms, not patient data. Layout variants: {variants}.",
        epilog="Examples:\n  python -m shapnas phantoms --dataset acdc --out phantoms/acdc --patients 16 --seed 0\n"
               "  python -m shapnas phantoms --dataset brats --out phantoms/brats23 --variant 2023\n"
               "  python -m shapnas data --dataset acdc --data-dir phantoms/acdc",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=PHANTOM_DATASETS, help="dataset layout to write")
    parser.add_argument("--out", required=True, help="dataset folder to write (replaced if it holds a phantom)")
    parser.add_argument("--patients", type=int, default=16, help="number of patients (default: 16)")
    parser.add_argument("--seed", type=int, default=0, help="phantom seed (default: 0)")
    parser.add_argument("--variant", default=None, help="layout edition (default: the first one listed above)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Write the phantom dataset and print where it is."""
    from shapnas.data.phantoms import phantom_info, write_phantom_dataset

    root = write_phantom_dataset(args.dataset, args.out, args.patients, args.seed, variant=args.variant)
    info = phantom_info(root) or {}
    print(f"wrote {args.patients} {args.dataset} phantom patient(s) (layout {info.get('variant')}, seed {args.seed}) "
          f"to {root}")
    return 0
