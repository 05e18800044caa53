"""Comparing fine-tuning strategies with their uncertainty: intervals and paired verdicts.

Every run of ``python -m gpt finetune`` / ``experiment`` stores its prediction for every test message
(``<out>/runs/<strategy>_seed<seed>.json``, ``metrics[split]["predicted"]``, in the order of the
pinned split). With the split's true labels that gives, per strategy, a (seeds × messages) table of
right and wrong answers, from which :mod:`gpt.experiments.stats` computes

* the balanced-test accuracy and the natural-split spam F1 with 95 % bootstrap intervals (messages
  resampled, seeds pooled);
* paired comparisons on the same messages against the bag-of-words baseline and against full
  fine-tuning: the difference with its 95 % interval and the verdict "better", "worse" or "no
  detectable difference" (and McNemar's exact p-value for accuracy).

:func:`comparison_table` returns it as a DataFrame; :func:`comparison_markdown` as the section of
``summary.md`` that ``python -m gpt summarize`` (and the end of ``experiment``) writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..finetune_config import FinetuneConfig
from ..io.files import atomic_write_text
from .splits import kfold_splits
from .stats import accuracy_interval, bootstrap_interval, f1_interval, f1_of, paired_comparison, seed_paired_interval, verdict


__all__ = ["load_outcomes", "run_intervals", "comparison_table", "outcomes_table", "display_table", "prior_corrected", "comparison_markdown",
           "against_table", "against_markdown", "kfold_outcomes", "kfold_markdown", "write_kfold_summary", "ablation_table",
           "ablation_markdown", "display_ablation", "reproduction_table", "reproduction_markdown", "REFERENCES",
           "IDENTICAL", "SAME_WITHIN_NOISE", "DIFFERS", "NOT_RECIPE", "run_recipe", "recipe_difference"]

REFERENCES = ("baseline", "full")  # what every strategy is compared with
SPLITS = {"test": "balanced test", "test_natural": "natural test"}
POSITIVE = "spam"


def load_outcomes(out_dir: str | os.PathLike, splits: dict) -> dict:
    """``{strategy: {"seeds": [...], split: (seeds × messages) array of predicted label names,
    "natural_prob": (seeds × messages) spam probabilities on the natural split}}`` from the
    run files in ``<out_dir>/runs`` ("natural_prob" only for models trained with balanced classes, whose
    prior :func:`prior_corrected` can move: the balanced train split, or any with ``class_weight="balanced"``).
    ``splits`` (from :func:`gpt.sms.load_splits`) gives each split's
    length; a run whose predictions do not match it is skipped with a note in ``"skipped"``."""
    runs = sorted(Path(out_dir, "runs").glob("*_seed*.json"))
    found: dict = {}
    skipped = []
    for path in runs:
        doc = json.loads(path.read_text())
        row = doc.get("row", {})
        strategy, seed = row.get("strategy"), row.get("seed")
        preds = {}
        for split in SPLITS:
            p = doc.get("metrics", {}).get(split, {}).get("predicted")
            if p is None or len(p) != len(splits[split]):
                break
            preds[split] = p
        if strategy is None or len(preds) != len(SPLITS):
            skipped.append(path.name)
            continue
        entry = found.setdefault(strategy, {"seeds": [], "natural_prob": [], "balanced_training": True, **{s: [] for s in SPLITS}})
        entry["seeds"].append(seed)
        config = doc.get("config", {})  # trained on the natural distribution without class weights: its prior is not 0.5
        if config.get("train_split", "train") != "train" and config.get("class_weight") is None:
            entry["balanced_training"] = False
        for split in SPLITS:
            entry[split].append(preds[split])
        entry["natural_prob"].append(doc["metrics"]["test_natural"].get("spam_probability"))
    out = {}
    for s, e in found.items():
        out[s] = {"seeds": e["seeds"], **{k: np.array(e[k]) for k in SPLITS}}
        if e["balanced_training"] and all(p is not None and len(p) == len(splits["test_natural"]) for p in e["natural_prob"]):
            out[s]["natural_prob"] = np.array(e["natural_prob"], dtype=float)
    if skipped:
        out["skipped"] = skipped
    return out


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def signed_pct(x: float) -> str:
    return f"{100 * x:+.1f}"


def interval_text(r, key: str) -> str:
    """``r[key]`` in % with its 95 % interval (``key_low``, ``key_high``) in brackets."""
    return interval_of(r[key], r[key + "_low"], r[key + "_high"])


def interval_of(value: float, low: float, high: float) -> str:
    return f"{pct(value)} [{pct(low)}–{pct(high)}]"


def difference_text(r, key: str) -> str:
    """A paired comparison ``key`` as "verdict: +d (low to high)" in points; "–" where there is none."""
    v = r.get(key + "_verdict")
    if not isinstance(v, str):
        return "–"
    return f"{v}: {signed_pct(r[key])} ({signed_pct(r[key + '_low'])} to {signed_pct(r[key + '_high'])})"


def run_intervals(metrics: dict, splits: dict) -> dict:
    """The 95 % intervals of one run (a :class:`~gpt.finetune.FinetuneResult`'s ``metrics``, scored on
    ``splits``): ``{"accuracy": text, "natural_f1": text}`` as ``"96.0 [93.6–98.0]"`` (in %), for each
    of the balanced and natural test splits the run was scored on."""
    out = {}
    if "test" in metrics:
        correct = np.asarray(metrics["test"]["predicted"]) == np.asarray(splits["test"]["label"])
        out["accuracy"] = interval_of(*accuracy_interval(correct[None, :]))
    if "test_natural" in metrics:
        y = (np.asarray(splits["test_natural"]["label"]) == POSITIVE).astype(int)
        pred = (np.asarray(metrics["test_natural"]["predicted"]) == POSITIVE).astype(int)
        out["natural_f1"] = interval_of(*f1_interval(y, pred[None, :]))
    return out


def truth_labels(splits: dict) -> tuple[np.ndarray, np.ndarray]:
    """The balanced test split's label names, and the natural split's labels as 1 = spam."""
    return np.asarray(splits["test"]["label"]), (np.asarray(splits["test_natural"]["label"]) == POSITIVE).astype(int)


def comparison_table(out_dir: str | os.PathLike, splits: dict, order=None):
    """One row per strategy: accuracy and spam F1 with 95 % intervals, and the paired comparisons with
    :data:`REFERENCES` (differences in points, their intervals, verdicts)."""
    outcomes = load_outcomes(out_dir, splits)
    outcomes.pop("skipped", None)
    return outcomes_table(outcomes, *truth_labels(splits), order=order)


def outcomes_table(outcomes: dict, truth: np.ndarray, y_nat: np.ndarray, order=None, references=REFERENCES):
    """:func:`comparison_table` of outcomes already loaded (:func:`load_outcomes`, or the folds of a
    k-fold run pooled by :func:`kfold_outcomes`), with the balanced test's label names ``truth`` and
    the natural test's labels ``y_nat`` (1 = spam); each strategy paired with each of ``references``
    (columns ``acc_vs_<ref>...``, ``f1_vs_<ref>...``)."""

    strategies = sorted(outcomes, key=order) if order else list(outcomes)
    correct = {s: outcomes[s]["test"] == truth[None, :] for s in strategies}
    spam_pred = {s: (outcomes[s]["test_natural"] == POSITIVE).astype(int) for s in strategies}
    rows = []
    for s in strategies:
        acc, lo, hi = accuracy_interval(correct[s])
        f1, flo, fhi = f1_interval(y_nat, spam_pred[s])
        r = {"strategy": s, "seeds": len(outcomes[s]["seeds"]), "accuracy": acc, "accuracy_low": lo, "accuracy_high": hi,
             "natural_f1": f1, "natural_f1_low": flo, "natural_f1_high": fhi}
        for ref in references:
            if ref not in outcomes or ref == s:
                continue
            c = paired_comparison(correct[s], correct[ref])
            r.update({f"acc_vs_{ref}": c.difference, f"acc_vs_{ref}_low": c.low, f"acc_vs_{ref}_high": c.high,
                      f"acc_vs_{ref}_verdict": c.verdict, f"acc_vs_{ref}_mcnemar_p": c.mcnemar_p})
            d, dlo, dhi = _paired_f1(y_nat, spam_pred[s], spam_pred[ref])
            r.update({f"f1_vs_{ref}": d, f"f1_vs_{ref}_low": dlo, f"f1_vs_{ref}_high": dhi, f"f1_vs_{ref}_verdict": verdict(dlo, dhi)})
        if "natural_prob" in outcomes[s]:
            pri = prior_corrected(outcomes[s]["natural_prob"], y_nat.mean())
            r["natural_f1_prior"], r["natural_f1_prior_low"], r["natural_f1_prior_high"] = f1_interval(y_nat, pri)
            if "baseline" in outcomes and s != "baseline" and "natural_prob" in outcomes["baseline"]:
                d, dlo, dhi = _paired_f1(y_nat, pri, prior_corrected(outcomes["baseline"]["natural_prob"], y_nat.mean()))
                r.update({"f1prior_vs_baseline": d, "f1prior_vs_baseline_low": dlo, "f1prior_vs_baseline_high": dhi,
                          "f1prior_vs_baseline_verdict": verdict(dlo, dhi)})
        rows.append(r)
    return pd.DataFrame(rows)


def prior_corrected(spam_probability: np.ndarray, prior: float, train_prior: float = 0.5) -> np.ndarray:
    """Spam predictions (0/1) after Bayes' rule moves the decision to a deployment prior: a classifier
    trained on balanced data (``train_prior`` 0.5) says spam when its odds exceed 1; where only ``prior``
    of the messages are spam, the odds must exceed ``(train_prior/(1−train_prior)) / (prior/(1−prior))``."""
    p = np.clip(np.asarray(spam_probability, dtype=float), 1e-12, 1 - 1e-12)
    log_odds = np.log(p / (1 - p)) + np.log(prior / (1 - prior)) - np.log(train_prior / (1 - train_prior))
    return (log_odds > 0).astype(int)


def display_table(table):
    """:func:`comparison_table` as the notebooks show it: one row per strategy, values in %, intervals in
    brackets, each comparison as its verdict and difference in points."""
    return _display(table, {
        "balanced test accuracy % [95 % interval]": lambda r: interval_text(r, "accuracy"),
        "vs bag of words": lambda r: _versus(r, "acc_vs_baseline"),
        "vs full fine-tuning": lambda r: _versus(r, "acc_vs_full"),
        "natural spam F1 % [95 % interval]": lambda r: interval_text(r, "natural_f1"),
        "F1 vs bag of words": lambda r: _versus(r, "f1_vs_baseline"),
    }, list(table["strategy"]))


def _versus(r, key: str) -> str:
    """A paired comparison ``key`` as "verdict (+d)" in points; "–" where there is none."""
    v = r.get(key + "_verdict")
    return "–" if not isinstance(v, str) else f"{v} ({signed_pct(r[key])})"


def _display(table, columns: dict, index):
    """A DataFrame with one column per ``columns`` entry (name -> function of a row of ``table``)."""

    return pd.DataFrame({name: [f(r) for _, r in table.iterrows()] for name, f in columns.items()}, index=index)


def _paired_f1(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> tuple[float, float, float]:
    """Spam F1 of A minus that of B (each averaged over its seeds) and the bootstrap interval of the
    difference, the same messages drawn for both."""
    diff = f1_of(y, pred_a, 1) - f1_of(y, pred_b, 1)
    lo, hi = bootstrap_interval(len(y), lambda idx: f1_of(y[idx], pred_a[:, idx], 1) - f1_of(y[idx], pred_b[:, idx], 1))
    return diff, lo, hi


def comparison_markdown(out_dir: str | os.PathLike, splits: dict, order=None) -> str:
    """The "How sure are these numbers?" section of ``summary.md``."""
    t = comparison_table(out_dir, splits, order)
    share = float(np.mean(np.asarray(splits["test_natural"]["label"]) == POSITIVE))
    return _comparison_lines(t, len(splits["test"]), len(splits["test_natural"]), share, "## How sure are these numbers?")


POST_HOC = "This\nanalysis was added after seeing the natural-split results above: treat it as a hypothesis for new data, not a result."


def _comparison_lines(t, n_test: int, n_nat: int, share: float, title: str, prior_note: str = POST_HOC) -> str:
    if t.empty:
        return ""
    lines = [
        title,
        "",
        f"95 % bootstrap intervals over the test messages ({n_test:,} balanced, {n_nat:,} natural; 2,000 resamples,",
        "each strategy's seeds pooled), and paired comparisons on the same messages: the difference in points",
        "with its 95 % interval, \"better\" / \"worse\" only when that interval excludes 0. One balanced-test",
        f"message is {100 / n_test:.2f} points. (`python -m gpt summarize` rewrites this section; see `gpt/compare.py`.)",
        "",
        "| strategy | balanced test accuracy [95 % interval] | vs bag of words | vs full fine-tuning "
        "| natural spam F1 [95 % interval] | F1 vs bag of words | F1 vs full fine-tuning |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, r in t.iterrows():
        lines.append(
            f"| {r['strategy']} | {interval_text(r, 'accuracy')} | {difference_text(r, 'acc_vs_baseline')} | {difference_text(r, 'acc_vs_full')} "
            f"| {interval_text(r, 'natural_f1')} | {difference_text(r, 'f1_vs_baseline')} | {difference_text(r, 'f1_vs_full')} |"
        )
    if "acc_vs_baseline_mcnemar_p" in t:
        ps = [f"{r['strategy']} {r['acc_vs_baseline_mcnemar_p']:.2g}" for _, r in t.iterrows() if r["acc_vs_baseline_mcnemar_p"] == r["acc_vs_baseline_mcnemar_p"]]
        lines += ["", "McNemar's exact test on the balanced-test messages where exactly one of the two is right (majority "
                  "vote over seeds), p-value vs the bag of words: " + ", ".join(ps) + "."]
    if "natural_f1_prior" in t and t["natural_f1_prior"].notna().any():
        lines += ["", f"### The natural split with its own prior ({100 * share:.1f} % spam)", "",
                  "Every model was trained on balanced data, so it calls a message spam at odds above 1. Bayes' rule moves that",
                  f"threshold to the natural split's prior (`gpt.experiments.compare.prior_corrected`: odds above {(1 - share) / share:.2f}). {prior_note}", "",
                  "| strategy | natural spam F1, prior-corrected [95 % interval] | vs bag of words, both prior-corrected |", "|---|---|---|"]
        for _, r in t.iterrows():
            if r.get("natural_f1_prior") == r.get("natural_f1_prior"):
                lines.append(f"| {r['strategy']} | {interval_text(r, 'natural_f1_prior')} | {difference_text(r, 'f1prior_vs_baseline')} |")
    return "\n".join(lines) + "\n"


def against_table(out_dir: str | os.PathLike, other_dir: str | os.PathLike, splits: dict, order=None):
    """Each strategy of ``out_dir`` against the same strategy in ``other_dir`` (e.g. fine-tuned from another
    checkpoint), paired on the same messages: accuracy and spam-F1 differences, intervals, verdicts."""

    mine, theirs = load_outcomes(out_dir, splits), load_outcomes(other_dir, splits)
    mine.pop("skipped", None)
    theirs.pop("skipped", None)
    truth, y_nat = truth_labels(splits)
    common = [s for s in (sorted(mine, key=order) if order else mine) if s in theirs]
    rows = []
    for s in common:
        c = paired_comparison(mine[s]["test"] == truth[None, :], theirs[s]["test"] == truth[None, :])
        d, lo, hi = _paired_f1(y_nat, (mine[s]["test_natural"] == POSITIVE).astype(int), (theirs[s]["test_natural"] == POSITIVE).astype(int))
        rows.append({"strategy": s, "acc": c.difference, "acc_low": c.low, "acc_high": c.high, "acc_verdict": c.verdict,
                     "acc_mcnemar_p": c.mcnemar_p, "f1": d, "f1_low": lo, "f1_high": hi, "f1_verdict": verdict(lo, hi)})
    return pd.DataFrame(rows)


def against_markdown(out_dir: str | os.PathLike, other_dir: str | os.PathLike, splits: dict, order=None) -> str:
    """The "against <other_dir>" section of ``summary.md`` (``python -m gpt summarize --against DIR``)."""
    t = against_table(out_dir, other_dir, splits, order)
    if t.empty:
        return ""
    lines = [
        f"## Against the same strategies in `{other_dir}`",
        "",
        "Paired on the same test messages (seeds pooled): the difference in points, its 95 % bootstrap interval, and the verdict.",
        "",
    ]
    rows = [[r["strategy"], difference_text(r, "acc"), difference_text(r, "f1"), f"{r['acc_mcnemar_p']:.2g}"] for _, r in t.iterrows()]
    return "\n".join(lines + markdown_table(["strategy", "balanced test accuracy", "natural spam F1", "McNemar p (accuracy)"], rows)) + "\n"


# ---------------------------------------------------------------------------------------------
# Reproduction: a rerun of an experiment against the committed one

IDENTICAL = "identical"
SAME_WITHIN_NOISE = "same within noise"
DIFFERS = "differs"
# What may differ between a rerun and the committed run of the same recipe: the seed is paired
# explicitly, device / precision ("auto") are the machine's, not the recipe's, and padding and the
# attention implementation change how the same numbers are computed (rounding), not what is learned.
NOT_RECIPE = ("seed", "device", "precision", "pad_to_multiple_of", "attn_impl")


def run_recipe(config: dict, checkpoint_sha256: str | None) -> dict:
    """What a run learned from, as a dict: its :class:`~gpt.finetune.FinetuneConfig` (``config``, as a run
    file stores it) without the fields of :data:`NOT_RECIPE`, and the base model's sha256. A field that
    runs made before it existed lack has its default (what those runs used). Two runs of the same
    recipe differ only by seed and rounding: they may share a label and be averaged."""
    defaults = {f.name: f.default for f in dataclasses.fields(FinetuneConfig) if f.default is not dataclasses.MISSING}
    defaults = json.loads(json.dumps(defaults))  # as a run file stores them (tuples as lists)
    recipe = {k: v for k, v in {**defaults, **json.loads(json.dumps(config))}.items() if k not in NOT_RECIPE}
    recipe["checkpoint_sha256"] = checkpoint_sha256 or None  # the base model is part of the recipe
    return recipe


def _recipes(out_dir: str | os.PathLike) -> dict:
    """``{strategy: (the recipe of its runs (:func:`run_recipe`), the precisions it trained in)}``."""
    found: dict = {}
    for path in sorted(Path(out_dir, "runs").glob("*_seed*.json")):
        doc = json.loads(path.read_text())
        strategy = doc.get("row", {}).get("strategy")
        if strategy is None:
            continue
        recipe = run_recipe(doc.get("config", {}), doc.get("row", {}).get("checkpoint_sha256"))
        entry = found.setdefault(strategy, (recipe, set()))
        entry[1].add(doc.get("precision") or doc.get("row", {}).get("precision"))
    return found


def recipe_difference(a: dict, b: dict) -> str:
    """"" when two recipes are the same, else the first differing fields as "epochs 1 vs 5"."""
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    shown = [f"{k} {str(a.get(k))[:12]!r} vs {str(b.get(k))[:12]!r}" if k == "checkpoint_sha256" else f"{k} {a.get(k)!r} vs {b.get(k)!r}"
             for k in keys[:3]]
    return ", ".join(shown) + (" ..." if len(keys) > 3 else "")


def reproduction_table(out_dir: str | os.PathLike, reference_dir: str | os.PathLike, splits: dict, order=None):
    """Each strategy of ``out_dir`` (a rerun) against the same strategy in ``reference_dir`` (the committed
    results), on the same test messages. One verdict per strategy:

    * :data:`IDENTICAL` -- for every seed both have, the same prediction for every message of both test splits;
    * :data:`SAME_WITHIN_NOISE` -- paired on the same messages (the seeds both have, else all seeds pooled),
      neither the balanced-test accuracy nor the natural-split spam F1 differs detectably (their 95 %
      bootstrap intervals of the difference include 0);
    * :data:`DIFFERS` -- one of them does (the interval is in the row);
    * ``"other recipe"`` / ``"not in the committed results"`` -- nothing to pair with.

    With two or more paired seeds, a row that is not identical also gets the seed-level view
    (``seed_acc*``, ``seed_f1*``): the t-interval of the mean per-seed difference
    (:func:`gpt.experiments.stats.seed_paired_interval`). The message bootstrap asks whether these runs predict
    differently; after any change in rounding, a seed's two runs drift apart as two seeds do, so it can
    say "differs" by chance. The seed-level interval asks whether the expected accuracy moved.
    """

    mine, theirs = load_outcomes(out_dir, splits), load_outcomes(reference_dir, splits)
    mine.pop("skipped", None)
    theirs.pop("skipped", None)
    recipes, reference_recipes = _recipes(out_dir), _recipes(reference_dir)
    truth, y_nat = truth_labels(splits)
    rows = []
    for s in sorted(mine, key=order) if order else list(mine):
        m = mine[s]
        r = {"strategy": s, "seeds": " ".join(map(str, m["seeds"])), "precision": "/".join(sorted(map(str, recipes[s][1]))),
             "accuracy": float(np.mean(m["test"] == truth[None, :])),
             "natural_f1": f1_of(y_nat, (m["test_natural"] == POSITIVE).astype(int), 1)}
        rows.append(r)
        if s not in theirs:
            r["verdict"] = "not in the committed results"
            continue
        t = theirs[s]
        r.update(reference_seeds=" ".join(map(str, t["seeds"])), reference_precision="/".join(sorted(map(str, reference_recipes[s][1]))),
                 reference_accuracy=float(np.mean(t["test"] == truth[None, :])),
                 reference_natural_f1=f1_of(y_nat, (t["test_natural"] == POSITIVE).astype(int), 1))
        other = recipe_difference(recipes[s][0], reference_recipes[s][0])
        if other:
            r["verdict"], r["note"] = "other recipe", other
            continue
        common = [x for x in m["seeds"] if x in t["seeds"]]
        if common:  # pair seed with seed
            a = {k: m[k][[m["seeds"].index(x) for x in common]] for k in SPLITS}
            b = {k: t[k][[t["seeds"].index(x) for x in common]] for k in SPLITS}
        else:
            a, b = {k: m[k] for k in SPLITS}, {k: t[k] for k in SPLITS}
        if common and all(np.array_equal(a[k], b[k]) for k in SPLITS):
            r["verdict"] = IDENTICAL
            continue
        c = paired_comparison(a["test"] == truth[None, :], b["test"] == truth[None, :])
        d, lo, hi = _paired_f1(y_nat, (a["test_natural"] == POSITIVE).astype(int), (b["test_natural"] == POSITIVE).astype(int))
        r.update(acc=c.difference, acc_low=c.low, acc_high=c.high, acc_verdict=c.verdict,
                 f1=d, f1_low=lo, f1_high=hi, f1_verdict=verdict(lo, hi), paired_seeds=" ".join(map(str, common)) or "pooled")
        quiet = c.verdict == verdict(0.0, 0.0) and verdict(lo, hi) == verdict(0.0, 0.0)
        r["verdict"] = SAME_WITHIN_NOISE if quiet else DIFFERS
        if len(common) >= 2:
            r.update(_seed_level(a, b, truth, y_nat))
    return pd.DataFrame(rows)


def _seed_level(a: dict, b: dict, truth: np.ndarray, y_nat: np.ndarray) -> dict:
    """Per-seed differences of accuracy and natural spam F1, A − B (fractions, like ``acc``), and their t-intervals."""
    def per_seed(x):
        acc = (x["test"] == truth[None, :]).mean(axis=1)
        f1 = [f1_of(y_nat, (row == POSITIVE).astype(int), 1) for row in x["test_natural"]]
        return acc, np.asarray(f1)

    (acc_a, f1_a), (acc_b, f1_b) = per_seed(a), per_seed(b)
    out = {}
    for key, d in (("seed_acc", acc_a - acc_b), ("seed_f1", f1_a - f1_b)):
        out[key], out[key + "_low"], out[key + "_high"] = seed_paired_interval(d)
    return out


def reproduction_markdown(table, reference_dir: str | os.PathLike) -> str:
    """:func:`reproduction_table` as the markdown table the main job prints at its end."""
    if table.empty:
        return ""
    lines = [
        f"| strategy | seeds | balanced test accuracy %: this run / `{reference_dir}` | natural spam F1 %: this run / committed | verdict |",
        "|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        ref = isinstance(r.get("reference_seeds"), str)
        acc = f"{pct(r['accuracy'])} / {pct(r['reference_accuracy'])}" if ref else pct(r["accuracy"])
        f1 = f"{pct(r['natural_f1'])} / {pct(r['reference_natural_f1'])}" if ref else pct(r["natural_f1"])
        v = r["verdict"]
        if v in (SAME_WITHIN_NOISE, DIFFERS):
            v += (f": accuracy {signed_pct(r['acc'])} ({signed_pct(r['acc_low'])} to {signed_pct(r['acc_high'])}), "
                  f"F1 {signed_pct(r['f1'])} ({signed_pct(r['f1_low'])} to {signed_pct(r['f1_high'])}) points")
        elif v == "other recipe":
            v += f" ({r['note']})"
        if isinstance(r.get("seed_acc"), float) and not np.isnan(r["seed_acc"]):
            v += (f"; over the {len(r['paired_seeds'].split())} seeds: accuracy {signed_pct(r['seed_acc'])} "
                  f"({signed_pct(r['seed_acc_low'])} to {signed_pct(r['seed_acc_high'])}), F1 {signed_pct(r['seed_f1'])} "
                  f"({signed_pct(r['seed_f1_low'])} to {signed_pct(r['seed_f1_high'])})")
        lines.append(f"| {r['strategy']} | {r['seeds']} | {acc} | {f1} | {v} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# k-fold: every message of the collection tested once


def kfold_outcomes(out_dir: str | os.PathLike, folds: int) -> tuple[dict, np.ndarray, np.ndarray, dict]:
    """The outcomes of ``<out_dir>/fold<i>/`` (i < ``folds``, each scored on its own fold's splits from
    :func:`gpt.experiments.splits.kfold_splits`) pooled along the messages: ``(outcomes, truth, y_nat, sizes)``.

    A strategy is pooled only when every fold holds it with the same seeds (else it is left out and
    named in ``sizes["incomplete"]``); ``sizes`` also counts the pooled balanced and natural messages."""

    per_fold, truths, nats = [], [], []
    for i in range(folds):
        splits = kfold_splits(folds, i)
        o = load_outcomes(Path(out_dir) / f"fold{i}", splits)
        o.pop("skipped", None)
        per_fold.append(o)
        t, y = truth_labels(splits)
        truths.append(t)
        nats.append(y)
    names = set().union(*per_fold)
    complete = sorted(s for s in names if all(s in o and o[s]["seeds"] == per_fold[0][s]["seeds"] for o in per_fold))
    pooled = {}
    for s in complete:
        pooled[s] = {"seeds": per_fold[0][s]["seeds"], **{k: np.concatenate([o[s][k] for o in per_fold], axis=1) for k in SPLITS}}
        if all("natural_prob" in o[s] for o in per_fold):
            pooled[s]["natural_prob"] = np.concatenate([o[s]["natural_prob"] for o in per_fold], axis=1)
    truth, y_nat = np.concatenate(truths), np.concatenate(nats)
    return pooled, truth, y_nat, {"test": len(truth), "test_natural": len(y_nat), "incomplete": sorted(names - set(complete))}


def kfold_markdown(out_dir: str | os.PathLike, folds: int, order=None) -> str:
    """``<out_dir>/summary.md`` of a k-fold experiment: the pooled intervals and paired verdicts."""
    outcomes, truth, y_nat, sizes = kfold_outcomes(out_dir, folds)
    t = outcomes_table(outcomes, truth, y_nat, order)
    head = [
        f"# {folds}-fold experiment: every message tested once", "",
        f"Each strategy was fine-tuned {folds} times per seed, once per fold of `gpt.experiments.splits.kfold_splits({folds}, i)` "
        f"(results in `fold0/` … `fold{folds - 1}/`, each with its own `summary.md`): on the balanced set of the other folds,",
        "tested on its own fold. Pooled over the folds, every spam message and as many ham messages form the balanced test,",
        f"and every message of the collection the natural test ({sizes['test']:,} and {sizes['test_natural']:,} messages). "
        "(`python -m gpt summarize --out DIR` rewrites this file.)", "",
    ]
    if sizes["incomplete"]:
        head += [f"Not pooled (missing from a fold, or other seeds): {', '.join(sizes['incomplete'])}.", ""]
    note = ("The idea\ncame from the pinned splits' results (whose 1,119 natural test messages are among these); here it is tested on every message.")
    body = _comparison_lines(t, sizes["test"], sizes["test_natural"], float(y_nat.mean()), "## Pooled over the folds", note)
    return "\n".join(head) + "\n" + body


def write_kfold_summary(out_dir: str | os.PathLike, folds: int, order=None) -> Path:
    """Write :func:`kfold_markdown` to ``<out_dir>/summary.md`` (atomically); returns its path."""

    return atomic_write_text(Path(out_dir) / "summary.md", kfold_markdown(out_dir, folds, order))


# ---------------------------------------------------------------------------------------------
# One ablation table: which change moved what


def ablation_table(reference_dir: str | os.PathLike, changes: dict, splits: dict, strategies=("full", "lora-r8", "baseline")):
    """One row per (change, strategy): the accuracy and spam F1 of ``changes[name]`` (a results folder,
    scored on the same pinned ``splits``) with their 95 % intervals, and each paired with the same
    strategy in ``reference_dir`` (the difference in points, its interval, the verdict). The reference
    recipe itself is the first row group (``"reference"``). Strategies a folder lacks are left out."""

    rows = []
    for name, folder in {"reference": reference_dir, **changes}.items():
        table = comparison_table(folder, splits).set_index("strategy")
        paired = against_table(folder, reference_dir, splits).set_index("strategy") if name != "reference" else None
        for s in strategies:
            if s not in table.index:
                continue
            r = table.loc[s]
            row = {"change": name, "strategy": s, "seeds": int(r["seeds"]), **{k: r[k] for k in (
                "accuracy", "accuracy_low", "accuracy_high", "natural_f1", "natural_f1_low", "natural_f1_high")}}
            if paired is not None and s in paired.index:
                p = paired.loc[s]
                row.update({f"{k}_vs_reference{suffix}": p[k + suffix] for k in ("acc", "f1") for suffix in ("", "_low", "_high", "_verdict")})
            rows.append(row)
    return pd.DataFrame(rows)


def display_ablation(table):
    """:func:`ablation_table` (or its saved ``ablation.csv``) as the notebooks show it: values in %,
    intervals in brackets, each pairing with the reference recipe as its verdict and difference in points."""

    return _display(table, {
        "balanced test accuracy % [95 % interval]": lambda r: interval_text(r, "accuracy"),
        "vs reference recipe": lambda r: _versus(r, "acc_vs_reference"),
        "natural spam F1 % [95 % interval]": lambda r: interval_text(r, "natural_f1"),
        "F1 vs reference recipe": lambda r: _versus(r, "f1_vs_reference"),
    }, pd.MultiIndex.from_arrays([table["change"], table["strategy"]], names=["change", "strategy"]))


def markdown_table(columns: list[str], rows) -> list[str]:
    """The lines of a markdown table: the header, the separator, one line per row (a list of cells)."""
    return [f"| {' | '.join(columns)} |", "|" + "---|" * len(columns)] + [f"| {' | '.join(str(c) for c in row)} |" for row in rows]


def paired_cells(r, versus: str) -> str:
    """A row's balanced accuracy and natural spam F1, each with its 95 % interval and its paired difference
    with ``versus`` (columns ``acc_vs_<versus>...``, ``f1_vs_<versus>...``), as four markdown cells."""
    return (f"{interval_text(r, 'accuracy')} | {difference_text(r, f'acc_vs_{versus}')} | {interval_text(r, 'natural_f1')} "
            f"| {difference_text(r, f'f1_vs_{versus}')}")


def ablation_markdown(table, descriptions: dict | None = None) -> str:
    """:func:`ablation_table` as a markdown table (``descriptions`` maps a change to its one-line text)."""
    descriptions = descriptions or {}
    lines = [
        "| change | strategy | seeds | balanced test accuracy [95 % interval] | vs the reference recipe | natural spam F1 [95 % interval] | vs the reference recipe |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        lines.append(f"| {descriptions.get(r['change'], r['change'])} | {r['strategy']} | {r['seeds']} | {paired_cells(r, 'reference')} |")
    return "\n".join(lines) + "\n"
