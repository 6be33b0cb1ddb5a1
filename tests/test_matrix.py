"""The run matrix: jobs and their order, a real two-worker Dask LocalCluster on loopback (results, failures,
a worker killed mid-run and the re-run), the matrix and stability command lines."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import dask
import pytest

from shapnas.cli import main
from shapnas.config.overrides import parse_overrides
from shapnas.config.stage_configs import RetrainConfig
from shapnas.experiments.dask_runner import open_client, run_jobs
from shapnas.experiments.matrix import Job, build_jobs, dependency_order, format_summary
from shapnas.runs.files import append_jsonl, load_json, save_json

# A cheap real command: checks its prerequisites' outputs, then writes its own JSON atomically.
# argv: OUT NEEDS(comma-separated) MODE, MODE = ok | fail | wait:MARKER (write the worker's pid to MARKER,
# wait for MARKER.release, count the finish in MARKER.ends).
WRITER = r"""
import json, os, pathlib, sys, time
out, needs, mode = pathlib.Path(sys.argv[1]), [p for p in sys.argv[2].split(",") if p], sys.argv[3]
missing = [p for p in needs if not pathlib.Path(p).exists()]
if missing:
    sys.exit(f"prerequisite outputs missing: {missing}")
print("working on", out, flush=True)
if mode == "fail":
    sys.exit(3)
if mode.startswith("wait:"):
    marker = pathlib.Path(mode[5:])
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(f"{os.getppid()} {os.getpid()}")
    os.replace(tmp, marker)
    deadline = time.time() + 60
    while not marker.with_suffix(".release").exists() and time.time() < deadline:
        time.sleep(0.05)
    with open(marker.with_suffix(".ends"), "a") as handle:
        handle.write("end\n")
out.parent.mkdir(parents=True, exist_ok=True)
tmp = out.with_suffix(".tmp")
tmp.write_text(json.dumps({"job": out.parent.name, "needs": len(needs)}))
os.replace(tmp, out)
"""


def _job(root: Path, name: str, deps: tuple[Job, ...] = (), mode: str = "ok") -> Job:
    output = root / name / "metrics.json"
    needs = ",".join(str(d.output) for d in deps)
    return Job(id=name, argv=(sys.executable, "-c", WRITER, str(output), needs, mode),
               log=root / "logs" / f"{name}.log", output=output, deps=tuple(d.id for d in deps), kind="test")


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes on 127.0.0.1; a worker lost while running a task fails it at once."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with open_client(workers=2) as (client, placement):
            yield client, placement


def _statuses(results) -> dict[str, str]:
    return {r.id: r.status for r in results}


def test_build_jobs_expands_the_matrix(tmp_path):
    jobs = build_jobs(["acdc", "kits"], [0, 2], ["none", "shapley"], profile="smoke", results=tmp_path,
                      overrides={"search_epochs": 2}, python="python")
    assert len(jobs) == 2 * 2 * (4 + 3 * 2)
    by_id = {j.id: j for j in jobs}
    assert len(by_id) == len(jobs)
    assert [j.id for j in dependency_order(jobs)] == [j.id for j in jobs]  # listed in dependency order
    search = by_id["kits-basic_unet-seed2-search-shapley"]
    assert search.deps == ("kits-basic_unet-seed2-pretrain",)
    # the job carries its stage kind and config as data; its command runs the stage entry point on job.json
    assert search.kind == "search" and search.target == ""
    assert {k: search.config[k] for k in ("dataset", "seed", "policy", "search_epochs", "results_root", "profile")} \
        == {"dataset": "kits", "seed": 2, "policy": "shapley", "search_epochs": 2,
            "results_root": str(tmp_path.resolve()), "profile": "smoke"}
    assert search.config == RetrainConfig.from_dict(search.config).to_dict()  # a complete, valid config
    assert search.spec == tmp_path.resolve() / "jobs" / "kits-basic_unet-seed2-search-shapley.json"
    assert search.argv == ("python", "-m", "shapnas.experiments.job_entry", str(search.spec))
    assert search.output == tmp_path.resolve() / "kits" / "basic_unet" / "seed-2" / "search-shapley" / "metrics.json"
    assert search.log == tmp_path.resolve() / "logs" / "kits-basic_unet-seed2-search-shapley.log"
    assert by_id["acdc-basic_unet-seed0-eval-shapley"].deps == ("acdc-basic_unet-seed0-retrain-shapley",)
    assert by_id["acdc-basic_unet-seed0-eval-finetune"].deps == ("acdc-basic_unet-seed0-finetune",)
    evaluate = by_id["acdc-basic_unet-seed0-eval-backbone"]
    assert evaluate.kind == "evaluate" and evaluate.target == "backbone"
    assert evaluate.config["policy"] == "none"  # the profile's, as the evaluate command builds it
    # phantom data is written once, by the first seed's pre-training; with a data root seeds start together
    assert by_id["kits-basic_unet-seed2-pretrain"].deps == ("kits-basic_unet-seed0-pretrain",)
    assert by_id["acdc-basic_unet-seed0-pretrain"].deps == ()
    real = build_jobs(["acdc"], [0, 1], ["none"], profile="smoke", results=tmp_path, data_dirs={"acdc": "data"})
    assert real[7].id == "acdc-basic_unet-seed1-pretrain" and real[7].deps == ()
    assert real[7].config["data_dir"] == str(Path("data").resolve())
    unet = build_jobs(["acdc"], [0], ["none"], profile="smoke", results=tmp_path, backbone="unet")
    assert unet[0].id == "acdc-unet-seed0-pretrain" and "unet" in unet[0].output.parts


def test_build_jobs_stage_filter_and_errors(tmp_path):
    jobs = build_jobs(["acdc"], [0], ["none", "js"], profile="smoke", results=tmp_path, stages=["search", "retrain"])
    assert [j.id.split("seed0-")[1] for j in jobs] == ["search-none", "retrain-none", "search-js", "retrain-js"]
    assert jobs[0].deps == () and jobs[1].deps == (jobs[0].id,)  # pretrain is outside the selection
    with pytest.raises(ValueError, match="set by the matrix"):
        build_jobs(["acdc"], [0], ["none"], profile="smoke", results=tmp_path, overrides={"seed": 3})
    with pytest.raises(ValueError, match="unknown (Search|Retrain)Config fields"):
        build_jobs(["acdc"], [0], ["none"], profile="smoke", results=tmp_path, overrides={"no_such_field": 1})
    with pytest.raises(ValueError, match="search_epochs='many': expected an integer"):
        build_jobs(["acdc"], [0], ["none"], profile="smoke", results=tmp_path, overrides={"search_epochs": "many"})
    with pytest.raises(ValueError, match="stages"):
        build_jobs(["acdc"], [0], ["none"], profile="smoke", results=tmp_path, stages=["train"])
    a = _job(tmp_path, "a")
    with pytest.raises(ValueError, match="cycle"):
        dependency_order([Job("x", ("true",), a.log, a.output, ("y",)), Job("y", ("true",), a.log, a.output, ("x",))])
    with pytest.raises(ValueError, match="unknown job"):
        dependency_order([Job("x", ("true",), a.log, a.output, ("nope",))])


def test_matrix_list_rows(tmp_path):
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["matrix", "--datasets", "acdc", "--seeds", "0,1", "--policies", "shapley", "--profile", "smoke",
                     "--results", str(tmp_path), "--stages", "pretrain,search", "--list"])
    rows = stdout.getvalue().splitlines()
    assert code == 0
    assert [r.split("\t")[0] for r in rows] == ["acdc-basic_unet-seed0-pretrain", "acdc-basic_unet-seed0-search-shapley",
                                                "acdc-basic_unet-seed1-pretrain", "acdc-basic_unet-seed1-search-shapley"]
    spec = tmp_path.resolve() / "jobs" / "acdc-basic_unet-seed1-search-shapley.json"
    assert rows[3].split("\t")[1].endswith(f"-m shapnas.experiments.job_entry {spec}")
    assert load_json(spec)["kind"] == "search" and load_json(spec)["config"]["policy"] == "shapley"  # rows run as listed
    assert not (tmp_path / "logs").exists()  # listing runs nothing
    assert main(["matrix", "--datasets", "acdc,mnist", "--list"]) == 2


def test_dependencies_results_and_failures(cluster, tmp_path):
    client, placement = cluster
    a = _job(tmp_path, "a")
    b, c = _job(tmp_path, "b", (a,)), _job(tmp_path, "c", (a,))
    d = _job(tmp_path, "d", (b, c))
    e = _job(tmp_path, "e", mode="fail")
    f = _job(tmp_path, "f", (e,))
    g = _job(tmp_path, "g", (f, a))
    jobs = [g, d, c, b, a, f, e]  # any order: run_jobs orders them
    results = run_jobs(jobs, client, placement=placement, progress=False)
    assert [r.id for r in results] == [j.id for j in jobs]
    assert _statuses(results) == {"a": "ok", "b": "ok", "c": "ok", "d": "ok", "e": "failed", "f": "skipped",
                                  "g": "skipped"}
    for job in (a, b, c, d):  # each ran after its prerequisites wrote their outputs
        assert load_json(job.output) == {"job": job.id, "needs": len(job.deps)}
        assert "# exit status 0" in job.log.read_text()
    failed = {r.id: r for r in results}["e"]
    assert failed.detail == "exit status 3" and failed.log == str(e.log)
    assert "working on" in e.log.read_text() and "# exit status 3" in e.log.read_text()
    assert {r.id: r for r in results}["g"].detail == "prerequisite e failed"
    assert not f.log.exists() and not g.output.exists()
    table = format_summary(results)
    assert "4 ok, 0 done, 1 failed, 2 skipped" in table and str(e.log) in table

    again = run_jobs(jobs, client, placement=placement, progress=False)  # finished jobs are not submitted
    assert _statuses(again) == {"a": "done", "b": "done", "c": "done", "d": "done", "e": "failed", "f": "skipped",
                                "g": "skipped"}
    assert a.log.read_text().count("# job a") == 1


def _wait_for(path: Path, timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)
    return path.read_text()


def test_killed_worker_then_rerun_completes(cluster, tmp_path):
    client, placement = cluster
    marker = tmp_path / "slow.marker"
    slow = _job(tmp_path, "slow", mode=f"wait:{marker}")
    after = _job(tmp_path, "after", (slow,))
    x, y = _job(tmp_path, "x"), _job(tmp_path, "y")
    jobs = [slow, after, x, y]
    first: list = []
    thread = threading.Thread(target=lambda: first.extend(run_jobs(jobs, client, placement=placement,
                                                                   progress=False)))
    thread.start()
    worker_pid, child_pid = map(int, _wait_for(marker).split())
    os.kill(worker_pid, signal.SIGKILL)  # the worker process running the slow job dies mid-run
    thread.join(timeout=90)
    assert not thread.is_alive()
    statuses = _statuses(first)
    # allowed-failures 0: no second try; a job already queued on that worker may fail with it
    assert statuses["slow"] == "failed" and statuses["after"] == "skipped"
    assert {r.id: r for r in first}["slow"].detail == "its worker died while running it"
    assert statuses["x"] in ("ok", "failed") and statuses["y"] in ("ok", "failed")
    assert not slow.output.exists()

    marker.with_suffix(".release").write_text("go")
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker
    second = run_jobs(jobs, client, placement=placement, progress=False)
    assert _statuses(second) == {"slow": "ok", "after": "ok", **{j: "ok" if statuses[j] == "failed" else "done"
                                                                 for j in ("x", "y")}}
    for job in jobs:
        assert load_json(job.output)["job"] == job.id
    # the killed worker's child died with it: only the re-run's copy of the slow job finished
    assert marker.with_suffix(".ends").read_text() == "end\n"
    assert int(marker.read_text().split()[1]) != child_pid


def _search_stage(root: Path, seed: int, genotype: list, probs: list, shapley: list | None, dice: float | None):
    run = root / "acdc" / "basic_unet" / f"seed-{seed}"
    policy = "shapley" if shapley is not None else "none"
    search = run / f"search-{policy}"
    save_json(search / "metrics.json", {"schema": 1, "stage": f"search-{policy}", "dataset": "acdc",
                                        "backbone": "basic_unet", "seed": seed, "policy": policy,
                                        "genotype": genotype, "final_op_probs": probs})
    append_jsonl(search / "history.jsonl", {"epoch": 0, "shapley": None})
    if shapley is not None:
        players = [[0, "sep_conv_3x3"], [1, "skip_connect"], [2, "max_pool_3x3"]]
        append_jsonl(search / "history.jsonl", {"epoch": 1, "shapley": {"players": players, "mean": [0, 0, 0]}})
        append_jsonl(search / "history.jsonl", {"epoch": 2, "shapley": {"players": players, "mean": shapley}})
        append_jsonl(search / "history.jsonl", {"epoch": 3, "shapley": None})
    if dice is not None:
        save_json(run / f"eval-{policy}" / "metrics.json", {"target": policy, "dice_mean": dice})


def test_stability_command(tmp_path):
    g = [[2, 0, "sep_conv_3x3"], [2, 1, "skip_connect"]]
    g_other = [[2, 0, "sep_conv_3x3"], [2, 1, "max_pool_3x3"]]
    probs = [[0.1, 0.9], [0.5, 0.5]]
    _search_stage(tmp_path, 0, g, probs, [0.3, 0.2, 0.1], 0.70)
    _search_stage(tmp_path, 1, g, probs, [0.6, 0.4, 0.2], 0.80)
    _search_stage(tmp_path, 2, g_other, probs, [0.1, 0.2, 0.3], None)  # not evaluated yet
    _search_stage(tmp_path, 0, g, probs, None, 0.5)  # policy none: no Shapley rounds
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["stability", "--results", str(tmp_path), "--json"]) == 0
    rows = {r["policy"]: r for r in json.loads(stdout.getvalue())}
    shapley = rows["shapley"]
    assert shapley["seeds"] == [0, 1, 2] and shapley["num_seeds"] == 3
    assert shapley["jaccard"] == pytest.approx((1 + 1 / 3 + 1 / 3) / 3)
    assert shapley["js"] == pytest.approx(0.0)
    assert shapley["kendall"] == pytest.approx((1 - 1 - 1) / 3)  # last rounds: same, reversed, reversed
    assert shapley["dice_mean"] == pytest.approx(0.75)
    assert rows["none"]["num_seeds"] == 1 and rows["none"]["kendall"] is None  # NaN printed as null
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["stability", "--results", str(tmp_path)]) == 0
    assert "shapley" in stdout.getvalue() and "0.750" in stdout.getvalue()


TINY = ["pretrain_epochs=1", "finetune_epochs=1", "retrain_epochs=1", "search_epochs=2", "warmup_epochs=1",
        "max_slices_per_volume=2", "shapley_permutations=1", "shapley_slices=2", "device=cpu"]


@pytest.mark.slow
def test_real_stages_matrix(tmp_path):
    """The smoke profile, made tiny, for one dataset and seed and the policies none and shapley: 10 real jobs."""
    for module in ("shapnas.data.prepared", "shapnas.networks.retrofit", "shapnas.training.train", "shapnas.training.evaluate", "shapnas.data.phantoms"):
        pytest.importorskip(module)
    argv = ["matrix", "--datasets", "acdc", "--seeds", "0", "--policies", "none,shapley", "--profile", "smoke",
            "--results", str(tmp_path), "--workers", "2", "--no-progress"]
    for item in TINY:
        argv += ["--set", item]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(argv)
    assert code == 0, stdout.getvalue()
    assert "10 jobs: 10 ok, 0 done, 0 failed, 0 skipped" in stdout.getvalue()
    jobs = build_jobs(["acdc"], [0], ["none", "shapley"], profile="smoke", results=tmp_path,
                      overrides=parse_overrides(TINY, RetrainConfig))
    for job in jobs:
        metrics = load_json(job.output)
        assert metrics["stage"] == job.output.parent.name and metrics["seed"] == 0
        assert job.log.exists()
    assert 0.0 <= load_json(jobs[-1].output)["dice_mean"] <= 1.0
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(argv) == 0
    assert "all 10 jobs are done" in stdout.getvalue()


def test_ablation_plan_fixes_one_backbone_per_dataset(tmp_path):
    from shapnas.experiments.ablations import ablation_plan, build_ablation_jobs

    plan = ablation_plan("workshop")
    assert len(plan.seeds) >= 3
    main, variants = build_ablation_jobs(plan, results=tmp_path)
    for dataset in plan.datasets:
        first = f"{dataset}-basic_unet-seed{plan.seeds[0]}-pretrain"
        checkpoint = f"{tmp_path.resolve()}/ablations/main/{dataset}/basic_unet/seed-{plan.seeds[0]}/pretrain/model.pt"
        (own,) = [j for j in main if j.id == first]
        assert own.config["backbone_checkpoint"] == ""
        for seed in plan.seeds[1:]:
            jobs = [j for j in main if j.id.startswith(f"{dataset}-basic_unet-seed{seed}-")]
            assert jobs and all(j.config["backbone_checkpoint"] == checkpoint for j in jobs)  # only the search varies
            assert all(j.config["slice_size"] == plan.scale["slice_size"] for j in jobs)  # the plan's scale
            (pretrain,) = [j for j in jobs if j.kind == "pretrain"]
            assert first in pretrain.deps
        for seed in plan.seeds:  # every seed evaluates the backbone and fine-tunes it: intervals over the seeds
            targets = {j.target for j in main if j.id.startswith(f"{dataset}-basic_unet-seed{seed}-") and j.target}
            assert targets == {"backbone", "finetune", *plan.policies}
    assert not variants and set(plan.policies) == {"none", "shapley"}  # the workshop plan: the seed plan only
    plan = ablation_plan("smoke")
    main, variants = build_ablation_jobs(plan, results=tmp_path)
    variant = plan.variants[0]
    mine = [j for j in variants if j.id.startswith(f"{variant.name}-")]
    assert mine and all(j.config[k] == v for j in mine for k, v in variant.overrides.items())
    # a variant reads the main run's backbone: it waits for that pre-training (one queue with the main runs)
    assert all(j.kind == "evaluate" and j.target == "shapley" and
               j.deps == (f"{j.config['dataset']}-basic_unet-seed{j.config['seed']}-pretrain",) for j in mine)
    assert {d for j in mine for d in j.deps} <= {j.id for j in main}


def test_local_cpu_cluster_splits_the_cores(monkeypatch):
    """Without GPUs: one worker per core by default (at most MAX_CPU_WORKERS), and every job gets
    cores // workers threads even when the caller exported OMP_NUM_THREADS (make does), so the workers do
    not oversubscribe the cores."""
    from shapnas.experiments.dask_runner import MAX_CPU_WORKERS, usable_cores
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("OMP_NUM_THREADS", "64")
    monkeypatch.setattr("shapnas.experiments.dask_runner._local_gpu_ids", lambda: ())
    cores = usable_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    with open_client() as (client, placement):
        workers = len(client.scheduler_info(n_workers=-1)["workers"])
        assert workers == min(cores, MAX_CPU_WORKERS)
        assert placement.env == {"OMP_NUM_THREADS": str(max(1, cores // workers))}
        assert placement.resources is None
    with pytest.raises(ValueError, match="--workers 0; expected at least 1"):
        with open_client(workers=0):
            pass
