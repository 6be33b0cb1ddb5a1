"""The workshop page's measured values, computed from the book's own run.

The workshop page (``book/workshop.md``) states what each exercise should show. Where that is a measured
figure (a run time, α's movement, a Shapley round's cost, a speed ratio, a paired interval), the page
includes a snippet that ``python -m shapnas run`` writes under ``book/datasets/workshop/`` from the executed
pages and the results folder, so the page quotes this run and not an older one on another machine.
``python -m shapnas book`` writes placeholders where no run has written a snippet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat

from shapnas.config.names import dataset_label

__all__ = ["SNIPPETS", "snippet_dir", "chapter_seconds", "implant_line", "chapters_text", "timings_text", "alpha_text",
           "rounds_text", "speed_snippet", "intervals_text", "workshop_snippets", "write_workshop_snippets",
           "ensure_workshop_snippets"]

SNIPPETS = ("chapters", "timings", "ex1", "ex2", "ex3", "ex4", "ex5")
DATASET = "acdc"  # the dataset whose chapters the exercises read
PLACEHOLDER = "*Not measured yet: `make book` (or `python -m shapnas run`) writes this book's values here.*\n"
_IMPLANT = "largest |backbone - retrofit| at implant:"


def snippet_dir(root: str | Path) -> Path:
    """``<root>/book/datasets/workshop`` (generated, not committed)."""
    return Path(root) / "book" / "datasets" / "workshop"


def _page(root: Path, dataset: str, stem: str) -> Any | None:
    path = root / "book" / "datasets" / dataset / f"{stem}.ipynb"
    return nbformat.read(str(path), as_version=4) if path.exists() else None


CHAPTERS = ("01_data", "02_retrofit", "03_search", "04_shapley_pruning")
LATER_CHAPTERS = ("05_ablations", "06_stability")


def chapter_seconds(root: str | Path, dataset: str = DATASET, stems: Sequence[str] = CHAPTERS) -> dict[str, float]:
    """Wall time of each executed chapter of ``dataset`` (papermill's ``duration``), by notebook stem."""
    seconds = {}
    for stem in stems:
        nb = _page(Path(root), dataset, stem)
        duration = (nb.metadata.get("papermill") or {}).get("duration") if nb else None
        if isinstance(duration, (int, float)):
            seconds[stem] = float(duration)
    return seconds


def implant_line(root: str | Path, dataset: str = DATASET) -> str | None:
    """The implant check's line as chapter 2 printed it (``largest |backbone - retrofit| at implant: …``)."""
    nb = _page(Path(root), dataset, "02_retrofit")
    texts = [o.get("text", "") for c in (nb.cells if nb else []) for o in c.get("outputs", [])
             if o.get("output_type") == "stream"]
    return next((line.strip() for text in texts for line in text.splitlines() if _IMPLANT in line), None)


def chapters_text(seconds: Mapping[str, float], dataset: str = DATASET) -> str:
    """``In this book's run, ACDC's chapters 1–4 took 12 + 61 + 82 + 235 s (6.5 min).``"""
    if len(seconds) < 4:
        return PLACEHOLDER
    parts = " + ".join(f"{s:.0f}" for s in seconds.values())
    return (f"*In this book's run, {dataset_label(dataset)}'s chapters 1–4 took {parts} s "
            f"({sum(seconds.values()) / 60:.1f} min; each page says its time under its title).*\n")


def timings_text(root: str | Path, datasets: Sequence[str]) -> str:
    """How long this book's run took: chapters 1–4 per dataset and every executed page together.

    Args:
        root: the book root.
        datasets: the datasets whose pages the run may have executed.

    Returns:
        One italic sentence, or the placeholder when no dataset has all four chapters.
    """
    per_dataset = {d: chapter_seconds(root, d) for d in datasets}
    complete = {d: sum(s.values()) / 60 for d, s in per_dataset.items() if len(s) == len(CHAPTERS)}
    if not complete:
        return PLACEHOLDER
    later = sum(sum(chapter_seconds(root, d, LATER_CHAPTERS).values()) for d in datasets)
    total = sum(sum(s.values()) for s in per_dataset.values()) + later
    listed = ", ".join(f"{dataset_label(d)} {m:.1f}" for d, m in complete.items())
    return (f"*In this book's run (workshop profile), one dataset's notebooks 01–04 took {min(complete.values()):.1f}–"
            f"{max(complete.values()):.1f} min ({listed}); all executed pages {total / 60:.1f} min, of which the "
            f"ablation and stability pages {later / 60:.1f} min (they read the ablation plan's runs, which ran before "
            "them and are not counted here). Each page states its own time under its title.*\n")


def alpha_text(metrics: Mapping[str, Any], history: Sequence[Mapping[str, Any]], seconds: float | None) -> str:
    """α's movement in the full search (``alpha_max_prob``, ``alpha_uniform``, ``alpha_spread``) and its steps."""
    if metrics.get("alpha_max_prob") is None or not history:
        return PLACEHOLDER
    last = history[-1]
    took = f"; chapter 3 took {seconds:.0f} s" if seconds else ""
    return (f"*In this book's run (ACDC, full search): the chosen operations hold {metrics['alpha_max_prob']:.3f} "
            f"of their edge's probability on average against the uniform {metrics['alpha_uniform']:.3f} (spread "
            f"max − min per edge {metrics['alpha_spread']:.3f}), after {last.get('weight_steps', '–')} weight and "
            f"{last.get('arch_steps', '–')} architecture steps{took}.*\n")


def rounds_text(history: Sequence[Mapping[str, Any]]) -> str:
    """Seconds and players of the Shapley rounds of a pruned search, and the estimator that ran them."""
    rounds = [r for r in history if r.get("shapley")]
    if not rounds:
        return PLACEHOLDER
    seconds = [float(r.get("time_shapley_s") or 0.0) for r in rounds]
    players = [len(r["shapley"].get("players", [])) for r in rounds]
    estimator = rounds[0]["shapley"].get("estimator", "not recorded")
    span = f"{min(seconds):.1f}–{max(seconds):.1f} s" if len(seconds) > 1 else f"{seconds[0]:.1f} s"
    return (f"*In this book's run (ACDC): {len(rounds)} round(s) with the `{estimator}` estimator, {span} each, "
            f"valuing {' then '.join(map(str, players))} players.*\n")


def speed_snippet(run: Path, others: Sequence[tuple[str, float]]) -> str:
    """Chapter 4's cost sentence for ACDC, and the speed ratios of the other datasets' chapter 4."""
    from shapnas.plots.claims import speed_text

    text = speed_text(run)
    if text.startswith("Speed: not available"):
        return PLACEHOLDER
    rest = ", ".join(f"{name} {ratio:.2f}×" for name, ratio in others)
    return f"*In this book's ACDC run: {text}*" + (f" *The other datasets' chapter 4: {rest}.*" if rest else "") + "\n"


def intervals_text(records: Sequence[Mapping[str, Any]]) -> str:
    """Per dataset: the Shapley-pruned cell against the backbone, the interval and its reading, and the number
    of test patients it pairs."""
    from shapnas.experiments.intervals import interval_text, interval_verdict

    rows = [r for r in records if r.get("method") == "iac-shapley" and r.get("dice_vs_backbone")]
    if not rows:
        return PLACEHOLDER
    parts = [f"{r['dataset']} seed {r['seed']}: {interval_text(r['dice_vs_backbone'])}, "
             f"*{interval_verdict(r['dice_vs_backbone'])}*, over {r.get('test_patients', '–')} test patients"
             for r in rows]
    return "*In this book's run, the Shapley-pruned cell against the backbone:* " + "; ".join(parts) + ".\n"


def _guarded(make: Callable[[], str]) -> str:
    """A snippet, or the placeholder when what it reads is missing or incomplete."""
    try:
        return make()
    except (OSError, KeyError, ValueError, TypeError, IndexError):
        return PLACEHOLDER


def workshop_snippets(root: str | Path, results_root: str | Path, profile: str | None = None) -> dict[str, str]:
    """Every snippet of the workshop page, computed from the executed pages and the results folder.

    Args:
        root: the book root (its executed pages under ``book/datasets/``).
        results_root: the results folder of the run.
        profile: keep the evaluations of this profile.

    Returns:
        Snippet name (:data:`SNIPPETS`) -> Markdown (the placeholder where the run lacks the value).
    """
    from shapnas.config.names import DATASET_NAMES
    from shapnas.experiments.summary import collect_summary
    from shapnas.plots.results import speedups
    from shapnas.runs.files import load_json, read_jsonl, run_dir
    from shapnas.runs.identity import stage_name

    root, results_root = Path(root), Path(results_root)
    seconds = chapter_seconds(root)
    run = run_dir(results_root, DATASET, "basic_unet", 0)
    full, pruned = run / stage_name("search", "none"), run / stage_name("search", "shapley")

    def records() -> list[dict[str, Any]]:
        return collect_summary(results_root, profile)

    def others() -> list[tuple[str, float]]:
        speed = speedups(records())
        return [(str(r["dataset"]), float(r["speedup"])) for _, r in speed.iterrows() if r["dataset"] != DATASET]

    implant = implant_line(root)
    return {
        "chapters": chapters_text(seconds),
        "timings": timings_text(root, DATASET_NAMES),
        "ex1": (f"*In this book's run, ACDC's chapter 2 printed `{implant}` and took "
                f"{seconds.get('02_retrofit', float('nan')):.0f} s.*\n" if implant and "02_retrofit" in seconds
                else PLACEHOLDER),
        "ex2": _guarded(lambda: alpha_text(load_json(full / "metrics.json"), read_jsonl(full / "history.jsonl"),
                                           seconds.get("03_search"))),
        "ex3": _guarded(lambda: rounds_text(read_jsonl(pruned / "history.jsonl"))),
        "ex4": _guarded(lambda: speed_snippet(run, others())),
        "ex5": _guarded(lambda: intervals_text(records())),
    }


def write_workshop_snippets(root: str | Path, results_root: str | Path, profile: str | None = None) -> list[Path]:
    """Compute the snippets (:func:`workshop_snippets`) and write them where the workshop page includes them."""
    folder = snippet_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in workshop_snippets(root, results_root, profile).items():
        path = folder / f"{name}.md"
        path.write_text(text)
        written.append(path)
    return written


def ensure_workshop_snippets(root: str | Path) -> None:
    """Write the placeholder for every snippet no run has written (the workshop page includes them all)."""
    folder = snippet_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    for name in SNIPPETS:
        path = folder / f"{name}.md"
        if not path.exists():
            path.write_text(PLACEHOLDER)
