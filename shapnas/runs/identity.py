"""Run identity: which stage of which run a folder holds, and whether a finished one may be reused.

The one place that builds stage folder names. A stage is named by a :class:`StageKey` (dataset, backbone,
seed, stage kind, and the policy or eval target it is for); its folder is
``<results_root>/<dataset>/<backbone>/seed-<k>/<kind>[-<variant>]`` (``runs.stage_dir``)::

    pretrain  finetune  search-<policy>  retrain-<policy>  eval-<backbone|finetune|policy>

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

from shapnas.config.names import BASELINE_METHODS, check_policy, method_name, policy_of_method
from shapnas.config.stage_configs import PretrainConfig, RetrainConfig, SearchConfig
from shapnas.runs.files import is_complete, load_json, stage_dir

__all__ = [
    "StageKind",
    "STAGE_KINDS",
    "JOB_KINDS",
    "StageKey",
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
FINETUNE_FIELDS = ("finetune_epochs", "finetune_lr", "finetune_steps", "finetune_lrs")


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
    """What an ``eval`` stage can evaluate: ``backbone``, ``finetune`` and every policy."""
    from shapnas.config.names import POLICY_NAMES

    return (*BASELINE_METHODS, *POLICY_NAMES)


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
        return check_policy(variant)
    if variant not in eval_targets():
        raise ValueError(f"eval target {variant!r}; expected one of {', '.join(eval_targets())}")
    return variant


def stage_name(kind: str, variant: str | None = None) -> str:
    """The folder name of a stage: ``pretrain``, ``finetune``, ``search-<policy>``, ``retrain-<policy>``,
    ``eval-<target>``.

    Args:
        kind: a key of :data:`STAGE_KINDS`.
        variant: the policy (search, retrain) or eval target (``backbone``, ``finetune`` or a policy).

    Returns:
        The folder name.

    Raises:
        ValueError: unknown kind, a missing or unknown policy/target.
    """
    variant = _check_variant(kind, variant)
    return f"{kind}-{variant}" if variant else kind


def parse_stage_name(name: str) -> tuple[str, str]:
    """``(kind, variant)`` of a stage folder name (variant ``""`` for pretrain and finetune).

    Raises:
        ValueError: a name no stage kind builds.
    """
    kind, _, variant = name.partition("-")
    try:
        if stage_name(kind, variant or None) == name:
            return kind, variant
    except ValueError:
        pass
    raise ValueError(f"{name!r} is not a stage folder name; expected pretrain, finetune, search-<policy>, "
                     "retrain-<policy> or eval-<target>")


@dataclass(frozen=True)
class StageKey:
    """The identity of one stage: the run (dataset, backbone, seed), the stage kind and its policy/target."""

    dataset: str
    backbone: str
    seed: int
    kind: str
    variant: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "variant", _check_variant(self.kind, self.variant or None))

    @property
    def name(self) -> str:
        """The stage folder name (:func:`stage_name`)."""
        return stage_name(self.kind, self.variant or None)

    def path(self, results_root: str | Path) -> Path:
        """``<results_root>/<dataset>/<backbone>/seed-<seed>/<name>``."""
        return stage_dir(results_root, self.dataset, self.backbone, self.seed, self.name)

    @classmethod
    def from_path(cls, path: str | Path) -> StageKey:
        """The key of a stage folder ``.../<dataset>/<backbone>/seed-<k>/<name>``.

        Raises:
            ValueError: a path not laid out that way.
        """
        path = Path(path)
        kind, variant = parse_stage_name(path.name)
        seed = path.parent.name
        if not seed.startswith("seed-") or not seed[len("seed-"):].isdigit():
            raise ValueError(f"{path}: expected <dataset>/<backbone>/seed-<k>/<stage>")
        return cls(path.parent.parent.parent.name, path.parent.parent.name, int(seed[len("seed-"):]), kind, variant)


def stage_key(cfg: PretrainConfig, kind: str, variant: str | None = None) -> StageKey:
    """The key of the ``kind`` stage of ``cfg``'s run; search and retrain default to ``cfg.policy``."""
    if variant is None and STAGE_KINDS.get(kind, STAGE_KINDS["pretrain"]).variant == "policy":
        variant = getattr(cfg, "policy", None)
    return StageKey(cfg.dataset, cfg.backbone, cfg.seed, kind, variant or "")


def method_of_target(target: str) -> str:
    """The method id of an eval target: ``backbone``, ``finetune`` or ``iac-<policy>``."""
    return target if target in BASELINE_METHODS else method_name(target)


def target_of_method(method: str) -> str:
    """The eval target of a method id (inverse of :func:`method_of_target`)."""
    policy = policy_of_method(method)
    return method if policy is None else policy


def model_stage_name(method: str) -> str:
    """The stage folder holding a method's trained model: ``pretrain`` (backbone), ``finetune``, or
    ``retrain-<policy>`` (``iac-<policy>``)."""
    policy = policy_of_method(method)
    if policy is None:
        return "pretrain" if method == "backbone" else "finetune"
    return stage_name("retrain", policy)


def _class_fields(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def stage_fields(key: StageKey, cfg: Any) -> list[str]:
    """The config fields a stage's results depend on, compared before a finished stage is reused.

    Pre-training and eval-backbone: the ``PretrainConfig`` fields but the fine-tune's own
    (:data:`FINETUNE_FIELDS`); finetune and eval-finetune: all ``PretrainConfig`` fields; search: the
    ``SearchConfig`` fields but the fine-tune's; retrain and eval of a policy: all ``RetrainConfig`` fields
    (the fine-tune's only with ``joint_finetune``). Never :data:`RUNTIME_FIELDS`.

    Args:
        key: the stage.
        cfg: the requested config.

    Returns:
        Field names, in declaration order.
    """
    target = key.variant if key.kind == "eval" else ""
    if key.kind in ("pretrain", "finetune") or target in BASELINE_METHODS:
        names = _class_fields(PretrainConfig)
        skip_finetune = key.kind == "pretrain" or target == "backbone"
    elif key.kind == "search":
        names, skip_finetune = _class_fields(SearchConfig), True
    else:
        names, skip_finetune = _class_fields(RetrainConfig), not getattr(cfg, "joint_finetune", False)
    skipped = set(RUNTIME_FIELDS) | (set(FINETUNE_FIELDS) if skip_finetune else set())
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
    """``cfg`` as the stage of ``key`` runs it: ``policy`` set to the key's policy (search, retrain, or the eval
    of a policy); the config stored with that stage."""
    policy = key.variant if key.kind in ("search", "retrain") or key.variant not in ("", *BASELINE_METHODS) else None
    return cfg.replace(policy=policy) if policy and getattr(cfg, "policy", policy) != policy else cfg


def check_reuse(cfg: Any, key: StageKey, results_root: str | Path | None = None) -> bool:
    """:func:`reusable` for the stage of ``key`` in ``results_root`` (default ``cfg.results_root``), with the
    config that stage runs with (:func:`stage_config`): what a planner (the run matrix) asks before it
    counts a stage as done.

    Raises:
        StaleStageError: the stage finished (or can resume) with another config.
    """
    root = cfg.results_root if results_root is None else results_root
    return reusable(key.path(root), stage_config(cfg, key), key)
