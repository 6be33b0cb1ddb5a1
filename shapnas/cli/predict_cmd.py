"""``python -m shapnas predict``: segment a NIfTI volume with a trained stage's model."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]

EXAMPLES = """Examples:
  python -m shapnas predict --run results/acdc/basic_unet/seed-0/retrain-shapley \\
      --input patient101_frame01.nii.gz --output patient101_frame01_seg.nii.gz
  python -m shapnas predict --run results/brats/basic_unet/seed-0/retrain-shapley \\
      --input case_flair.nii.gz case_t1.nii.gz case_t1ce.nii.gz case_t2.nii.gz --output case_seg.nii.gz --device cuda
  python -m shapnas predict --run results/kits/basic_unet/seed-0/pretrain --input imaging.nii.gz \\
      --output seg.nii.gz --slice-axis 0"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``predict`` subcommand."""
    parser = subparsers.add_parser(
        "predict", help="segment a NIfTI volume with a trained stage's model (e.g. retrain-<policy>)",
        description="Segment one 3D case slice by slice with the model of a stage directory (retrain-<policy> "
                    "for the found architecture, pretrain or finetune for the backbone) and write a uint8 label "
                    "NIfTI with the dataset's on-disk label values and the input's affine and shape.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, metavar="STAGE_DIR",
                        help="stage directory holding model.pt (a summary --json record's model_dir), or the "
                             "model.pt file")
    parser.add_argument("--input", required=True, nargs="+", action="extend", metavar="IMAGE",
                        help="input NIfTI: one 3D file, one 4D file (X, Y, Z, C), or one 3D file per channel in "
                             "the model's channel order")
    parser.add_argument("--output", required=True, metavar="SEG", help="label NIfTI to write (.nii.gz or .nii)")
    parser.add_argument("--device", default="auto", help="auto (default: cuda when present), cpu or cuda:i")
    parser.add_argument("--batch-size", type=int, default=16, help="slices per forward pass (default: 16)")
    parser.add_argument("--slice-axis", type=int, default=None, choices=(0, 1, 2),
                        help="voxel axis of the input that holds the slices (default: the checkpoint's, "
                             "else from the geometry as in training)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Predict and print the output path."""
    from shapnas.runtime import pick_device
    from shapnas.training.predict import predict_nifti

    if args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size}; expected at least 1")
    output = predict_nifti(args.run, args.input, args.output, device=pick_device(args.device),
                           batch_size=args.batch_size, slice_axis_hint=args.slice_axis)
    print(output)
    return 0
