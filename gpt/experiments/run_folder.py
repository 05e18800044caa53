"""A run folder of the main job (``python -m gpt experiment`` without ``--out``): its plan, resuming
it, the progress lines, and the comparison with the committed results at its end.

* :func:`experiment_plan` -- what an experiment runs, as plain data; :func:`write_plan` records it in
  ``<folder>/experiment.json`` with the machine, the commit and whether the run finished.
* :func:`default_run_folder` -- the unfinished folder of the same plan under ``runs/experiment/`` (to
  resume), or a new ``runs/experiment/<date>-<time>/``.
* :class:`Progress` -- runs done of the total, an ETA, one line per finished run.
* :func:`print_comparison` -- the folder's results beside the committed ones, one verdict per strategy
  (:func:`gpt.experiments.compare.reproduction_table`), printed and written to ``<folder>/comparison.md``.

:mod:`gpt.experiments.runner` runs the experiment itself.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from ..io.files import atomic_write_text, display_path
from ..teaching.reference import environment_record
from .compare import reproduction_markdown, reproduction_table
from .results import strategy_order
from .splits import run_splits


__all__ = ["RUNS_ROOT", "PLAN_FILE", "experiment_plan", "default_run_folder", "write_plan", "Progress", "clock",
           "finished_row", "print_comparison", "splits_of"]

RUNS_ROOT = Path("runs")  # the main job's run folders (ignored by git): runs/experiment/<date>-<time>/
PLAN_FILE = "experiment.json"  # in a run folder: the plan it runs, the machine, and whether it finished


PLAN_SETTINGS = {"epochs": None, "device": "cpu", "train_split": None, "class_weight": None, "fold": None, "folds": 5, "kfold": None,
                 "base": "", "precision": "auto"}  # an experiment's shared settings, and their defaults


def experiment_plan(runs, seeds, checkpoint_sha256: str, **settings) -> dict:
    """What an experiment runs, as plain data: a run folder records it (``experiment.json``), and a
    later ``experiment`` without ``--out`` resumes the unfinished folder whose plan is the same.
    ``runs``: ``(label, FinetuneConfig overrides)``; ``settings``: those of :data:`PLAN_SETTINGS` that differ."""
    unknown = set(settings) - set(PLAN_SETTINGS)
    if unknown:
        raise TypeError(f"experiment_plan: unknown settings {sorted(unknown)}")
    return {"runs": [[label, {k: list(v) if isinstance(v, tuple) else v for k, v in dict(o).items()}] for label, o in runs],
            "seeds": list(seeds), "checkpoint_sha256": checkpoint_sha256, **PLAN_SETTINGS, **settings}


def default_run_folder(plan: dict, root: str | Path = RUNS_ROOT / "experiment") -> tuple[Path, bool]:
    """``(folder, resumed)``: the newest unfinished run folder under ``root`` whose plan is ``plan``, or a
    new ``root/<date>-<time>/`` (never one that exists)."""
    root = Path(root)
    if root.is_dir():
        for folder in sorted((d for d in root.iterdir() if (d / PLAN_FILE).is_file()), reverse=True):
            try:
                doc = json.loads((folder / PLAN_FILE).read_text())
            except (OSError, ValueError):
                continue
            if doc.get("plan") == plan and not doc.get("finished"):
                return folder, True
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    folder, n = root / stamp, 1
    while folder.exists():
        n += 1
        folder = root / f"{stamp}-{n}"
    return folder, False


def write_plan(out: Path, plan: dict, command: str, finished: bool = False) -> None:
    path = out / PLAN_FILE
    doc = json.loads(path.read_text()) if path.is_file() else {}
    precision = None if plan.get("precision", "auto") == "auto" else plan["precision"]
    doc.update(plan=plan, command=command, environment=environment_record(precision),
               started=doc.get("started") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) if finished else None)
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


class Progress:
    """Runs done of the total, the time so far, an ETA, and one line per finished run.

    The ETA scales the committed runs' times (``wall_seconds`` per configuration in ``reference``'s
    results.csv, where there is one) by how fast this machine has been so far; else it assumes the
    mean time of the runs done."""

    def __init__(self, todo: list, total: int, reference: Path | None):
        self.todo, self.total, self.done = todo, total, total - len(todo)
        self.t0 = time.perf_counter()
        self.spent = self.expected_spent = 0.0
        self.finished_here = 0
        self.expected = {}
        if reference is not None and (reference / "results.csv").is_file():
            t = pd.read_csv(reference / "results.csv")
            self.expected = {s: float(g["wall_seconds"].mean()) + 5.0 for s, g in t.groupby("strategy")}  # + starting Python

    def start(self, label: str, seed: int) -> None:
        print(f"\n[{self.done + 1}/{self.total}] {label}, seed {seed}  ({clock(time.perf_counter() - self.t0)} so far)", flush=True)

    def finish(self, label: str, seed: int, seconds: float, row: dict | None) -> None:
        self.done += 1
        self.finished_here += 1
        self.spent += seconds
        self.expected_spent += self.expected.get(label, seconds)
        self.todo = self.todo[1:]
        what = "" if row is None else (f": balanced test accuracy {100 * row['test_accuracy']:.1f} %, natural spam F1 "
                                       f"{100 * row['natural_f1']:.1f} %, best epoch {row['best_epoch']}")
        print(f"[{self.done}/{self.total} done] {label} seed {seed}{what}; {seconds:.0f} s; "
              f"{clock(time.perf_counter() - self.t0)} so far, ETA {clock(self.eta())}", flush=True)

    def eta(self) -> float:
        if not self.todo:
            return 0.0
        mean = self.spent / max(1, self.finished_here)
        speed = self.spent / self.expected_spent if self.expected_spent else 1.0
        return sum(self.expected[label] * speed if label in self.expected else mean for label, _, _ in self.todo)


def clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def finished_row(out: Path, label: str, seed: int) -> dict | None:
    path = out / "runs" / f"{label}_seed{seed}.json"
    try:
        return json.loads(path.read_text())["row"]
    except (OSError, ValueError, KeyError):
        return None


def print_comparison(out: str | Path, reference: str | Path) -> str:
    """Print (and write to ``<out>/comparison.md``) the results of ``out`` beside those of ``reference``,
    one verdict per strategy (:func:`gpt.experiments.compare.reproduction_table`); returns the markdown."""
    out, reference = Path(out), Path(reference)
    table = reproduction_table(out, reference, splits_of(out), order=strategy_order)
    body = reproduction_markdown(table, display_path(reference))
    mine = json.loads((out / PLAN_FILE).read_text()).get("environment", {}) if (out / PLAN_FILE).is_file() else environment_record()
    text = (f"## This run against `{display_path(reference)}`\n\nThis run: {mine.get('machine', '?')}, training precision "
            f"{mine.get('precision', '?')}, commit {str(mine.get('commit', '?'))[:12]}. Identical: the same prediction for "
            "every test message; same within noise: paired on the same messages, no detectable difference in balanced "
            "accuracy or natural spam F1 (95 % bootstrap intervals of the difference include 0); differs: one of them "
            "excludes 0. (`gpt.experiments.compare.reproduction_table`)\n\n" + body)
    atomic_write_text(out / "comparison.md", text)
    print("\n" + text, flush=True)
    return text


def splits_of(out: Path) -> dict:
    """The splits the runs in ``out`` were scored on: the pinned ones, or the fold their config names."""

    runs = sorted((out / "runs").glob("*_seed*.json"))
    config = json.loads(runs[0].read_text()).get("config", {}) if runs else {}
    return run_splits(fold=config.get("fold"), folds=config.get("folds", 5))
