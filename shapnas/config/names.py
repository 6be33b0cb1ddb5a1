"""Names: the one registry of the datasets, backbones, backbone sizes, Shapley estimators and pruning policies.

The names live here, apart from the code they name, so that configs, the command line, the run matrix and the
plots can list them without importing PyTorch code.

A policy decides which candidate operations of the searched cells are removed during the search
(Benedykciuk et al., Sci. Rep. 2026: Shapley-guided pruning, compared with α-magnitude, JS-divergence and
random pruning and with the unpruned full search). The policy classes live in :mod:`shapnas.search.pruning`.

A trained model of policy ``p`` is reported as method ``iac-<p>``; the backbone and its fine-tuned
control are the methods ``backbone`` and ``finetune``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DATASET_NAMES",
    "BACKBONE_NAMES",
    "BACKBONE_SIZE_NAMES",
    "SHAPLEY_ESTIMATORS",
    "PolicySpec",
    "POLICIES",
    "POLICY_NAMES",
    "BASELINE_METHODS",
    "check_policy",
    "method_name",
    "policy_of_method",
    "method_label",
]


DATASET_NAMES = ("acdc", "brats", "kits", "amos", "msd")
BACKBONE_NAMES = ("basic_unet", "unet")
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
# the two arms without cells: the untouched pre-trained backbone and its fine-tuned control
BASELINE_METHODS: dict[str, str] = {"backbone": "backbone (pre-trained)", "finetune": "backbone fine-tuned"}


def check_policy(name: str) -> str:
    """``name`` if it is a policy, else a ValueError listing the valid names."""
    if name not in POLICIES:
        raise ValueError(f"policy={name!r}; expected one of {', '.join(POLICY_NAMES)}")
    return name


def method_name(policy: str) -> str:
    """The method id of a policy's trained model: ``iac-<policy>``."""
    return f"iac-{check_policy(policy)}"


def policy_of_method(method: str) -> str | None:
    """The policy of ``iac-<policy>``; None for the baselines (``backbone``, ``finetune``)."""
    if method in BASELINE_METHODS:
        return None
    if method.startswith("iac-"):
        return check_policy(method[len("iac-"):])
    raise ValueError(f"method={method!r}; expected backbone, finetune or iac-<policy> "
                     f"with a policy among {', '.join(POLICY_NAMES)}")


def method_label(method: str) -> str:
    """Display name of a method (``iac-shapley``) or an eval target (``shapley``, ``finetune``)."""
    if method in BASELINE_METHODS:
        return BASELINE_METHODS[method]
    policy = method[len("iac-"):] if method.startswith("iac-") else method
    return POLICIES[policy].label if policy in POLICIES else method
