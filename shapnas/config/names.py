"""Names: the one registry of the datasets, backbones, backbone sizes, Shapley estimators and pruning policies.

The names live here, apart from the code they name, so that configs, the command line, the run matrix and the
plots can list them without importing PyTorch code.

A policy decides which candidate operations of the searched cells are removed during the search
(Benedykciuk et al., Sci. Rep. 2026: Shapley-guided pruning, compared with α-magnitude, JS-divergence and
random pruning and with the unpruned full search). The policy classes live in :mod:`shapnas.search.pruning`.

A trained model of policy ``p`` is reported as method ``iac-<p>`` (``iac-<p>-joint`` when the backbone was
fine-tuned jointly with the cell); the arms without cells are the methods ``backbone`` (the pre-trained
backbone as is), ``finetune`` (every weight fine-tuned), ``normtune`` (a parameter-efficient control: the
normalisation layers' affine parameters and every bias) and ``scratch`` (a backbone trained on the run's
training patients alone, for the transfer setting).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DATASET_NAMES",
    "DATASET_LABELS",
    "dataset_label",
    "BACKBONE_NAMES",
    "LOADABLE_BACKBONE_NAMES",
    "BACKBONE_SIZE_NAMES",
    "SHAPLEY_ESTIMATORS",
    "PolicySpec",
    "POLICIES",
    "POLICY_NAMES",
    "BASELINE_METHODS",
    "JOINT_SUFFIX",
    "TRANSFER_ARMS",
    "check_policy",
    "split_policy_variant",
    "policy_variant",
    "method_name",
    "policy_of_method",
    "method_label",
]


DATASET_NAMES = ("acdc", "brats", "kits", "amos", "msd")
# how the datasets are spelled in prose, tables and figures
DATASET_LABELS = {"acdc": "ACDC", "brats": "BraTS", "kits": "KiTS", "amos": "AMOS", "msd": "MSD"}


def dataset_label(dataset: str) -> str:
    """The display name of a dataset (``kits`` -> ``KiTS``); an unknown name in capitals."""
    return DATASET_LABELS.get(dataset, dataset.upper())

BACKBONE_NAMES = ("basic_unet", "unet", "attention_unet", "basic_unet_plus_plus")
# backbones that are only loaded from a user's trained model, never built or pre-trained here (``backbone_checkpoint``
# is required): ``nnunet``, an nnU-Net v2 2D model (shapnas.networks.nnunet)
LOADABLE_BACKBONE_NAMES = ("nnunet",)
# widths of shapnas.networks.backbones.BACKBONE_SIZES (kept here so that configs load without torch; a test checks both)
BACKBONE_SIZE_NAMES = ("micro", "tiny", "small", "paper")
# estimators of a Shapley round (shapnas.shapley.supernet_game): Aumann–Shapley, Owen sampling with gradients, Monte-Carlo
SHAPLEY_ESTIMATORS = ("ig", "owen", "mc")


@dataclass(frozen=True)
class PolicySpec:
    """One pruning policy.

    Attributes:
        name: the config value (``policy: shapley``).
        label: display name of its trained model in tables and figures.
        description: one line for ``--help`` and the book.
    """

    name: str
    label: str
    description: str


POLICIES: dict[str, PolicySpec] = {spec.name: spec for spec in (
    PolicySpec("none", "IAC, full search", "no pruning: the full PC-DARTS-style search"),
    PolicySpec("shapley", "IAC, Shapley-pruned", "prune the ops with the lowest Shapley values on V"),
    PolicySpec("alpha", "IAC, α-pruned", "prune the ops with the lowest softmax α"),
    PolicySpec("js", "IAC, JS-pruned", "prune when α's Jensen-Shannon divergence over a window is small"),
    PolicySpec("random", "IAC, randomly pruned", "prune uniformly random ops (a control)"),
)}
POLICY_NAMES: tuple[str, ...] = tuple(POLICIES)
# the arms without cells: the untouched pre-trained backbone, its fine-tuned control, the parameter-efficient
# control (normalisation affine parameters and biases, as BitFit, Ben Zaken et al. ACL 2022) and a backbone
# trained from scratch on the run's own training patients (the transfer setting's lower reference)
BASELINE_METHODS: dict[str, str] = {"backbone": "backbone (pre-trained)", "finetune": "backbone fine-tuned",
                                    "normtune": "norms + biases tuned", "scratch": "trained from scratch"}
# a policy variant whose re-training also fine-tuned the backbone (``joint_finetune``): ``shapley-joint``
JOINT_SUFFIX = "-joint"
# the eval targets of the transfer setting (shapnas.experiments.transfer): the arms without cells, IAC with the full
# and the Shapley-pruned search on the frozen source backbone, and the Shapley-pruned cell with the joint fine-tune
TRANSFER_ARMS = ("backbone", "finetune", "normtune", "scratch", "none", "shapley", "shapley" + JOINT_SUFFIX)


def check_policy(name: str) -> str:
    """``name`` if it is a policy, else a ValueError listing the valid names."""
    if name not in POLICIES:
        raise ValueError(f"policy={name!r}; expected one of {', '.join(POLICY_NAMES)}")
    return name


def split_policy_variant(variant: str) -> tuple[str, bool]:
    """``(policy, joint)`` of a policy variant ``<policy>`` or ``<policy>-joint``.

    Raises:
        ValueError: an unknown policy, listing the valid names.
    """
    joint = variant.endswith(JOINT_SUFFIX)
    return check_policy(variant[: -len(JOINT_SUFFIX)] if joint else variant), joint


def policy_variant(policy: str, joint: bool = False) -> str:
    """The variant naming a policy's search or re-training: ``<policy>``, or ``<policy>-joint`` with ``joint``."""
    return check_policy(policy) + (JOINT_SUFFIX if joint else "")


def method_name(policy: str) -> str:
    """The method id of a policy variant's trained model: ``iac-<policy>`` or ``iac-<policy>-joint``."""
    split_policy_variant(policy)
    return f"iac-{policy}"


def policy_of_method(method: str) -> str | None:
    """The policy variant of ``iac-<policy>[-joint]``; None for the arms without cells (:data:`BASELINE_METHODS`)."""
    if method in BASELINE_METHODS:
        return None
    if method.startswith("iac-"):
        variant = method[len("iac-"):]
        split_policy_variant(variant)
        return variant
    raise ValueError(f"method={method!r}; expected one of {', '.join(BASELINE_METHODS)} or iac-<policy>[-joint] "
                     f"with a policy among {', '.join(POLICY_NAMES)}")


def method_label(method: str) -> str:
    """Display name of a method (``iac-shapley``) or an eval target (``shapley``, ``finetune``)."""
    if method in BASELINE_METHODS:
        return BASELINE_METHODS[method]
    variant = method[len("iac-"):] if method.startswith("iac-") else method
    joint = variant.endswith(JOINT_SUFFIX)
    policy = variant[: -len(JOINT_SUFFIX)] if joint else variant
    if policy not in POLICIES:
        return method
    return POLICIES[policy].label + (" + joint fine-tune" if joint else "")
