"""Typed, frozen configurations for every stage (data, pretrain, search, retrain).

Each default is a choice documented in `shared/docs/method.md` (Benedykciuk et al., Sci. Rep. 2026;
PC-DARTS, Xu et al. ICLR 2020). Configs nest by inheritance, so a later stage's config carries everything
the earlier stages need: ``SearchConfig`` knows the data and the backbone it retrofits.
Profiles (``smoke``, ``workshop``, ``paper``) are YAML files of field values in ``shapnas/profiles``;
:func:`resolve_config` (from :mod:`shapnas.profiles`) turns a profile, named values and overrides into a config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

from shapnas.config.names import (BACKBONE_NAMES, BACKBONE_SIZE_NAMES, DATASET_NAMES, LOADABLE_BACKBONE_NAMES,
                                  POLICY_NAMES, SHAPLEY_ESTIMATORS)
from shapnas.config.overrides import check_names, convert_values
from shapnas.profiles import PROFILE_NAMES, config_from_profile, load_profile, resolve_config

__all__ = ["DATASET_NAMES", "BACKBONE_NAMES", "POLICY_NAMES", "SHAPLEY_ESTIMATORS", "SETTINGS",
           "MIN_TARGET_TEST_PATIENTS", "AUGMENTATION_NAMES", "BaseConfig", "DataConfig",
           "PretrainConfig", "SearchConfig", "RetrainConfig", "PROFILE_NAMES", "load_profile", "resolve_config",
           "config_from_profile"]

C = TypeVar("C", bound="BaseConfig")

SETTINGS = ("same_site", "transfer")  # first = default
# the transfer setting's target-site test split: at least this many patients, scored whole (evaluation power, as
# the workshop profile's >= 30 same-site test patients)
MIN_TARGET_TEST_PATIENTS = 30
# training-time augmentation policies of every training's slices (first = default: none); the transforms of each
# live in shapnas.training.augmentation (kept here so that configs load without torch; a test checks both)
AUGMENTATION_NAMES = ("none", "standard")


@dataclass(frozen=True, kw_only=True)
class BaseConfig:
    """Fields shared by every stage.

    Args:
        dataset: one of ``acdc brats kits amos msd``. Defaults to ``acdc``.
        data_dir: root of a dataset in its official layout; empty means the embedded phantom data,
            written on first use under ``<results_root>/phantoms/<dataset>``. Defaults to ``""``.
        results_root: where run directories live. Defaults to ``results``.
        seed: seed of the run (weights, batches, search). Defaults to 0.
        device: ``auto`` (cuda when present, else cpu), ``cpu`` or ``cuda[:i]``. Defaults to ``auto``.
        profile: the profile these values started from (``smoke``, ``workshop``, ``paper``) or ``custom``;
            recorded with every stage so that results of different profiles are never mixed. Defaults to
            ``custom``.
    """

    dataset: str = "acdc"
    data_dir: str = ""
    results_root: str = "results"
    seed: int = 0
    device: str = "auto"
    profile: str = "custom"

    def __post_init__(self) -> None:
        if self.dataset not in DATASET_NAMES:
            raise ValueError(f"dataset={self.dataset!r}; expected one of {', '.join(DATASET_NAMES)}")
        if self.seed < 0:
            raise ValueError(f"seed={self.seed}; expected a non-negative integer")
        if not (self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device={self.device!r}; expected 'auto', 'cpu' or 'cuda[:i]'")
        if self.profile not in (*PROFILE_NAMES, "custom"):
            raise ValueError(f"profile={self.profile!r}; expected one of {', '.join(PROFILE_NAMES)} or custom")

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict of all fields (JSON and YAML friendly)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls: type[C], values: Mapping[str, Any], *, strict: bool = True) -> C:
        """Build from a dict (e.g. a stored ``config.json``), each value converted to its field's type
        (:func:`shapnas.config.overrides.convert_values`); with ``strict`` unknown keys raise ``ValueError`` listing the
        valid names, otherwise they are ignored."""
        if strict:
            check_names(values, cls)
        known = set(cls.field_names())
        return cls(**convert_values(cls, {k: v for k, v in values.items() if k in known}))

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_names(cls) -> list[str]:
        """Names of all fields, in declaration order."""
        return [f.name for f in fields(cls)]


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _at_least(cfg: BaseConfig, minimum: int, names: tuple[str, ...], meaning: str = "") -> None:
    """Raise ``ValueError`` naming the first of ``names`` whose value is below ``minimum``."""
    for name in names:
        if getattr(cfg, name) < minimum:
            raise ValueError(f"{name}={getattr(cfg, name)}; expected {meaning or f'at least {minimum}'}")


@dataclass(frozen=True, kw_only=True)
class DataConfig(BaseConfig):
    """Data loading, slicing and patient-level splits.

    Args:
        slice_size: square in-plane size every slice is resized to. Defaults to 64.
        phantom_patients: patients written when the phantom data is used. Defaults to 16.
        phantom_seed: seed of the phantom data (fixed across run seeds, so seeds compare on the same data).
            Defaults to 0.
        split_seed: seed of the patient-level split (shared by every run seed). Defaults to 0.
        val_fraction: share of patients in V (held-out validation). Defaults to 0.2.
        test_fraction: share of patients in the test split. Defaults to 0.2.
        max_slices_per_volume: keep at most this many slices per volume, the most foreground-rich
            first then evenly spaced; 0 keeps all. Defaults to 0.
        keep_classes: dataset -> the foreground class names to segment; the others become background
            (e.g. the AMOS organs a 64-pixel slice can resolve); a dataset not named keeps every class.
            Defaults to {}.
        setting: ``same_site`` (every stage uses one site's splits W, A, V, test) or ``transfer`` (the backbone
            is pre-trained on all source-site training patients, today's splits of ``data_dir`` or the phantoms'
            site ``a``; the target site's patients are split into W, A, V carved from ``target_train_patients``
            labelled patients and a test split of the rest, at least ``MIN_TARGET_TEST_PATIENTS``).
            Defaults to ``same_site``.
        target_data_dir: with ``transfer``, the target site's dataset root in the same official layout; empty means
            the phantoms' second site, written under ``<results_root>/phantoms/<dataset>-site-b``. Defaults to
            ``""``.
        target_patients: with ``transfer`` and phantom data, patients written for the target site. Defaults to 40.
        target_train_patients: with ``transfer``, the labelled target-site patients (W, A and V; at least 3).
            Defaults to 8.
    """

    slice_size: int = 64
    phantom_patients: int = 16
    phantom_seed: int = 0
    split_seed: int = 0
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    max_slices_per_volume: int = 0
    keep_classes: dict[str, list[str]] = field(default_factory=dict)  # classes scored per dataset (evaluation power)
    # transfer setting: a source-site backbone adapted to a target site with few labelled patients
    setting: Literal["same_site", "transfer"] = "same_site"
    target_data_dir: str = ""
    target_patients: int = 40
    target_train_patients: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.keep_classes, dict) or any(not isinstance(v, (list, tuple))
                                                           for v in self.keep_classes.values()):
            raise ValueError(f"keep_classes={self.keep_classes!r}; expected a mapping dataset -> list of class names")
        object.__setattr__(self, "keep_classes", {str(k): [str(n) for n in v] for k, v in self.keep_classes.items()})
        if self.slice_size < 16 or self.slice_size % 16:
            raise ValueError(f"slice_size={self.slice_size}; expected a multiple of 16, at least 16")
        if not 0 < self.val_fraction < 1 or not 0 < self.test_fraction < 1:
            raise ValueError(
                f"val_fraction={self.val_fraction}, test_fraction={self.test_fraction}; expected each in (0, 1)"
            )
        if self.val_fraction + self.test_fraction >= 0.8:
            raise ValueError("val_fraction + test_fraction must leave at least 20% of patients for training")
        if self.phantom_patients < 4:
            raise ValueError(f"phantom_patients={self.phantom_patients}; expected at least 4 (W, A, V, test)")
        self._check_setting()

    def input_normalisation(self) -> str:
        """How the data layer normalises the network's input: ``shapnas`` (:func:`shapnas.data.volumes.normalise`);
        a backbone config may say otherwise (``nnunet:<checkpoint>``, :meth:`PretrainConfig.input_normalisation`)."""
        return "shapnas"

    def source_site(self: C) -> C:
        """This config's source site as a same-site config (the transfer setting's backbone is pre-trained on it):
        ``setting='same_site'`` and no ``target_data_dir``; itself in the same-site setting."""
        if self.setting == "same_site":
            return self
        return self.replace(setting="same_site", target_data_dir="")

    def _check_setting(self) -> None:
        """Validate ``setting`` and the target-site fields."""
        if self.setting not in SETTINGS:
            raise ValueError(f"setting={self.setting!r}; expected one of {', '.join(SETTINGS)}")
        if self.setting == "same_site" and self.target_data_dir:
            raise ValueError(f"target_data_dir={self.target_data_dir!r} with setting='same_site'; a target site is "
                             "read only with setting='transfer'")
        if self.target_train_patients < 3:
            raise ValueError(f"target_train_patients={self.target_train_patients}; expected at least 3 (W, A and V "
                             "each need a labelled target-site patient)")
        if self.target_patients < self.target_train_patients + MIN_TARGET_TEST_PATIENTS:
            raise ValueError(f"target_patients={self.target_patients} with target_train_patients="
                             f"{self.target_train_patients}; expected at least target_train_patients + "
                             f"{MIN_TARGET_TEST_PATIENTS} (the target-site test split)")
        if self.setting == "transfer" and self.data_dir and not self.target_data_dir:
            raise ValueError(f"setting='transfer' with data_dir={self.data_dir!r} needs target_data_dir (the target "
                             "site's folder); the phantoms' second site pairs only with the phantoms' first")
        if self.setting == "transfer" and self.dataset == "msd" and not self.target_data_dir:
            raise ValueError("setting='transfer' on dataset 'msd' needs target_data_dir (the phantoms' second site "
                             "exists for acdc, brats, kits and amos)")


@dataclass(frozen=True, kw_only=True)
class PretrainConfig(DataConfig):
    """The backbone U-Net and its pre-training (DiceCE, Adam, model selection on V).

    Args:
        backbone: ``basic_unet`` (MONAI BasicUNet, default), ``unet`` (MONAI UNet), ``attention_unet`` (MONAI
            AttentionUnet, attention-gated skips), ``basic_unet_plus_plus`` (MONAI BasicUNetPlusPlus, nested
            dense skips, without deep supervision) or ``nnunet`` (a trained nnU-Net v2 2D model, loaded only:
            ``backbone_checkpoint`` must name its ``fold_K/checkpoint_final.pth``; the input is then normalised
            with the model's nnU-Net normalisation, :meth:`input_normalisation`).
        backbone_size: ``micro`` (narrowest, CPU), ``tiny`` (workshop CPU), ``small`` or ``paper`` (paper-like
            width, for a GPU).
        backbone_checkpoint: path to a user's own trained MONAI state dict (``.pt`` holding
            ``state_dict`` and ``init_args``), or with ``backbone=nnunet`` to an nnU-Net v2 checkpoint
            (``<results folder>/fold_K/checkpoint_final.pth``, ``plans.json`` and ``dataset.json`` two levels up);
            empty means pre-train here. Defaults to ``""``.
        pretrain_epochs: epochs of pre-training. Defaults to 4.
        pretrain_lr: Adam learning rate. Defaults to 1e-3.
        batch_size: slices per batch for every stage. Defaults to 16.
        finetune_epochs: extra epochs of the fair baseline (backbone fine-tuned for the budget the
            retrofit gets in re-training). Defaults to 4.
        finetune_lr: Adam learning rate of that fine-tune. Defaults to 3e-4.
        pretrain_steps: optimiser-step budget of pre-training; 0 means ``pretrain_epochs`` epochs. Defaults to 0.
        finetune_steps: step budget of the fine-tuned control (and, via ``retrain_steps``, of the IAC
            re-training); 0 means ``finetune_epochs`` epochs. Defaults to 0.
        patience_steps: early stopping: a training (pre-train, fine-tune, re-train) stops once its V Dice has
            not improved for this many steps; 0 never stops early. Defaults to 0.
        selection: the model-selection score on V of every arm: ``patient`` (mean patient-level Dice of the
            whole V volumes, as the test is scored) or ``slices`` (Dice pooled over the capped V slices).
            Defaults to ``patient``.
        finetune_lrs: learning rates the fine-tuned control is tuned over (each early-stopped on V; the best
            V Dice wins); empty means ``finetune_lr`` alone. Defaults to ().
        val_every_steps: every training (pre-train, fine-tune, re-train) scores V only once this many steps have
            passed since its last V score (and after its last epoch); 0 scores V after every epoch. Defaults to 0.
        normtune_lrs: learning rates the parameter-efficient control (normalisation affine parameters and biases
            only, about 1 % of the weights) is tuned over, with the fine-tune's step budget and V selection; a grid
            above the full fine-tune's, since few weights move (BitFit, Ben Zaken et al. ACL 2022, tuned 1e-4 to
            1e-3 on transformers). Defaults to (1e-3, 3e-3, 1e-2).
        augmentation: training-time augmentation of the training slices of every training (pre-training,
            fine-tunes, the search's weight steps, the re-training; never A, V or test): ``none`` or ``standard``
            (MONAI random affine, intensity, contrast, noise and smoothing, flips only where the dataset's anatomy
            allows; :mod:`shapnas.training.augmentation`). Defaults to ``none``.
    """

    backbone: str = "basic_unet"
    backbone_size: Literal["micro", "tiny", "small", "paper"] = "tiny"
    backbone_checkpoint: str = ""
    pretrain_epochs: int = 4
    pretrain_lr: float = 1e-3
    batch_size: int = 16
    finetune_epochs: int = 4
    finetune_lr: float = 3e-4
    # evaluation power: budgets in optimiser steps, early stopping, one V selection rule for every arm
    pretrain_steps: int = 0
    finetune_steps: int = 0
    patience_steps: int = 0
    selection: Literal["patient", "slices"] = "patient"
    finetune_lrs: tuple[float, ...] = ()
    val_every_steps: int = 0
    normtune_lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    augmentation: str = "none"  # a stage stored before this field existed ran without augmentation

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.augmentation not in AUGMENTATION_NAMES:
            raise ValueError(f"augmentation={self.augmentation!r}; expected one of {', '.join(AUGMENTATION_NAMES)}")
        _at_least(self, 0, ("pretrain_steps", "finetune_steps", "patience_steps", "val_every_steps"),
                  "0 (off) or a positive step count")
        if self.selection not in ("patient", "slices"):
            raise ValueError(f"selection={self.selection!r}; expected 'patient' or 'slices'")
        for name in ("finetune_lrs", "normtune_lrs"):
            rates = tuple(float(lr) for lr in getattr(self, name))  # YAML "1e-4" is a str
            object.__setattr__(self, name, rates)
            if any(not lr > 0 for lr in rates):
                raise ValueError(f"{name}={rates}; expected positive learning rates")
        if not self.normtune_lrs:
            raise ValueError("normtune_lrs=(); expected at least one learning rate")
        self._check_backbone()
        if self.backbone_size not in BACKBONE_SIZE_NAMES:
            raise ValueError(f"backbone_size={self.backbone_size!r}; expected one of {', '.join(BACKBONE_SIZE_NAMES)}")
        _at_least(self, 1, ("pretrain_epochs", "batch_size", "finetune_epochs"))

    def _check_backbone(self) -> None:
        """Validate ``backbone``: a buildable name, or a loadable-only one (``nnunet``) with its checkpoint."""
        names = (*BACKBONE_NAMES, *LOADABLE_BACKBONE_NAMES)
        if self.backbone not in names:
            raise ValueError(f"backbone={self.backbone!r}; expected one of {', '.join(names)}")
        if self.backbone in LOADABLE_BACKBONE_NAMES and not self.backbone_checkpoint:
            raise ValueError(f"backbone={self.backbone!r} is loaded from a trained model, never built here; set "
                             "backbone_checkpoint to its checkpoint (nnunet: <nnU-Net results folder>/fold_K/"
                             "checkpoint_final.pth, e.g. --set backbone_checkpoint=...)")

    def input_normalisation(self) -> str:
        """How the data layer normalises the network's input: ``shapnas`` (:func:`shapnas.data.volumes.normalise`)
        or, for an nnU-Net backbone, ``nnunet:<checkpoint>`` (the normalisation in the plans of the checkpoint's
        results folder, applied with nnU-Net's own classes)."""
        return f"nnunet:{self.backbone_checkpoint}" if self.backbone == "nnunet" else "shapnas"


@dataclass(frozen=True, kw_only=True)
class SearchConfig(PretrainConfig):
    """PC-DARTS search of the implanted cells, with a pruning policy (method.md).

    Args:
        policy: pruning policy, one of ``none shapley alpha js random``. Defaults to ``none``.
        search_epochs: epoch cap (the full search length of ``none``). Defaults to 12.
        warmup_epochs: weight-only epochs before architecture steps (PC-DARTS: 15 of 50). Defaults to 3.
        partial_channels: K, 1/K of the cell channels go through the mixed op. Defaults to 4.
        cell_channels: C, the cell width (divisible by K); 0 means min(skip channels, 32) rounded to K.
        num_nodes: intermediate nodes per cell (DARTS: 4, 14 edges). Defaults to 4.
        per_level_alpha: one α/β per skip level instead of one shared genotype (ablation).
        weight_lr: learning rate of the cell weights (cosine), for ``weight_optimizer`` (PC-DARTS's SGD: 0.1,
            DARTS 0.025). Defaults to 3e-3 (Adam).
        weight_momentum, weight_decay, grad_clip: momentum (SGD only), weight decay and gradient-norm clip of
            the weight steps (0.9, 3e-4, 5).
        arch_lr: Adam learning rate of α, β. Defaults to 6e-4.
        arch_beta1, arch_beta2, arch_weight_decay: Adam settings (0.5, 0.999, 0). PC-DARTS decays α, β by 1e-3;
            behind a frozen decoder their gradients are ~1e-4 per entry, so that decay alone held α within
            ±0.01 of uniform (measured, ``benchmarks/signal.py``): no decay by default.
        prune_interval: T, epochs between pruning rounds after the warm-up. Defaults to 1.
        prune_per_round: r, ops removed per edge a round (never the last). Defaults to 2.
        settle_epochs: epochs after every edge has one op. Defaults to 1.
        shapley_permutations: M, antithetic permutation pairs a round. Defaults to 4.
        shapley_truncation: τ, truncation of a permutation walk relative to the empty coalition: a walk
            that adds players stops once |v(N) − v(S)| ≤ τ·|v(N) − v(∅)| (the rest get 0), its antithetic
            walk that removes players stops once |v(S) − v(∅)| ≤ τ·|v(N) − v(∅)|; 0 disables truncation
            (see ``shapnas.shapley.monte_carlo``). Defaults to 0.02.
        shapley_momentum: momentum across rounds (Shapley-NAS: 0.8). Defaults to 0.8.
        shapley_value: ``dice`` (soft foreground Dice) or ``dicece`` (−DiceCE). Defaults to ``dice``.
        shapley_slices: V slices (foreground-rich) in the value batch. Defaults to 8.
        js_window: epochs in the Jensen–Shannon stability window (policy ``js``). Defaults to 2.
        js_threshold: JS divergence under which an edge counts as settled. Defaults to 0.01.
        shapley_estimator: ``ig`` (Aumann–Shapley: mask gradients at K points on the diagonal),
            ``owen`` (mask gradients at ``shapley_samples`` random binary coalitions per diagonal point: Owen
            sampling, closer to the Monte-Carlo reference on rounds with signal, K·R passes a round) or
            ``mc`` (truncated Monte-Carlo permutations: ``shapley_permutations``, ``shapley_truncation``).
            Defaults to ``ig``.
        shapley_points: K, midpoint-rule points on the diagonal of an ``ig`` round. Defaults to 1 (t = ½).
        shapley_points_first: K of the first ``ig`` round (the most players). Defaults to 4: on a round with
            signal (KiTS, v(N) − v(∅) = 0.014) 2 points left a completeness gap of 4 % and matched the
            reference's pruning decisions on 10 of 14 edges, 4 points 0.7 % and 11 of 14 (the Monte-Carlo
            noise ceiling), for 2 more passes (book/calibration.md).
        shapley_samples: R, random coalitions per diagonal point of an ``owen`` round. Defaults to 4.
        prune_warmup_epochs: epochs before the first pruning round; -1 means ``warmup_epochs`` (the
            architecture warm-up). Defaults to -1.
        weight_optimizer: optimiser of the cell weights, ``adam`` (our choice: the frozen decoder hands the
            cells gradients of ~1e-3, which SGD at PC-DARTS's rate barely moves) or ``sgd`` (PC-DARTS, with
            ``weight_momentum``); both cosine-annealed, clipped at ``grad_clip``. Defaults to ``adam``.
        search_epoch_steps: weight steps in one search epoch (batches drawn from W, reshuffled at each pass),
            so that budgets are optimiser steps rather than passes over a small split: warm-up
            ``warmup_epochs × search_epoch_steps`` steps, search at most ``search_epochs × search_epoch_steps``;
            0 means one pass over W. Defaults to 0.
        residual: how a cell joins its skip: ``projection`` (``e + cell(e)`` with the cell's output 1×1
            projection initialised to zero) or ``gate`` (``e + 30·γ·cell(e)``, γ = 0 at implant). Both equal
            the backbone exactly at implant time. Defaults to ``projection``.
        decoder_input: the cell's second input state ``s1`` is the decoder feature upsampled to the skip's
            level (``s0`` the skip) instead of a second projection of the skip; not for
            ``basic_unet_plus_plus`` (no decoder feature enters a level before its skip is read). Defaults to
            False.
    """

    policy: str = "none"
    search_epochs: int = 12
    warmup_epochs: int = 3
    partial_channels: int = 4
    cell_channels: int = 0
    num_nodes: int = 4
    per_level_alpha: bool = False
    weight_lr: float = 3e-3
    weight_momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    arch_lr: float = 6e-4
    arch_beta1: float = 0.5
    arch_beta2: float = 0.999
    arch_weight_decay: float = 0.0
    prune_interval: int = 1
    prune_per_round: int = 2
    settle_epochs: int = 1
    shapley_permutations: int = 4
    shapley_truncation: float = 0.02
    shapley_momentum: float = 0.8
    shapley_value: str = "dice"
    shapley_slices: int = 8
    js_window: int = 2
    js_threshold: float = 0.01
    # Shapley estimator and pruning start
    shapley_estimator: str = "ig"
    shapley_points: int = 1
    shapley_points_first: int = 4
    shapley_samples: int = 4
    prune_warmup_epochs: int = -1
    # search optimisation, residual form, decoder input (measured with benchmarks/signal.py)
    weight_optimizer: str = "adam"
    search_epoch_steps: int = 0
    residual: str = "projection"
    decoder_input: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.policy not in POLICY_NAMES:
            raise ValueError(f"policy={self.policy!r}; expected one of {', '.join(POLICY_NAMES)}")
        if self.shapley_value not in ("dice", "dicece"):
            raise ValueError(f"shapley_value={self.shapley_value!r}; expected 'dice' or 'dicece'")
        if not 0 <= self.warmup_epochs < self.search_epochs:
            raise ValueError(
                f"warmup_epochs={self.warmup_epochs}, search_epochs={self.search_epochs}; "
                "expected 0 <= warmup_epochs < search_epochs"
            )
        if self.partial_channels < 1 or (self.cell_channels and self.cell_channels % self.partial_channels):
            raise ValueError(
                f"cell_channels={self.cell_channels}, partial_channels={self.partial_channels}; "
                "expected K >= 1 and C divisible by K"
            )
        if self.weight_optimizer not in ("adam", "sgd"):
            raise ValueError(f"weight_optimizer={self.weight_optimizer!r}; expected 'adam' or 'sgd'")
        if self.residual not in ("projection", "gate"):
            raise ValueError(f"residual={self.residual!r}; expected 'projection' or 'gate'")
        if self.decoder_input and self.backbone == "basic_unet_plus_plus":
            raise ValueError("decoder_input=True is not available for backbone 'basic_unet_plus_plus' (nested dense "
                             "skips, no decoder feature per skip level); use decoder_input=False")
        _at_least(self, 0, ("search_epoch_steps",), "0 (one pass over W) or more")
        _at_least(self, 1, ("prune_interval", "prune_per_round", "shapley_permutations", "shapley_slices", "num_nodes"))
        self._check_shapley_estimator()

    def _check_shapley_estimator(self) -> None:
        """Validate the Shapley estimator fields (estimator, diagonal points, samples) and the pruning warm-up."""
        if self.shapley_estimator not in SHAPLEY_ESTIMATORS:
            raise ValueError(f"shapley_estimator={self.shapley_estimator!r}; expected one of "
                             f"{', '.join(SHAPLEY_ESTIMATORS)}")
        _at_least(self, 1, ("shapley_points", "shapley_points_first", "shapley_samples"))
        if not -1 <= self.prune_warmup_epochs < self.search_epochs:
            raise ValueError(f"prune_warmup_epochs={self.prune_warmup_epochs}, search_epochs={self.search_epochs}; "
                             "expected -1 (the architecture warm-up) or 0 <= prune_warmup_epochs < search_epochs")

    @property
    def prune_start(self) -> int:
        """Epochs before the first pruning round (``prune_warmup_epochs``, or ``warmup_epochs`` when -1)."""
        return self.warmup_epochs if self.prune_warmup_epochs < 0 else self.prune_warmup_epochs


@dataclass(frozen=True, kw_only=True)
class RetrainConfig(SearchConfig):
    """Re-training of the discrete cell implanted in the frozen backbone, and evaluation.

    Args:
        retrain_epochs: epochs of re-training (the fine-tuned baseline gets ``finetune_epochs``,
            set equal by the profiles so the budgets match). Defaults to 4.
        retrain_lr: Adam learning rate of the cells and gates. Defaults to 1e-3.
        joint_finetune: also fine-tune the backbone while re-training, at the fine-tuned control's
            (tuned) learning rate; the cells keep ``retrain_lr``. Defaults to False.
        retrain_steps: step budget of the re-training (profiles set it to ``finetune_steps``: the same
            budget as the control); 0 means ``retrain_epochs`` epochs. Defaults to 0.
    """

    retrain_epochs: int = 4
    retrain_lr: float = 1e-3
    joint_finetune: bool = False
    retrain_steps: int = 0  # a step budget with V early stopping, as every training

    def __post_init__(self) -> None:
        super().__post_init__()
        _at_least(self, 0, ("retrain_steps",), "0 (off) or a positive step count")
        _at_least(self, 1, ("retrain_epochs",))
