"""The stages of a retrofit experiment, each writing one stage directory (reused when it finished with the
same config, an error when with another: :func:`shapnas.runs.identity.reusable`).

pretrain → search-<policy> → retrain-<policy>[-joint] → eval-<policy>[-joint], beside the fair baseline
finetune → eval-finetune and the untouched backbone eval-backbone (Benedykciuk et al., Sci. Rep. 2026;
IAC, arXiv 2405.03420); the parameter-efficient control normtune and a backbone trained from scratch complete
the arms of the transfer setting. Every stage runs alone from the CLI (``python -m shapnas <stage>``) and runs
the stages it needs first, so a notebook or a cluster job can start anywhere.

Settings (``cfg.setting``): ``same_site`` reads one site's W, A, V and test splits throughout. ``transfer``
pre-trains the backbone on the source site (the same-site ``pretrain`` of ``cfg.source_site()``) and runs every
other stage on the target site (W, A, V carved from ``target_train_patients`` labelled patients, tested on the
rest), in the folder ``transfer-n<N>`` (:func:`shapnas.runs.identity.setting_folder`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from shapnas.config.stage_configs import PretrainConfig, RetrainConfig, SearchConfig
from shapnas.data.prepared import PreparedData, prepare_data, prepare_site_data
from shapnas.networks.backbones import adapt, load_backbone, new_backbone, norm_and_bias_parameters
from shapnas.networks.checkpoints import load_model, save_model
from shapnas.networks.genotype import Genotype
from shapnas.networks.ops import PRIMITIVES
from shapnas.networks.retrofit import build_discrete, build_supernet, retrofit_options
from shapnas.runs.files import load_json, save_json
from shapnas.config.names import BASELINE_METHODS, split_policy_variant
from shapnas.runs.identity import StageKey, check_reuse, eval_targets, parse_stage_name, stage_key
from shapnas.runtime import pick_device, seed_everything, torch_generator, versions
from shapnas.search.loop import SearchData, run_search_loop, search_signal
from shapnas.training.evaluate import evaluate_model, patient_dice
from shapnas.training.train import count_parameters, fit, validation_dice

__all__ = [
    "stage_path",
    "run_pretrain",
    "run_finetune",
    "run_normtune",
    "run_scratch",
    "stage_data",
    "run_search",
    "run_retrain",
    "run_evaluate",
    "implant_check",
    "search_stage_name",
    "load_search_supernet",
    "frozen_adapter",
    "search_supernet",
    "search_data",
]


def stage_path(cfg: PretrainConfig, stage: str) -> Path:
    """The directory of ``stage`` (a folder name, e.g. ``search-shapley``) for the run of ``cfg``."""
    return stage_key(cfg, *parse_stage_name(stage)).path(cfg.results_root)


def search_stage_name(cfg: SearchConfig) -> str:
    """``search-<policy>``."""
    return stage_key(cfg, "search").name


def _open(cfg: PretrainConfig, kind: str, variant: str | None = None) -> tuple[Path, StageKey, bool]:
    """The stage folder of ``cfg``'s ``kind`` stage, its key, and whether it finished with this config.

    Raises:
        StaleStageError: it finished (or can resume) with another config (:func:`shapnas.runs.identity.reusable`).
    """
    key = stage_key(cfg, kind, variant)
    return key.path(cfg.results_root), key, check_reuse(cfg, key)


def stage_data(cfg: PretrainConfig) -> PreparedData:
    """The data every stage of ``cfg`` but the source pre-training reads: the site of the same-site setting, the
    target site of the transfer setting (:func:`shapnas.data.prepared.prepare_site_data`).

    Raises:
        ValueError: in the transfer setting, target-site classes other than the source site's (named with both).
    """
    if cfg.setting == "same_site":
        return prepare_data(cfg)
    data = prepare_site_data(cfg, "target")
    source = prepare_data(cfg.source_site()).spec
    if list(source.class_names) != list(data.spec.class_names) or len(source.channel_names) != len(
            data.spec.channel_names):
        raise ValueError(f"{data.data_dir}: target-site classes {list(data.spec.class_names)} and channels "
                         f"{list(data.spec.channel_names)}; expected the source site's {list(source.class_names)} and "
                         f"{list(source.channel_names)}")
    return data


def _start(cfg: PretrainConfig, stage: Path) -> tuple[torch.device, PreparedData]:
    seed_everything(cfg.seed)
    stage.mkdir(parents=True, exist_ok=True)
    save_json(stage / "config.json", cfg.to_dict())
    return pick_device(cfg.device), stage_data(cfg)


def _selection(cfg: PretrainConfig, data: PreparedData, device: torch.device):
    """The V score every arm is selected on: patient-level Dice of whole V volumes (``selection=patient``),
    or None for the pooled Dice of the capped V slices (``fit``'s own)."""
    if cfg.selection != "patient":
        return None
    volumes = data.selection_volumes()
    return lambda model: patient_dice(model, volumes, data.spec, device, cfg.batch_size)


def _selection_rule(cfg: PretrainConfig, data: PreparedData, device: torch.device) -> dict[str, Any]:
    """``fit``'s V-selection arguments, the same for every arm (pre-training, fine-tuned control, re-training):
    the V score, the early-stopping patience and how often V is scored."""
    return {"scorer": _selection(cfg, data, device), "patience_steps": cfg.patience_steps,
            "val_every_steps": cfg.val_every_steps}


def _augmentation_rule(cfg: PretrainConfig) -> dict[str, Any]:
    """``fit``'s augmentation arguments, the same for every arm: the policy of the training slices and the
    dataset (which axes may be mirrored)."""
    return {"augmentation": cfg.augmentation, "dataset": cfg.dataset}


def _budget(result: Any, epochs: int, max_steps: int, patience: int) -> dict[str, Any]:
    """What a fit recorded about its budget: caps, steps taken, the selected point and why it stopped."""
    return {"epochs": epochs, "max_steps": max_steps, "patience_steps": patience, "steps": result.steps,
            "best_step": result.best_step, "stopped": result.stopped}


def _finish(stage: Path, cfg: PretrainConfig, name: str, body: dict[str, Any]) -> Path:
    record = {"schema": 1, "stage": name, "dataset": cfg.dataset, "backbone": cfg.backbone, "seed": cfg.seed,
              "profile": cfg.profile, "setting": cfg.setting, "versions": versions(), **body}
    if cfg.setting != "same_site":
        record["target_train_patients"] = cfg.target_train_patients
    save_json(stage / "metrics.json", record)  # last and atomic: the stage is complete
    return stage


def run_pretrain(cfg: PretrainConfig) -> Path:
    """Pre-train the backbone (DiceCE, Adam, model selection on V), or take a user's trained checkpoint.

    Args:
        cfg: the pretrain config (``backbone_checkpoint`` non-empty: use that state dict, no training; with
            ``backbone=nnunet`` an nnU-Net v2 checkpoint, stored with its plans so that later stages need not read
            the results folder); in the transfer setting, its source site (``cfg.source_site()``) is what is
            pre-trained.

    Returns:
        The ``pretrain`` stage directory (``model.pt``, ``history.jsonl``, ``metrics.json``).
    """
    cfg = cfg.source_site()
    stage, _, done = _open(cfg, "pretrain")
    if done:
        return stage
    device, data = _start(cfg, stage)
    num_classes = len(data.spec.class_names)
    in_channels = len(data.spec.channel_names)
    val = data.slices("val")
    start = time.perf_counter()
    if cfg.backbone_checkpoint:
        net, name, init_args = load_backbone(cfg.backbone_checkpoint, expected_in=in_channels, expected_out=num_classes,
                                             backbone=cfg.backbone)
        if name != cfg.backbone:
            raise ValueError(f"{cfg.backbone_checkpoint}: a {name!r} checkpoint, but backbone={cfg.backbone!r}")
        net.to(device)
        scorer = _selection(cfg, data, device)
        body = {"best_epoch": None, "epochs": 0, "source": str(cfg.backbone_checkpoint),
                "val_dice": scorer(net) if scorer else validation_dice(
                    net, *val, num_classes=num_classes, device=device, batch_size=cfg.batch_size)}
    else:
        net, init_args, body = _train_new_backbone(cfg, stage, data, device, "pretrain")
    save_model(stage / "model.pt", kind="backbone", net=net, backbone_name=cfg.backbone, init_args=init_args,
               spec=data.spec, slice_size=cfg.slice_size, config=cfg.to_dict())
    body.update(train_wall_s=time.perf_counter() - start, num_parameters=count_parameters(net),
                num_trainable_parameters=count_parameters(net, trainable_only=True))
    return _finish(stage, cfg, "pretrain", body)


def _train_new_backbone(cfg: PretrainConfig, stage: Path, data: PreparedData, device: torch.device,
                        desc: str) -> tuple[torch.nn.Module, dict[str, Any], dict[str, Any]]:
    """A backbone drawn from ``cfg.seed`` and trained on ``data``'s W and A with the pre-training budget.

    Returns:
        (the trained net at its best V point, its constructor arguments, what the fit recorded).
    """
    num_classes = len(data.spec.class_names)
    net, init_args = new_backbone(cfg.backbone, len(data.spec.channel_names), num_classes, cfg.backbone_size, cfg.seed)
    net.to(device)
    result = fit(net, list(net.parameters()), data.training_slices(), data.slices("val"), epochs=cfg.pretrain_epochs,
                 lr=cfg.pretrain_lr, batch_size=cfg.batch_size, device=device, generator=torch_generator(cfg.seed),
                 num_classes=num_classes, history_path=stage / "history.jsonl", desc=desc,
                 max_steps=cfg.pretrain_steps, **_selection_rule(cfg, data, device), **_augmentation_rule(cfg))
    body = {"best_epoch": result.best_epoch, "val_dice": result.best_val_dice,
            **_budget(result, cfg.pretrain_epochs, cfg.pretrain_steps, cfg.patience_steps)}
    return net, init_args, body


def run_scratch(cfg: PretrainConfig) -> Path:
    """A backbone trained from scratch on the run's own training patients (the target site's few, in the
    transfer setting), with the pre-training's budget and the V selection of every arm: what the labelled
    patients give without the source site.

    Returns:
        The ``scratch`` stage directory (``model.pt``, ``history.jsonl``, ``metrics.json``).
    """
    stage, _, done = _open(cfg, "scratch")
    if done:
        return stage
    device, data = _start(cfg, stage)
    start = time.perf_counter()
    net, init_args, body = _train_new_backbone(cfg, stage, data, device, "scratch")
    save_model(stage / "model.pt", kind="backbone", net=net, backbone_name=cfg.backbone, init_args=init_args,
               spec=data.spec, slice_size=cfg.slice_size, config=cfg.to_dict())
    body.update(train_wall_s=time.perf_counter() - start, num_parameters=count_parameters(net),
                num_trainable_parameters=count_parameters(net))
    return _finish(stage, cfg, "scratch", body)


def run_finetune(cfg: PretrainConfig) -> Path:
    """The fair control: every parameter of the pre-trained backbone fine-tuned, early-stopped on V.

    Its learning rate is tuned: each of ``finetune_lrs`` (or ``finetune_lr`` alone) fine-tunes the
    pre-trained weights with the same step budget, patience and V selection rule as the IAC re-training,
    and the one with the best V Dice is kept (IAC, arXiv 2405.03420, compares with the backbone trained
    for the same extra budget).

    Returns:
        The ``finetune`` stage directory (``lr``: the chosen rate; ``lr_trials``: V Dice of every rate).
    """
    return _tune(cfg, "finetune", cfg.finetune_lrs or (cfg.finetune_lr,))


def run_normtune(cfg: PretrainConfig) -> Path:
    """The parameter-efficient control: only the pre-trained backbone's normalisation affine parameters and
    biases are tuned (as BitFit, Ben Zaken et al. ACL 2022; about 1 % of the tiny BasicUNet's weights),
    with the fine-tune's step budget, V selection and a learning rate tuned over ``normtune_lrs``.

    Returns:
        The ``normtune`` stage directory (as :func:`run_finetune`'s).
    """
    return _tune(cfg, "normtune", cfg.normtune_lrs)


def _tune(cfg: PretrainConfig, kind: str, rates: tuple[float, ...]) -> Path:
    """Tune the pre-trained backbone (every weight for ``finetune``, norms and biases for ``normtune``) at each
    of ``rates``; keep the rate with the best V Dice."""
    stage, _, done = _open(cfg, kind)
    if done:
        return stage
    pretrain = run_pretrain(cfg)
    device, data = _start(cfg, stage)
    num_classes = len(data.spec.class_names)
    start = time.perf_counter()
    trials, best = [], None
    for lr in rates:
        net, checkpoint = load_model(pretrain / "model.pt", device)
        params = list(net.parameters()) if kind == "finetune" else norm_and_bias_parameters(net)
        if kind != "finetune":
            keep = {id(p) for p in params}
            for parameter in net.parameters():
                parameter.requires_grad_(id(parameter) in keep)
        history = stage / (f"history-lr{lr:g}.jsonl" if len(rates) > 1 else "history.jsonl")
        result = fit(net, params, data.training_slices(), data.slices("val"), epochs=cfg.finetune_epochs,
                     lr=lr, batch_size=cfg.batch_size, device=device, generator=torch_generator(cfg.seed + 1),
                     num_classes=num_classes, history_path=history, desc=f"{kind} lr {lr:g}",
                     max_steps=cfg.finetune_steps, **_selection_rule(cfg, data, device), **_augmentation_rule(cfg))
        trials.append({"lr": lr, "val_dice": result.best_val_dice, "best_step": result.best_step,
                       "steps": result.steps})
        if best is None or result.best_val_dice > best[1].best_val_dice:
            best = (lr, result, net, checkpoint, history)
    lr, result, net, checkpoint, history = best
    if history.name != "history.jsonl":
        (stage / "history.jsonl").write_text(history.read_text())
    trainable = count_parameters(net, trainable_only=True)
    net.requires_grad_(True)
    save_model(stage / "model.pt", kind="backbone", net=net, backbone_name=cfg.backbone,
               init_args=checkpoint["backbone"]["init_args"], spec=data.spec, slice_size=cfg.slice_size,
               config=cfg.to_dict())
    return _finish(stage, cfg, kind, {
        "best_epoch": result.best_epoch, "val_dice": result.best_val_dice, "lr": lr, "lr_trials": trials,
        **_budget(result, cfg.finetune_epochs, cfg.finetune_steps, cfg.patience_steps),
        "train_wall_s": time.perf_counter() - start, "num_parameters": count_parameters(net),
        "num_trainable_parameters": trainable})


def frozen_adapter(pretrain: Path, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The pre-trained backbone of a ``pretrain`` stage folder, wrapped for implanting cells, and its checkpoint."""
    net, checkpoint = load_model(pretrain / "model.pt", device)
    return adapt(net), checkpoint


def search_supernet(cfg: SearchConfig, adapter: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The search's supernet: cells implanted on the frozen backbone ``adapter`` as ``cfg`` says, on ``device``.

    Args:
        cfg: the search config (cell width, partial channels, nodes, α sharing, the retrofit's options, seed).
        adapter: the pre-trained backbone behind its skip adapter (:func:`frozen_adapter`).
        device: where the supernet lives.

    Returns:
        The supernet with its backbone frozen (the cells' initial weights drawn from the run's seed).
    """
    model = build_supernet(adapter, channels=cfg.cell_channels, k=cfg.partial_channels, num_nodes=cfg.num_nodes,
                           per_level_alpha=cfg.per_level_alpha, generator=torch_generator(cfg.seed),
                           **retrofit_options(cfg)).to(device)
    model.freeze_backbone()
    return model


def search_data(data: PreparedData) -> SearchData:
    """The slices a search reads: W (cell weights), A (α) and V (Shapley rounds, selection), and the classes."""
    return SearchData(train_w=data.slices("train_w"), train_a=data.slices("train_a"), val=data.slices("val"),
                      num_classes=len(data.spec.class_names))


def run_search(cfg: SearchConfig, *, progress: bool = True, stop_after: int | None = None) -> Path:
    """Implant cells into the frozen pre-trained backbone and search them with ``cfg.policy``.

    A search killed mid-way resumes from its last epoch checkpoint.

    Args:
        cfg: the search config.
        progress: show progress bars.
        stop_after: stop after this many epochs of this call without finishing (resume tests).

    Returns:
        The ``search-<policy>`` stage directory (``genotype.json``, ``history.jsonl``, ``metrics.json``).
    """
    stage, key, done = _open(cfg, "search")
    if done:
        return stage
    pretrain = run_pretrain(cfg)
    device, data = _start(cfg, stage)
    adapter, _ = frozen_adapter(pretrain, device)
    model = search_supernet(cfg, adapter, device)
    result = run_search_loop(model, search_data(data), cfg, stage, device, progress=progress, stop_after=stop_after)
    if not result.finished:
        return stage
    save_json(stage / "genotype.json", result.genotype.to_dict())
    last = result.history[-1]
    return _finish(stage, cfg, key.name, {
        "policy": cfg.policy, "genotype": [list(t) for t in result.genotype.edges],
        "genotype_text": str(result.genotype), "epochs": result.epochs, "search_wall_s": result.wall_s,
        "time_train_s": result.time_train_s, "time_shapley_s": result.time_shapley_s,
        "time_eval_s": result.time_eval_s, "val_dice": result.val_dice, "final_op_probs": last["op_probs"],
        "final_edge_probs": last["edge_probs"], "cell_channels": model.cell_channels,
        "primitives": list(PRIMITIVES), **search_signal(result.history)})


def run_retrain(cfg: RetrainConfig) -> Path:
    """Implant the discrete cell found by ``search-<policy>`` into the frozen backbone and re-train it.

    Returns:
        The ``retrain-<policy>`` stage directory (``model.pt``, ``history.jsonl``, ``metrics.json``).
    """
    stage, key, done = _open(cfg, "retrain")
    if done:
        return stage
    pretrain = run_pretrain(cfg)
    search = run_search(cfg)
    device, data = _start(cfg, stage)
    genotype = Genotype.from_dict(load_json(search / "genotype.json"))
    adapter, checkpoint = frozen_adapter(pretrain, device)
    channels = int(load_json(search / "metrics.json").get("cell_channels", cfg.cell_channels))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_discrete(adapter, genotype, channels=channels, k=cfg.partial_channels,
                               **retrofit_options(cfg)).to(device)
    cells = list(model.weight_parameters())
    params: list[Any] = cells
    backbone_lr = None
    if cfg.joint_finetune:  # the backbone at the control's tuned rate, the cells at retrain_lr
        backbone_lr = float(load_json(run_finetune(cfg) / "metrics.json").get("lr", cfg.finetune_lr))
        cell_ids = {id(p) for p in cells}
        rest = [p for p in model.parameters() if id(p) not in cell_ids]
        params = [{"params": cells, "lr": cfg.retrain_lr}, {"params": rest, "lr": backbone_lr}]
    else:
        model.freeze_backbone()
    num_classes = len(data.spec.class_names)
    start = time.perf_counter()
    result = fit(model, params, data.training_slices(), data.slices("val"), epochs=cfg.retrain_epochs, lr=cfg.retrain_lr,
                 batch_size=cfg.batch_size, device=device, generator=torch_generator(cfg.seed + 2),
                 num_classes=num_classes, history_path=stage / "history.jsonl", desc=f"retrain ({cfg.policy})",
                 max_steps=cfg.retrain_steps, **_selection_rule(cfg, data, device), **_augmentation_rule(cfg))
    save_model(stage / "model.pt", kind="retrofit", net=adapter.net, backbone_name=cfg.backbone,
               init_args=checkpoint["backbone"]["init_args"], model=model, genotype=genotype, cell_channels=channels,
               partial_channels=cfg.partial_channels,
               spec=data.spec, slice_size=cfg.slice_size, config=cfg.to_dict())
    return _finish(stage, cfg, key.name, {
        "policy": cfg.policy, "genotype": [list(t) for t in genotype.edges], "best_epoch": result.best_epoch,
        "val_dice": result.best_val_dice, "joint_finetune": cfg.joint_finetune, "backbone_lr": backbone_lr,
        **_budget(result, cfg.retrain_epochs, cfg.retrain_steps, cfg.patience_steps),
        "train_wall_s": time.perf_counter() - start, "num_parameters": count_parameters(model),
        "num_trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)})


def run_evaluate(cfg: RetrainConfig, target: str) -> Path:
    """Evaluate a model on the test patients: per patient volume, Dice and HD95 per class/region.

    Args:
        cfg: the config of the run.
        target: ``backbone`` (pre-trained; in the transfer setting the source backbone on the target site),
            ``finetune`` (fair baseline), ``normtune`` (parameter-efficient control), ``scratch`` (trained on the
            run's patients alone) or a policy variant (``shapley``, ``shapley-joint``: its re-trained cell).

    Returns:
        The ``eval-<target>`` stage directory (``metrics.json`` with per-case TP/FP/FN).
    """
    if target not in eval_targets():
        raise ValueError(f"target={target!r}; expected one of {', '.join(BASELINE_METHODS)} or a policy name "
                         "(with -joint for the joint fine-tune)")
    sources = {"backbone": run_pretrain, "finetune": run_finetune, "normtune": run_normtune, "scratch": run_scratch}
    if target not in sources:  # the config stored with eval-<policy> is the one its model ran with
        policy, joint = split_policy_variant(target)
        cfg = cfg.replace(policy=policy, joint_finetune=joint)
    stage, key, done = _open(cfg, "eval", target)
    if done:
        return stage
    source = sources[target](cfg) if target in sources else run_retrain(cfg)
    device, data = _start(cfg, stage)
    model, _ = load_model(source / "model.pt", device)
    body = evaluate_model(model, data.volumes["test"], data.spec, device, cfg.batch_size)
    return _finish(stage, cfg, key.name, {"target": target, "source": source.name, **body})


def implant_check(cfg: SearchConfig) -> dict[str, float | int]:
    """Implant fresh cells (zero output projection) into the pre-trained backbone and compare outputs on V slices.

    Returns:
        ``max_abs_diff`` between backbone and retrofitted logits (0 at implant time), and the parameter
        counts of the backbone, the cells (search supernet) and the architecture (α, β).
    """
    pretrain = run_pretrain(cfg)
    device = pick_device(cfg.device)
    data = stage_data(cfg)
    adapter, _ = frozen_adapter(pretrain, device)
    model = search_supernet(cfg, adapter, device)
    model.eval()
    images = data.slices("val")[0][: cfg.batch_size].to(device)
    with torch.no_grad():
        difference = (model(images) - adapter.net(images)).abs().max()
    return {
        "max_abs_diff": float(difference),
        "backbone_parameters": count_parameters(adapter.net),
        "cell_parameters": sum(p.numel() for p in model.weight_parameters()),
        "architecture_parameters": sum(p.numel() for p in model.arch_parameters()),
    }


def load_search_supernet(cfg: SearchConfig) -> tuple[torch.nn.Module, PreparedData]:
    """The supernet of a finished (or interrupted) search, restored from its last epoch checkpoint.

    Returns:
        (supernet in eval mode on the config's device, the prepared data).
    """
    from shapnas.runs.files import load_checkpoint
    from shapnas.search.loop import STATE_FILE

    stage = stage_key(cfg, "search").path(cfg.results_root)
    device = pick_device(cfg.device)
    data = stage_data(cfg)
    adapter, _ = frozen_adapter(stage_key(cfg, "pretrain").path(cfg.results_root), device)
    model = search_supernet(cfg, adapter, device)
    model.load_state_dict(load_checkpoint(stage / STATE_FILE, map_location=device)["model"])
    model.freeze_backbone()
    return model.eval(), data
