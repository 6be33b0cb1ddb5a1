"""The companion notebooks: parameters equal the configs' fields, thin Pythia anatomy, the papermill runner,
and nbval over a smoke-profile execution of one dataset (shared with test_book and test_browser)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from shapnas.book.pages import tag_for_book, terminal_text
from shapnas.book.run_notebooks import (
    NOTEBOOKS,
    NotebookError,
    notebook_parameter_names,
    notebook_parameters,
    run_notebooks,
    select_notebooks,
)
from shapnas.config.stage_configs import DataConfig, RetrainConfig, config_from_profile, load_profile

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "notebooks" / f"{stem}.ipynb" for stem in NOTEBOOKS] + [ROOT / "book" / "results.ipynb"]
ANATOMY = ["Overview", "Prerequisites", "Parameters", "Imports", "Config", "Summary"]


@pytest.mark.parametrize("stem", list(NOTEBOOKS))
def test_parameters_equal_config_fields(stem):
    names = notebook_parameter_names(ROOT / "notebooks" / f"{stem}.ipynb")
    assert names == NOTEBOOKS[stem].field_names()


@pytest.mark.parametrize("stem", list(NOTEBOOKS))
def test_config_cell_passes_every_parameter(stem):
    """A parameter the cfg cell does not pass on is silently ignored (papermill injects it, nothing reads it)."""
    nb = nbformat.read(str(ROOT / "notebooks" / f"{stem}.ipynb"), as_version=4)
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("cfg = ")]
    call = ast.parse(cell.source).body[0].value
    assert {k.arg for k in call.keywords} == set(NOTEBOOKS[stem].field_names())


@pytest.mark.parametrize("stem", list(NOTEBOOKS))
def test_parameter_defaults_are_smoke_sized_and_valid(stem):
    import papermill

    info = papermill.inspect_notebook(str(ROOT / "notebooks" / f"{stem}.ipynb"))
    values = {name: ast.literal_eval(p["default"]) for name, p in info.items()}
    cfg = NOTEBOOKS[stem](**values)  # validates
    smoke = {k: v for k, v in load_profile("smoke").items() if k in values}
    assert {k: values[k] for k in smoke} == smoke
    assert values["data_dir"] == "" and values["device"] == "auto"
    assert all(p["help"] for p in info.values()), "every parameter has a trailing comment"
    expected_policy = {"03_search": "none", "04_shapley_pruning": "shapley"}.get(stem)
    if expected_policy:
        assert cfg.policy == expected_policy


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_committed_without_outputs_and_thin(path):
    nb = nbformat.read(str(path), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} has outputs"
    for cell in code:
        python = "\n".join(line for line in cell.source.splitlines() if not line.startswith("%"))  # no magics
        statements = [type(node) for node in ast.walk(ast.parse(python))]
        for forbidden in (ast.FunctionDef, ast.ClassDef, ast.For, ast.While, ast.Lambda):
            assert forbidden not in statements, f"{path.name}: a {forbidden.__name__} in {cell.source[:60]!r}"
        exempt = "parameters" in cell.metadata.get("tags", []) or cell.source.startswith(("cfg = ", "%matplotlib"))
        assert exempt or len(cell.source.splitlines()) <= 10, f"{path.name}: a long code cell {cell.source[:60]!r}"
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1
    assert nb.cells[0].source.startswith("# "), "the notebook starts with its title"


@pytest.mark.parametrize("stem", list(NOTEBOOKS))
def test_pythia_anatomy_in_order(stem):
    nb = nbformat.read(str(ROOT / "notebooks" / f"{stem}.ipynb"), as_version=4)
    headings = [line[3:].strip() for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()
                if line.startswith("## ")]
    positions = [headings.index(h) for h in ANATOMY]
    assert positions == sorted(positions), headings
    assert "Files written" in nb.cells[0].source
    config_cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("cfg = "))
    assert config_cell.source.startswith(f"cfg = {NOTEBOOKS[stem].__name__}(")


FIGURE_CALL = re.compile(r"^(plot_\w+)\(", re.M)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_book_pages_are_clean_and_every_figure_has_a_caption(path):
    """Boilerplate is tagged away (input kept in the file), nbval markers are tags, figures carry captions."""
    nb = nbformat.read(str(path), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    imports = next(c for c in code if c.source.startswith("%matplotlib"))
    assert "hide-input" in imports.metadata.get("tags", []) and "setup_notebook()" in imports.source
    assert "filterwarnings" not in imports.source
    for cell in code:
        tags = cell.metadata.get("tags", [])
        assert "NBVAL" not in cell.source and " else None" not in cell.source, cell.source[:60]
        if cell.source.startswith(("cfg = ", "assert ")):
            assert "remove-cell" in tags, cell.source[:60]
        if FIGURE_CALL.search(cell.source):
            figure = cell.metadata.get("mystnb", {}).get("figure", {})
            assert figure.get("name", "").startswith("fig-") and len(figure.get("caption", "")) > 40, cell.source[:60]
    config_heading = [c for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("## Config")]
    assert all("remove-cell" in c.metadata.get("tags", []) for c in config_heading)
    names = [c.metadata["mystnb"]["figure"]["name"] for c in code if "mystnb" in c.metadata]
    assert len(names) == len(set(names))
    if path.parent.name == "notebooks":
        parameters = next(c.source for c in code if "parameters" in c.metadata.get("tags", []))
        assert 'results_root = "../artifacts/scratch-results"' in parameters  # not the book's results/
        described = next(c.source for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("## Param"))
        assert "smoke-sized defaults" in described and "in the cell below" in described


def test_select_notebooks():
    assert select_notebooks("02,01") == ["01_data", "02_retrofit"]
    assert select_notebooks(["04_shapley_pruning"]) == ["04_shapley_pruning"]
    assert select_notebooks(None) == list(NOTEBOOKS)
    assert select_notebooks("6") == ["06_stability"]
    with pytest.raises(ValueError, match="07"):
        select_notebooks("01,07")


def test_notebook_parameters_keep_notebook_defaults_for_unset_names():
    cfg = config_from_profile(RetrainConfig, "workshop", dataset="kits", seed=3)
    given = set(load_profile("workshop")) | {"dataset", "seed"}
    values = notebook_parameters(DataConfig.field_names(), cfg, given)
    assert values["dataset"] == "kits" and values["seed"] == 3 and values["slice_size"] == 64
    assert "search_epochs" not in values  # not a DataConfig field
    assert "phantom_seed" not in values  # not set by the profile: the notebook default stays
    searched = notebook_parameters(RetrainConfig.field_names(), cfg, given)
    assert "policy" not in searched and searched["search_epochs"] == 12


def test_progress_bars_are_reduced_to_what_a_terminal_shows(tmp_path):
    assert terminal_text("\rtrain 1/2:   0%|  | 0/4\rtrain 1/2: 100%|##| 4/4\r              \r") == ""
    assert terminal_text("epoch 1\nbar 10%\rbar 100%\nend") == "epoch 1\nbar 100%\nend\n"
    nested = ("outer:   0%|   | 0/2 [00:00]\ninner:   0%|   | 0/3\x1b[A{root}/x.py:1: UserWarning: w\n"
              "inner: 100%|###| 3/3\x1b[A\nouter:  50%|#  | 1/2 [00:01]\ninner: 100%|###| 3/3\x1b[A\n"
              "outer: 100%|###| 2/2 [00:02, loss=0.5]\n")
    assert terminal_text(nested) == ("{root}/x.py:1: UserWarning: w\ninner: 100%|###| 3/3\n"
                                     "outer: 100%|###| 2/2 [00:02, loss=0.5]\n")
    streams = [nbformat.v4.new_output("stream", name="stderr", text=t)
               for t in ("\rbar:  0%|  | 0/1", "\rbar: 50%|# | 1/2", nested.format(root=tmp_path))]
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x", outputs=[*streams, nbformat.v4.new_output("stream", name="stdout", text="ok")]),
        nbformat.v4.new_code_cell("1", metadata={"tags": ["injected-parameters"]})])
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, str(path))
    tag_for_book(path, root=tmp_path)
    cells = nbformat.read(str(path), as_version=4).cells
    assert [o.name for o in cells[0].outputs] == ["stderr", "stdout"]
    assert cells[0].outputs[0].text == terminal_text(nested.format(root="."))  # machine path shortened
    assert cells[1].metadata.tags == ["injected-parameters", "hide-input"]


def test_data_dirs_name_selected_datasets(tmp_path):
    with pytest.raises(ValueError, match="brats"):
        run_notebooks(["acdc", "kits"], data_dirs={"brats": str(tmp_path)}, root=ROOT, results_root=tmp_path)


def test_unknown_override_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="search_epoch"):
        run_notebooks(["acdc"], root=ROOT, results_root=tmp_path, overrides={"search_epoch": 3})


def _broken_root(tmp_path: Path) -> Path:
    """A book root whose 01_data notebook raises in its second code cell."""
    root = tmp_path / "root"
    (root / "notebooks").mkdir(parents=True)
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# broken"),
        nbformat.v4.new_code_cell('dataset = "acdc"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("value = 1\nraise ValueError(f'bad value {value} in {dataset}')"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, str(root / "notebooks" / "01_data.ipynb"))
    return root


def test_failed_cell_names_notebook_cell_and_error(tmp_path):
    root = _broken_root(tmp_path)
    with pytest.raises(NotebookError) as failure:
        run_notebooks(["brats"], notebooks="01", root=root, results_root=tmp_path / "results", results_page=False,
                      log=lambda line: None)
    message = str(failure.value)
    assert "01_data.ipynb" in message and "cell 3" in message  # index 3: after papermill's injected cell
    assert "raise ValueError" in message and "ValueError: bad value 1 in brats" in message
    failed = tmp_path / "results" / "brats" / "basic_unet" / "seed-0" / "executed" / "01_data.failed.ipynb"
    assert failed.exists() and str(failed) in message and "left as it was" in message
    assert not (root / "book" / "datasets" / "brats" / "01_data.ipynb").exists()  # no failing page in the book
    assert not failed.with_name("01_data.ipynb").exists()


def test_a_failed_run_leaves_the_previous_page_byte_identical(tmp_path):
    root = _broken_root(tmp_path)
    page = root / "book" / "datasets" / "brats" / "01_data.ipynb"
    page.parent.mkdir(parents=True)
    previous = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# BraTS · 1. The data\n\ngood")])
    nbformat.write(previous, str(page))
    before = page.read_bytes()
    with pytest.raises(NotebookError):
        run_notebooks(["brats"], notebooks="01", root=root, results_root=tmp_path / "results", results_page=False,
                      log=lambda line: None)
    assert page.read_bytes() == before
    assert sorted(p.name for p in page.parent.iterdir()) == ["01_data.ipynb"]  # nothing else the book would pick up


@pytest.mark.parametrize("make, words", [(lambda d: d / "nonexistent", "folder not found"),
                                         (lambda d: d, "no labelled case found")])
def test_a_wrong_data_folder_fails_before_any_notebook_runs(tmp_path, make, words):
    root = _broken_root(tmp_path)
    page = root / "book" / "datasets" / "acdc" / "01_data.ipynb"
    page.parent.mkdir(parents=True)
    page.write_text("previous page\n")
    folder = make(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    lines: list[str] = []
    with pytest.raises(ValueError) as failure:
        run_notebooks(["acdc"], data_dirs={"acdc": str(folder)}, notebooks="01", root=root,
                      results_root=tmp_path / "results", log=lines.append)
    message = str(failure.value)
    assert f"acdc={folder}" in message and words in message and "expected [database/][training/]patientXXX" in message
    assert lines == [] and page.read_text() == "previous page\n"  # nothing ran, nothing replaced
    assert not (tmp_path / "results").exists()


def test_data_folders_in_their_layout_pass_the_check_and_others_name_the_layout(phantom_dir):
    from shapnas.book.run_notebooks import check_data_dirs

    acdc = phantom_dir("acdc")
    check_data_dirs(["acdc"], {"acdc": str(acdc)})  # a folder in the official layout passes
    with pytest.raises(ValueError) as failure:
        check_data_dirs(["kits"], {"kits": str(acdc)})
    assert f"--data-dir kits={acdc}: does not fit the kits layout" in str(failure.value)
    assert "expected [dataset/|data/]case_XXXXX/" in str(failure.value)


def test_the_run_command_reports_a_missing_data_folder_in_one_line(tmp_path, capsys):
    from shapnas.cli import main

    missing = tmp_path / "nonexistent"
    code = main(["run", "--dataset", "acdc", "--data-dir", str(missing), "--profile", "smoke", "--root", str(ROOT),
                 "--results", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert code == 2 and f"--data-dir acdc={missing}: folder not found" in err
    assert not (tmp_path / "results").exists()


def test_msd_without_a_data_folder_is_refused_before_running(tmp_path):
    with pytest.raises(ValueError, match="msd needs --data-dir"):
        run_notebooks(["msd"], root=ROOT, results_root=tmp_path, log=lambda line: None)


def test_reproduce_command_names_datasets_profile_notebooks_and_overrides():
    from shapnas.book.run_notebooks import reproduce_command

    assert reproduce_command(["acdc"], profile="workshop", seed=0, notebooks=["03_search"]) == \
        "python -m shapnas run --datasets acdc --profile workshop --notebooks 03"
    command = reproduce_command(["acdc", "kits"], profile="smoke", seed=2, overrides={
        "search_epochs": 20, "decoder_input": True, "policy": "alpha"}, data_dirs=["kits"])
    assert command == ("python -m shapnas run --datasets acdc,kits --profile smoke --seed 2 --data-dir kits=DIR "
                       "--set search_epochs=20 --set decoder_input=true --set policy=alpha")


# ------------------------------------------------------------------ smoke execution shared with the book tests

def _copy_book_sources(root: Path) -> None:
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("datasets", ".ipynb_checkpoints"))


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory) -> Path:
    """A book root in a temporary folder with one dataset (acdc) executed at the smoke profile.

    Cached on disk for the session, so test_book and test_browser (which import this fixture) reuse it.
    """
    root = tmp_path_factory.getbasetemp() / "smoke-book"
    done = root / ".executed"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        _copy_book_sources(root)
        run_notebooks(["acdc"], profile="smoke", seed=0, root=root, results_root=root / "results", device="cpu",
                      log=lambda line: None)
        done.write_text("ok\n")
    return root


@pytest.mark.slow
def test_runner_writes_tagged_copies_with_portable_paths(smoke_book):
    executed = sorted((smoke_book / "book" / "datasets" / "acdc").glob("*.ipynb"))
    assert [p.stem for p in executed] == sorted(NOTEBOOKS)
    nb = nbformat.read(str(executed[0]), as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells if c.cell_type == "code"]
    assert ["parameters", "remove-cell"] in tags and ["injected-parameters", "hide-input"] in tags
    injected = next(c.source for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert 'results_root = "../../../results"' in injected and str(smoke_book) not in injected
    assert nb.metadata.papermill.parameters["slice_size"] == load_profile("smoke")["slice_size"]
    copies = smoke_book / "results" / "acdc" / "basic_unet" / "seed-0" / "executed"
    assert sorted(p.stem for p in copies.glob("*.ipynb")) == sorted(NOTEBOOKS)
    assert (smoke_book / "book" / "datasets" / "results.ipynb").exists()
    title = nb.cells[0].source
    assert "reproduce it with `python -m shapnas run --datasets acdc --profile smoke --notebooks 01`" in title
    assert ":::{dropdown} Parameters of this page" in title and "| `slice_size` | `32` | this run |" in title
    assert "findings" not in title and (smoke_book / "book" / "datasets" / "findings.md").exists()
    snippets = sorted((smoke_book / "book" / "datasets" / "workshop").glob("*.md"))
    assert [p.stem for p in snippets] == ["chapters", "ex1", "ex2", "ex3", "ex4", "ex5", "timings"]
    assert "largest |backbone - retrofit| at implant: 0.0e+00" in snippets[1].read_text()
    for path in [*executed, smoke_book / "book" / "datasets" / "results.ipynb"]:
        outputs = [o for c in nbformat.read(str(path), as_version=4).cells for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.output_type == "error"], path.name
        streams = [o.text for o in outputs if o.output_type == "stream"]
        assert not [t for t in streams if "\r" in t or len(t.splitlines()) > 20], f"{path.name}: long logs"
        assert not [t for t in streams if str(ROOT) in t or str(smoke_book) in t], f"{path.name}: machine paths"


@pytest.mark.slow
def test_nbval_on_smoke_execution(smoke_book):
    """nbval re-runs every executed notebook (stages are skipped, so it is quick) and compares the cells tagged
    ``nbval-check-output``."""
    paths = sorted((smoke_book / "book" / "datasets" / "acdc").glob("*.ipynb"))
    paths.append(smoke_book / "book" / "datasets" / "results.ipynb")
    checked = sum("nbval-check-output" in c.metadata.get("tags", []) for p in paths
                  for c in nbformat.read(str(p), as_version=4).cells if c.cell_type == "code")
    assert checked >= 5
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
         "--nbval-sanitize-with", str(ROOT / "tests" / "sanitize.cfg"), *map(str, paths)],
        cwd=smoke_book, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout



@pytest.mark.slow
def test_experiment_chapters_present_the_smoke_ablation_plan(smoke_book):
    """run_notebooks ran the smoke ablation plan on Dask before 05/06, so they show measured tables."""
    from shapnas.experiments.ablations import ablation_records, load_plan, stability_records

    results = smoke_book / "results"
    plan = load_plan(results)
    assert plan is not None and plan.profile == "smoke" and plan.datasets == ("acdc",)
    records = ablation_records(results, "acdc")
    assert {(r["axis"], r["setting"]) for r in records} >= {("policy", "none"), ("policy", "shapley"),
                                                             ("permutations M", "default"), ("permutations M", "M = 1")}
    assert len(stability_records(results, "acdc", "basic_unet")) == len(plan.seeds) * len(plan.policies)
    for stem, expected in (("05_ablations", "Dice (%)"), ("06_stability", "Jaccard")):
        nb = nbformat.read(str(smoke_book / "book" / "datasets" / "acdc" / f"{stem}.ipynb"), as_version=4)
        texts = [o.get("data", {}).get("text/markdown", "") + o.get("data", {}).get("text/plain", "")
                 for c in nb.cells for o in c.get("outputs", [])]
        assert any("ablation plan was run for acdc" in t for t in texts), stem
        assert any(expected in t for t in texts), stem
    # chapter 5 compares the cells with the backbone and the fine-tuned backbone over the plan's seeds
    from shapnas.experiments.ablations import seed_plan_pooled

    pooled = seed_plan_pooled(results, "acdc")
    assert [r["method"] for r in pooled][:2] == ["backbone", "finetune"]
    cells = [r for r in pooled if r["method"].startswith("iac-")]
    assert cells and all(r["seeds"] == list(plan.seeds) and r["dice_vs_finetune"] and r["dice_vs_backbone"]
                         for r in cells)
    nb = nbformat.read(str(smoke_book / "book" / "datasets" / "acdc" / "05_ablations.ipynb"), as_version=4)
    outputs = [o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])]
    assert any("vs fine-tuned" in o.get("text/html", "") and "IAC, Shapley-pruned" in o.get("text/html", "")
               for o in outputs)  # the table, as every table of the book (a DataFrame)
    assert any("against the fine-tuned backbone" in o.get("text/markdown", "") for o in outputs)
    from shapnas.experiments.summary import collect_summary
    from shapnas.experiments.transfer import TRANSFER_ARMS, transfer_plan, transfer_plan_root

    transfer = transfer_plan("smoke")  # run on the same cluster: every arm of every seed and N
    records = collect_summary(transfer_plan_root(results), setting=None)
    assert len([r for r in records if r["setting"] == "transfer"]) == \
        len(TRANSFER_ARMS) * len(transfer.seeds) * len(transfer.ns_for("acdc"))
    assert all(r["source_drop"] is not None for r in records if r["setting"] == "transfer")


def test_kernels_start_without_the_plain_tcp_warning(tmp_path, capfd):
    """ipykernel >= 7.3 warns on every kernel over unencrypted TCP; the runner's kernels use CurveZMQ where
    pyzmq has it, so make book's output carries no such warning (and the default manager elsewhere)."""
    import zmq

    from shapnas.book.kernel_manager import kernel_manager_options
    from shapnas.book.run_notebooks import execute_notebook

    if not zmq.has("curve"):
        assert kernel_manager_options() == {}
        pytest.skip("pyzmq without CurveZMQ: the default kernel manager is used")
    manager = kernel_manager_options()["kernel_manager_class"]
    assert manager().transport_encryption == "auto"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "one.ipynb")
    out = execute_notebook(tmp_path / "one.ipynb", tmp_path / "out" / "one.ipynb", {})
    assert nbformat.read(out, as_version=4).cells[0].outputs[0]["text"].strip() == "42"
    captured = capfd.readouterr()
    assert "without encryption" not in captured.err + captured.out


def test_notebook_lanes_give_each_core_a_dataset_on_a_cpu_and_one_dataset_on_a_gpu(monkeypatch):
    from shapnas.book import run_notebooks as runner
    from shapnas.experiments import dask_runner

    monkeypatch.setattr(dask_runner, "usable_cores", lambda: 2)
    assert runner.notebook_lanes(None, "cpu", 4) == 2 and runner.lane_threads(2) == 1
    assert runner.notebook_lanes(None, "cpu", 1) == 1 and runner.lane_threads(1) == 2
    assert runner.notebook_lanes(3, "cpu", 4) == 3 and runner.lane_threads(3) == 1
    assert runner.notebook_lanes(8, "cpu", 2) == 2  # never more lanes than datasets
    monkeypatch.setattr("shapnas.runtime.pick_device", lambda device: __import__("torch").device("cuda"))
    assert runner.notebook_lanes(None, "auto", 4) == 1  # a GPU runs one dataset at a time
    with pytest.raises(ValueError, match="workers=0; expected at least 1"):
        runner.notebook_lanes(0, "cpu", 4)


@pytest.mark.slow
def test_two_datasets_side_by_side_write_every_page(tmp_path):
    """Two lanes, each in its own process with single-threaded kernels: every page of both datasets is written and
    copied to its run folder, as one after the other would."""
    root = tmp_path / "book-root"
    root.mkdir()
    _copy_book_sources(root)
    lines: list[str] = []
    written = run_notebooks(["acdc", "kits"], profile="smoke", notebooks="01", root=root,
                            results_root=tmp_path / "results", device="cpu", results_page=False, workers=2,
                            log=lines.append)
    assert sorted(p.relative_to(root / "book" / "datasets").as_posix() for p in written) == [
        "acdc/01_data.ipynb", "kits/01_data.ipynb"]
    assert "2 side by side" in lines[0]
    for dataset in ("acdc", "kits"):
        copy = tmp_path / "results" / dataset / "basic_unet" / "seed-0" / "executed" / "01_data.ipynb"
        assert copy.exists()
