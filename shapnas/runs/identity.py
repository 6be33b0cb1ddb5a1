"""Run identity: which stage of which run a folder holds, and whether a finished one may be reused.

The one place that builds stage folder names. A stage is named by a :class:`StageKey` (dataset, backbone,
seed, setting folder, stage kind, and the policy or eval target it is for); its folder is
``<results_root>/<dataset>/<backbone>/seed-<k>/[transfer-n<N>/]<kind>[-<variant>]`` (``runs.stage_dir``)::

    pretrain  finetune  normtune  scratch  search-<policy>  retrain-<policy>[-joint]  eval-<target>

The same-site setting's stages sit in the seed folder. The transfer setting's stages (a source-site backbone
adapted to a target site with N labelled patients) sit in ``transfer-n<N>`` inside it, all but ``pretrain``:
the source backbone is the same-site ``pretrain`` of the source site, shared by every N.

Every stage stores the config it ran with (``config.json``, profile included). A finished stage
(``metrics.json``) is reused only when that config equals the requested one over the fields the stage
depends on (:func:`stage_fields`); otherwise :func:`reusable` raises :class:`StaleStageError`, which names the
folder and each differing field: results of one setting are never reported under another. Fields that do
not change results (:data:`RUNTIME_FIELDS`: where results live, which device computes) are not compared.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from shapnas.config.names import (BASELINE_METHODS, check_policy, method_name, policy_of_method, policy_variant,
                                  split_policy_variant)
from shapnas.config.stage_configs import PretrainConfig, RetrainConfig, SearchConfig
from shapnas.runs.files import is_complete, load_json, stage_dir

__all__ = [
    "StageKind",
    "STAGE_KINDS",
    "JOB_KINDS",
    "StageKey",
    "TARGET_FIELDS",
    "setting_folder",
    "parse_setting_folder",
    "StaleStageError",
    "RUNTIME_FIELDS",
    "FINETUNE_FIELDS",
    "stage_name",
    "parse_stage_name",
    "stage_key",
    "eval_targets",
    "method_of_target",
    "target_of_method",
    "model_stage_name",
    "stage_fields",
    "config_differences",
    "field_defaults",
    "reusable",
    "stage_config",
    "check_reuse",
]

# fields that never change a stage's results: where the results folder is and which device computes
RUNTIME_FIELDS = ("results_root", "device")
# the fine-tuned control's own fields: pre-training and search do not read them
FINETUNE_FIELDS = ("finetune_epochs", "finetune_lr", "finetune_steps", "finetune_lrs", "normtune_lrs")
# the transfer setting's own fields: a same-site stage (the source backbone included) does not read them
TARGET_FIELDS = ("setting", "target_data_dir", "target_patients", "target_train_patients")
_TRANSFER_PREFIX = "transfer-n"


@dataclass(frozen=True)
class StageKind:
    """One kind of stage.

    Attributes:
        name: the kind, also the folder name (or its prefix when ``variant`` is required).
        variant: what completes the name: ``""`` (none), ``policy`` or ``target`` (eval).
        config: the config class whose fields the stage depends on.
        description: one line.
        resume_file: a file that marks a stage resumable mid-way (its config must match before resuming).
        command: the subcommand (``python -m shapnas <command>``) and run-matrix job kind that runs it.
    """

    name: str
    variant: str
    config: type
    description: str
    resume_file: str = ""
    command: str = ""

    def __post_init__(self) -> None:
        if not self.command:
            object.__setattr__(self, "command", self.name)


STAGE_KINDS: dict[str, StageKind] = {kind.name: kind for kind in (
    StageKind("pretrain", "", PretrainConfig, "pre-train the backbone (or take a given checkpoint)"),
    StageKind("finetune", "", PretrainConfig, "fine-tune the backbone: the fair control"),
    StageKind("normtune", "", PretrainConfig, "tune the backbone's norms and biases: the parameter-efficient control"),
    StageKind("scratch", "", PretrainConfig, "train a backbone on the run's training patients alone"),
    StageKind("search", "policy", SearchConfig, "search the implanted cells with a pruning policy",
              resume_file="search_state.pt"),
    StageKind("retrain", "policy", RetrainConfig, "re-train the discrete cell found by the search"),
    StageKind("eval", "target", RetrainConfig, "evaluate a model on the test patients", command="evaluate"),
)}
# the run matrix's job kinds, which are also the stage subcommands of the command line
JOB_KINDS: tuple[str, ...] = tuple(kind.command for kind in STAGE_KINDS.values())


class StaleStageError(ValueError):
    """A stage folder holds results of another config than the one requested (or of an unrecorded one)."""


def eval_targets() -> tuple[str, ...]:
    """What an ``eval`` stage can evaluate: the arms without cells (:data:`BASELINE_METHODS`), every policy and
    every policy with the joint fine-tune (``<policy>-joint``)."""
    from shapnas.config.names import POLICY_NAMES

    return (*BASELINE_METHODS, *POLICY_NAMES, *(policy_variant(p, True) for p in POLICY_NAMES))


def setting_folder(cfg: Any) -> str:
    """The folder a config's stages sit in below the seed folder: ``""`` (same site) or ``transfer-n<N>``."""
    if getattr(cfg, "setting", "same_site") == "same_site":
        return ""
    return f"{_TRANSFER_PREFIX}{cfg.target_train_patients}"


def parse_setting_folder(name: str) -> int | None:
    """N of a ``transfer-n<N>`` folder name; None for any other name."""
    number = name[len(_TRANSFER_PREFIX):] if name.startswith(_TRANSFER_PREFIX) else ""
    return int(number) if number.isdigit() else None


def _check_variant(kind: str, variant: str | None) -> str:
    """The variant of a ``kind`` stage, validated (empty for kinds without one)."""
    if kind not in STAGE_KINDS:
        raise ValueError(f"stage kind {kind!r}; expected one of {', '.join(STAGE_KINDS)}")
    needs = STAGE_KINDS[kind].variant
    if not needs:
        if variant:
            raise ValueError(f"stage kind {kind!r} takes no policy or target (got {variant!r})")
        return ""
    if not variant:
        raise ValueError(f"stage kind {kind!r} needs a {needs}")
    if needs == "policy":
        return check_policy(variant) if kind == "search" else policy_variant(*split_policy_variant(variant))
    if variant not in eval_targets():
        raise ValueError(f"eval target {variant!r}; expected one of {', '.join(eval_targets())}")
    return variant


def stage_name(kind: str, variant: str | None = None) -> str:
    """The folder name of a stage: ``pretrain``, ``finetune``, ``normtune``, ``scratch``, ``search-<policy>``,
    ``retrain-<policy>[-joint]``, ``eval-<target>``.

    Args:
        kind: a key of :data:`STAGE_KINDS`.
        variant: the policy (search), the policy variant (retrain: ``shapley`` or ``shapley-joint``) or the eval
            target (an arm without cells or a policy variant).

    Returns:
        The folder name.

    Raises:
        ValueError: unknown kind, a missing or unknown policy/target.
    """
    variant = _check_variant(kind, variant)
    return f"{kind}-{variant}" if variant else kind


def parse_stage_name(name: str) -> tuple[str, str]:
    """``(kind, variant)`` of a stage folder name (variant ``""`` for the kinds without one).

    Raises:
        ValueError: a name no stage kind builds.
    """
    kind, _, variant = name.partition("-")
    try:
        if stage_name(kind, variant or None) == name:
            return kind, variant
    except ValueError:
        pass
    raise ValueError(f"{name!r} is not a stage folder name; expected pretrain, finetune, normtune, scratch, "
                     "search-<policy>, retrain-<policy>[-joint] or eval-<target>")


@dataclass(frozen=True)
class StageKey:
    """The identity of one stage: the run (dataset, backbone, seed), its setting folder (``""`` for the same
    site, ``transfer-n<N>``), the stage kind and its policy/target."""

    dataset: str
    backbone: str
    seed: int
    kind: str
    variant: str = ""
    setting: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "variant", _check_variant(self.kind, self.variant or None))
        if self.setting and parse_setting_folder(self.setting) is None:
            raise ValueError(f"setting folder {self.setting!r}; expected '' or {_TRANSFER_PREFIX}<N>")

    @property
    def name(self) -> str:
        """The stage folder name (:func:`stage_name`)."""
        return stage_name(self.kind, self.variant or None)

    def path(self, results_root: str | Path) -> Path:
        """``<results_root>/<dataset>/<backbone>/seed-<seed>/[<setting>/]<name>``."""
        run = stage_dir(results_root, self.dataset, self.backbone, self.seed, self.setting)
        return run / self.name

    @classmethod
    def from_path(cls, path: str | Path) -> StageKey:
        """The key of a stage folder ``.../<dataset>/<backbone>/seed-<k>/[transfer-n<N>/]<name>``.

        Raises:
            ValueError: a path not laid out that way.
        """
        path = Path(path)
        kind, variant = parse_stage_name(path.name)
        run = path.parent
        setting = run.name if parse_setting_folder(run.name) is not None else ""
        if setting:
            run = run.parent
        seed = run.name
        if not seed.startswith("seed-") or not seed[len("seed-"):].isdigit():
            raise ValueError(f"{path}: expected <dataset>/<backbone>/seed-<k>/[transfer-n<N>/]<stage>")
        return cls(run.parent.parent.name, run.parent.name, int(seed[len("seed-"):]), kind, variant, setting)


def stage_key(cfg: PretrainConfig, kind: str, variant: str | None = None) -> StageKey:
    """The key of the ``kind`` stage of ``cfg``'s run.

    Search defaults to ``cfg.policy``, retrain to ``cfg.policy`` with ``-joint`` when ``cfg.joint_finetune``. The
    stages sit in ``cfg``'s setting folder (:func:`setting_folder`), but ``pretrain``: the transfer setting's
    backbone is the source site's same-site ``pretrain``.
    """
    if variant is None and STAGE_KINDS.get(kind, STAGE_KINDS["pretrain"]).variant == "policy":
        policy = getattr(cfg, "policy", None)
        variant = policy_variant(policy, kind == "retrain" and getattr(cfg, "joint_finetune", False)) if policy else None
    setting = "" if kind == "pretrain" else setting_folder(cfg)
    return StageKey(cfg.dataset, cfg.backbone, cfg.seed, kind, variant or "", setting)


def method_of_target(target: str) -> str:
    """The method id of an eval target: an arm without cells as is, ``iac-<policy>[-joint]`` for a policy."""
    return target if target in BASELINE_METHODS else method_name(target)


def target_of_method(method: str) -> str:
    """The eval target of a method id (inverse of :func:`method_of_target`)."""
    policy = policy_of_method(method)
    return method if policy is None else policy


def model_stage_name(method: str) -> str:
    """The stage folder holding a method's trained model: ``pretrain`` (backbone), ``finetune``, ``normtune``,
    ``scratch``, or ``retrain-<policy>[-joint]`` (``iac-<policy>[-joint]``)."""
    policy = policy_of_method(method)
    if policy is None:
        return "pretrain" if method == "backbone" else method
    return stage_name("retrain", policy)


def _class_fields(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def stage_fields(key: StageKey, cfg: Any) -> list[str]:
    """The config fields a stage's results depend on, compared before a finished stage is reused.

    Pre-training, scratch and eval-backbone/-scratch: the ``PretrainConfig`` fields but the fine-tunes' own
    (:data:`FINETUNE_FIELDS`); finetune, normtune and their evals: all ``PretrainConfig`` fields; search: the
    ``SearchConfig`` fields but the fine-tunes'; retrain and eval of a policy: all ``RetrainConfig`` fields (the
    fine-tunes' only with ``joint_finetune``). A same-site stage (setting folder ``""``) never compares the
    transfer fields (:data:`TARGET_FIELDS`); no stage compares :data:`RUNTIME_FIELDS`.

    Args:
        key: the stage.
        cfg: the requested config.

    Returns:
        Field names, in declaration order.
    """
    target = key.variant if key.kind == "eval" else ""
    if key.kind in ("pretrain", "finetune", "normtune", "scratch") or target in BASELINE_METHODS:
        names = _class_fields(PretrainConfig)
        skip_finetune = key.kind in ("pretrain", "scratch") or target in ("backbone", "scratch")
    elif key.kind == "search":
        names, skip_finetune = _class_fields(SearchConfig), True
    else:
        names, skip_finetune = _class_fields(RetrainConfig), not getattr(cfg, "joint_finetune", False)
    skipped = set(RUNTIME_FIELDS) | (set(FINETUNE_FIELDS) if skip_finetune else set())
    if not key.setting:
        skipped |= set(TARGET_FIELDS)
    return [name for name in names if name not in skipped]


_ABSENT = "(not recorded)"


def config_differences(stored: dict[str, Any], requested: dict[str, Any], names: list[str],
                       defaults: dict[str, Any] | None = None) -> list[tuple[str, Any, Any]]:
    """``(field, stored, requested)`` for each of ``names`` whose values differ.

    Args:
        stored: the config a stage ran with (its ``config.json``).
        requested: the config asked for now (``to_dict()``).
        names: the fields the stage depends on.
        defaults: field -> default value. A field missing from ``stored`` (written before the field existed)
            counts as equal when the requested value is its default, since the stage then ran what the default
            does; without ``defaults`` every missing field differs.

    Returns:
        The differing fields (tuples and lists compare equal); a missing field is shown as ``(not recorded)``.
    """
    def plain(value: Any) -> Any:
        return list(value) if isinstance(value, tuple) else value

    defaults = defaults or {}

    def differs(name: str) -> bool:
        if name not in stored:
            return name not in defaults or plain(defaults[name]) != plain(requested.get(name))
        return plain(stored[name]) != plain(requested.get(name))

    return [(name, stored.get(name, _ABSENT), requested.get(name)) for name in names if differs(name)]


def field_defaults(cfg: Any) -> dict[str, Any]:
    """The default value of each field of ``cfg``'s config class that has one (plain types, as ``to_dict``)."""
    values = {}
    for item in fields(cfg):
        if item.default is not MISSING:
            values[item.name] = item.default
        elif item.default_factory is not MISSING:
            values[item.name] = item.default_factory()
    return values


def _stale(stage: Path, differences: list[tuple[str, Any, Any]], finished: bool) -> StaleStageError:
    what = "finished" if finished else "was interrupted (it would resume)"
    listed = "; ".join(f"{name}: stored {old!r}, requested {new!r}" for name, old, new in differences)
    return StaleStageError(f"{stage}: this stage {what} with another config than requested ({listed}); use another "
                           "results folder (--results) or delete that stage folder to run it again")


def reusable(stage: str | Path, cfg: Any, key: StageKey) -> bool:
    """Whether the finished stage in ``stage`` may be reused for ``cfg``.

    Args:
        stage: the stage folder.
        cfg: the requested config (a ``BaseConfig``).
        key: the stage's key.

    Returns:
        True when the stage finished (``metrics.json``) with a ``config.json`` equal to ``cfg`` over
        :func:`stage_fields`; False when it has not finished (run it; an interrupted stage that can resume
        is compared first, as resuming continues its run).

    Raises:
        StaleStageError: the stored config differs, or a finished stage has no ``config.json``.
    """
    stage = Path(stage)
    finished = is_complete(stage)
    resume = STAGE_KINDS[key.kind].resume_file
    if not finished and not (resume and (stage / resume).exists()):
        return False
    config = stage / "config.json"
    if not config.exists():
        raise StaleStageError(f"{stage}: this stage finished without a config.json (results of an older version), "
                              "so its config cannot be checked; use another results folder (--results) or delete "
                              "that stage folder to run it again")
    differences = config_differences(load_json(config), cfg.to_dict(), stage_fields(key, cfg), field_defaults(cfg))
    if differences:
        raise _stale(stage, differences, finished)
    return finished


def stage_config(cfg: Any, key: StageKey) -> Any:
    """``cfg`` as the stage of ``key`` runs it: the source site's same-site config for a same-site key of a transfer
    config (:meth:`~shapnas.config.stage_configs.DataConfig.source_site`), and ``policy`` and ``joint_finetune``
    set from the key's policy variant (search, retrain, or the eval of a policy); the config stored with that
    stage."""
    if not key.setting and getattr(cfg, "setting", "same_site") != "same_site":
        cfg = cfg.source_site()
    variant = key.variant if key.kind in ("search", "retrain") or key.variant not in ("", *BASELINE_METHODS) else None
    if not variant or not hasattr(cfg, "policy"):
        return cfg
    policy, joint = split_policy_variant(variant)
    changes = {"policy": policy} if cfg.policy != policy else {}
    if key.kind != "search" and hasattr(cfg, "joint_finetune") and cfg.joint_finetune != joint:
        changes["joint_finetune"] = joint
    return cfg.replace(**changes) if changes else cfg


def check_reuse(cfg: Any, key: StageKey, results_root: str | Path | None = None) -> bool:
    """:func:`reusable` for the stage of ``key`` in ``results_root`` (default ``cfg.results_root``), with the
    config that stage runs with (:func:`stage_config`): what a planner (the run matrix) asks before it
    counts a stage as done.

    Raises:
        StaleStageError: the stage finished (or can resume) with another config.
    """
    root = cfg.results_root if results_root is None else results_root
    return reusable(key.path(root), stage_config(cfg, key), key)
