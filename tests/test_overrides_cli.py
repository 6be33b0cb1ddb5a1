"""Configs as data: typed ``--set`` overrides, one config resolver, one ``--data-dir`` spelling,
jobs that carry their stage kind and config, progress lines, and a core that never imports the CLI."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from shapnas.book.run_notebooks import _time_left
from shapnas.cli import main
from shapnas.cli.common import parse_data_dirs
from shapnas.config.overrides import convert_value, parse_overrides
from shapnas.config.stage_configs import RetrainConfig, SearchConfig, load_profile, resolve_config
from shapnas.experiments.dask_runner import progress_text
from shapnas.experiments.matrix import build_jobs, write_job_spec

ROOT = Path(__file__).resolve().parents[1]


def _main(argv: list[str]) -> tuple[int, str, str]:
    """Run the CLI in-process; (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_parse_overrides_converts_to_field_types():
    values = parse_overrides(["search_epochs=20", "decoder_input=true", "per_level_alpha=no", "arch_lr=1e-4",
                              "finetune_lrs=1e-4,3e-4", "backbone_size=small", "policy=none", "data_dir=",
                              "keep_classes={amos: [liver, spleen]}", "shapley_truncation=0"], RetrainConfig)
    assert values == {"search_epochs": 20, "decoder_input": True, "per_level_alpha": False, "arch_lr": 1e-4,
                      "finetune_lrs": (1e-4, 3e-4), "backbone_size": "small", "policy": "none", "data_dir": "",
                      "keep_classes": {"amos": ["liver", "spleen"]}, "shapley_truncation": 0.0}
    assert type(values["shapley_truncation"]) is float and type(values["search_epochs"]) is int


@pytest.mark.parametrize("item, message", [
    ("search_epochs=abc", "search_epochs='abc': expected an integer"),
    ("search_epochs=2.5", "search_epochs='2.5': expected an integer"),
    ("decoder_input=maybe", "decoder_input='maybe': expected true or false"),
    ("backbone_size=huge", "backbone_size='huge': expected one of micro, tiny, small, paper"),
    ("arch_lr=fast", "arch_lr='fast': expected a number"),
    ("search_epochs", "expected KEY=VALUE"),
])
def test_parse_overrides_rejects_bad_values_naming_field_value_and_type(item, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_overrides([item], RetrainConfig)


def test_unknown_field_lists_the_closest_and_the_valid_names():
    with pytest.raises(ValueError) as error:
        parse_overrides(["search_epoch=3"], RetrainConfig)
    text = str(error.value)
    assert "unknown RetrainConfig fields: search_epoch" in text and "did you mean" in text and "search_epochs" in text
    assert all(name in text for name in RetrainConfig.field_names())
    with pytest.raises(ValueError, match="unknown (Search|Retrain)Config fields"):
        parse_overrides(["retrain_epochs=1"], SearchConfig)  # a field of a later stage only
    assert convert_value(RetrainConfig, "seed", 3.0) == 3
    with pytest.raises(ValueError, match="seed=True: expected an integer"):
        convert_value(RetrainConfig, "seed", True)


def test_resolve_config_order_profile_then_named_then_overrides():
    profile = load_profile("smoke")
    cfg = resolve_config(RetrainConfig, "smoke", {"search_epochs": "7", "seed": 4}, dataset="kits", seed=1,
                         backbone=None)
    assert cfg.profile == "smoke" and cfg.dataset == "kits" and cfg.backbone == "basic_unet"  # None: not given
    assert cfg.search_epochs == 7 and cfg.seed == 4  # overrides win, text converted
    assert cfg.slice_size == profile["slice_size"]
    assert RetrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # a stored config round-trips
    with pytest.raises(ValueError, match="unknown (Search|Retrain)Config fields"):
        resolve_config(RetrainConfig, "smoke", {"nonsense": 1})


@pytest.mark.parametrize("argv", [
    ["search", "--dataset", "acdc", "--profile", "smoke"],
    ["run", "--datasets", "acdc", "--profile", "smoke"],
    ["matrix", "--datasets", "acdc", "--profile", "smoke", "--list"],
    ["ablations", "--profile", "smoke", "--list"],
])
def test_set_errors_are_one_line_with_exit_status_2(argv, tmp_path):
    code, out, err = _main([*argv, "--results", str(tmp_path), "--set", "search_epochs=abc"])
    assert code == 2 and out == ""
    assert err == "error: search_epochs='abc': expected an integer\n"
    code, _, err = _main([*argv, "--results", str(tmp_path), "--set", "nonsense=1"])
    assert code == 2 and err.count("\n") == 1
    assert "unknown RetrainConfig fields: nonsense" in err and "valid fields:" in err and "search_epochs" in err
    assert not (tmp_path / "logs").exists() and not (tmp_path / "jobs").exists()


def test_set_error_through_the_module_entry_point_has_no_traceback(tmp_path):
    run = subprocess.run([sys.executable, "-m", "shapnas", "retrain", "--dataset", "acdc", "--profile", "smoke",
                          "--results", str(tmp_path), "--set", "search_epochs=abc"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip() == "error: search_epochs='abc': expected an integer"


def test_parse_data_dirs_one_spelling():
    assert parse_data_dirs(["/data/ACDC"], ["acdc"]) == {"acdc": "/data/ACDC"}
    assert parse_data_dirs(["acdc=/data/ACDC"], ["acdc"]) == {"acdc": "/data/ACDC"}
    assert parse_data_dirs(["acdc=/a", "kits=/k"], ["acdc", "kits"]) == {"acdc": "/a", "kits": "/k"}
    assert parse_data_dirs(["/data/x=y"], ["acdc"]) == {"acdc": "/data/x=y"}  # '=' in a bare path
    with pytest.raises(ValueError, match="exactly one dataset"):
        parse_data_dirs(["/data/ACDC"], ["acdc", "kits"])
    with pytest.raises(ValueError, match="DATASET one of acdc"):
        parse_data_dirs(["kits=/k"], ["acdc"])
    with pytest.raises(ValueError, match="twice"):
        parse_data_dirs(["acdc=/a", "/b"], ["acdc"])


def test_every_subcommand_takes_data_dir(tmp_path):
    data = tmp_path / "data"
    code, out, _ = _main(["matrix", "--datasets", "acdc", "--profile", "smoke", "--results", str(tmp_path),
                          "--stages", "pretrain", "--data-dir", str(data), "--list"])
    assert code == 0
    spec = json.loads(Path(out.split("\t")[1].split()[-1]).read_text())
    assert spec["config"]["data_dir"] == str(data.resolve())
    code, out, _ = _main(["ablations", "--profile", "smoke", "--results", str(tmp_path / "abl"),
                          "--data-dir", f"acdc={data}", "--list"])
    assert code == 0 and str(data.resolve()) in Path(out.splitlines()[0].split()[-1]).read_text()
    code, _, err = _main(["matrix", "--datasets", "acdc,kits", "--profile", "smoke", "--data-dir", str(data),
                          "--list"])
    assert code == 2 and "exactly one dataset" in err
    code, _, err = _main(["run", "--datasets", "acdc,kits", "--profile", "smoke", "--data-dir", str(data)])
    assert code == 2 and "exactly one dataset" in err
    code, _, err = _main(["data", "--dataset", "acdc", "--data-dir", f"kits={data}"])
    assert code == 2 and "DATASET one of acdc" in err


def test_stage_entry_point_runs_the_job_file(tmp_path, monkeypatch):
    from shapnas import pipeline
    from shapnas.experiments import job_entry as stage_jobs

    calls = []

    def fake(name):
        def stage(cfg, *rest):
            calls.append((name, cfg, rest))
            return tmp_path / name
        return stage

    for name in ("run_pretrain", "run_finetune", "run_search", "run_retrain", "run_evaluate"):
        monkeypatch.setattr(pipeline, name, fake(name))
    jobs = build_jobs(["acdc"], [1], ["shapley"], profile="smoke", results=tmp_path,
                      overrides={"search_epochs": 3})
    for job in jobs:
        assert stage_jobs.main([str(write_job_spec(job))]) == 0
    assert [c[0] for c in calls] == ["run_pretrain", "run_finetune", "run_evaluate", "run_evaluate", "run_search",
                                     "run_retrain", "run_evaluate"]
    assert all(isinstance(c[1], RetrainConfig) and c[1].search_epochs == 3 and c[1].seed == 1 for c in calls)
    assert calls[4][1].policy == "shapley" and calls[6][2] == ("shapley",) and calls[2][2] == ("backbone",)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "search", "config": {"search_epochs": "abc"}}))
    assert stage_jobs.main([str(bad)]) == 2


def test_progress_counts_and_time_left():
    assert progress_text(0, 10, 0.0) == "0/10 jobs done"
    assert progress_text(2, 10, 240.0) == "2/10 jobs done, ~16m left"
    assert progress_text(9, 10, 9.0) == "9/10 jobs done, <1m left"
    assert progress_text(10, 10, 99.0) == "10/10 jobs done"
    assert _time_left([], 3) == "" and _time_left([120.0, 60.0], 4) == ", ~6m left"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_core_and_benchmarks_never_import_the_cli():
    core = [p for p in (ROOT / "shapnas").rglob("*.py") if "cli" not in p.relative_to(ROOT / "shapnas").parts
            and p.name != "__main__.py"]
    files = core + sorted((ROOT / "benchmarks").glob("*.py"))
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in _imports(p) if m.startswith("shapnas.cli"))
                 for p in files}
    offenders = {p: m for p, m in offenders.items() if m}
    assert offenders == {}


@pytest.mark.parametrize("dataset", ["acdc", "brats", "kits", "msd"])
def test_layout_errors_point_to_a_page_that_ships(dataset, tmp_path):
    from shapnas.data.layouts import list_cases

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="book/real_data.md"):
        list_cases(dataset, tmp_path / "missing")
    try:
        assert list_cases(dataset, empty) == []  # no cases: data.prepare_data reports it
    except (FileNotFoundError, ValueError) as error:
        assert "book/real_data.md" in str(error)
    assert (ROOT / "book" / "real_data.md").is_file()


def test_stage_commands_take_several_values_after_one_set():
    from shapnas.cli import build_parser

    args = build_parser().parse_args(["transfer", "--dataset", "acdc", "--set", "target_train_patients=16",
                                      "target_patients=48", "--set", "seed=1", "--profile", "smoke"])
    assert args.overrides == ["target_train_patients=16", "target_patients=48", "seed=1"]
