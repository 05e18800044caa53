"""Why is validation accuracy 3-5 points above test? Near-duplicates of training messages per split.

The pinned splits keep *identical* texts together, but spam comes in templates: the same message with
another phone number, prize or name. This script measures, for every validation and test message,
how close its nearest training message is (character 5-gram Jaccard similarity after lower-casing and
replacing every digit run with "0"), and how many messages have a near-copy (similarity >= 0.5 or
>= 0.8) in the training split, per split and label. If validation holds more near-copies of training
spam than test does, a model looks better on validation than it will on test.

    GPT_DATA_MIRROR=../shared/data python scripts/split_overlap.py     # writes results/split_overlap/summary.md and .json

Also compares how accurately the committed fine-tuning runs (results/finetune_2026-11-29/runs, the runs
results/split_overlap was made from) and the bag of words classify test messages with and without a near-copy in training.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpt.io.files import atomic_write_text  # noqa: E402
from gpt.sms import load_splits  # noqa: E402

THRESHOLDS = (0.5, 0.8)


def normalise(text: str) -> str:
    return re.sub(r"\d+", "0", " ".join(str(text).lower().split()))


def shingles(text: str, k: int = 5) -> set[str]:
    t = normalise(text)
    return {t[i : i + k] for i in range(max(1, len(t) - k + 1))}


def nearest_similarity(queries: list[str], pool: list[str]) -> np.ndarray:
    """For every query, the highest Jaccard similarity of its 5-gram set to any pool message's."""
    pool_sets = [shingles(t) for t in pool]
    index: dict[str, list[int]] = {}
    for j, s in enumerate(pool_sets):
        for g in s:
            index.setdefault(g, []).append(j)
    best = np.zeros(len(queries))
    for i, q in enumerate(queries):
        qs = shingles(q)
        counts: dict[int, int] = {}
        for g in qs:
            for j in index.get(g, ()):
                counts[j] = counts.get(j, 0) + 1
        for j, inter in counts.items():
            best[i] = max(best[i], inter / (len(qs) + len(pool_sets[j]) - inter))
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "results" / "split_overlap"))
    p.add_argument("--runs", default=str(ROOT / "results" / "finetune_2026-11-29" / "runs"), help="fine-tuning runs whose test predictions to split by near-copy")
    args = p.parse_args(argv)
    splits = load_splits()
    train = splits["train"]["text"].tolist()
    rows, sims = [], {}
    for name in ("val", "test", "test_natural"):
        df = splits[name]
        sims[name] = nearest_similarity(df["text"].tolist(), train)
        for label in ("spam", "ham"):
            s = sims[name][(df["label"] == label).to_numpy()]
            rows.append({"split": name, "label": label, "messages": int(len(s)), "median_nearest": float(np.median(s)),
                         **{f"share_at_least_{t}": float((s >= t).mean()) for t in THRESHOLDS}})
    # accuracy on test messages with / without a near-copy in train, per strategy (seeds pooled)
    truth = splits["test"]["label"].to_numpy()
    near = sims["test"] >= THRESHOLDS[0]
    acc_rows = []
    for path in sorted(Path(args.runs).glob("*_seed*.json")):
        doc = json.loads(path.read_text())
        pred = np.array(doc["metrics"]["test"]["predicted"])
        acc_rows.append({"strategy": doc["row"]["strategy"], "seed": doc["row"]["seed"],
                         "with_near_copy": float((pred[near] == truth[near]).mean()), "without": float((pred[~near] == truth[~near]).mean())})
    by_strategy = {}
    for r in acc_rows:
        by_strategy.setdefault(r["strategy"], []).append(r)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"command": "python scripts/split_overlap.py", "thresholds": THRESHOLDS, "rows": rows, "test_accuracy_by_near_copy": acc_rows,
           "test_messages_with_near_copy": int(near.sum())}
    atomic_write_text(out / "summary.json", json.dumps(doc, indent=1) + "\n")
    lines = [
        "# Near-copies of training messages in the validation and test splits",
        "",
        "Command: `GPT_DATA_MIRROR=../shared/data python scripts/split_overlap.py`. Similarity: character 5-gram Jaccard",
        "after lower-casing and replacing digit runs with 0; for each message, its most similar training message.",
        "",
        "| split | label | messages | median similarity to nearest train message | share ≥ 0.5 | share ≥ 0.8 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['split']} | {r['label']} | {r['messages']} | {r['median_nearest']:.2f} | "
                     f"{100 * r['share_at_least_0.5']:.1f} % | {100 * r['share_at_least_0.8']:.1f} % |")
    lines += ["", f"Balanced-test accuracy on the {int(near.sum())} test messages with a near-copy (≥ 0.5) in train and on the "
              f"{int((~near).sum())} without, seeds pooled (from `{Path(args.runs).relative_to(ROOT) if Path(args.runs).is_relative_to(ROOT) else args.runs}`):", "",
              "| strategy | with a near-copy | without |", "|---|---:|---:|"]
    for s, rs in by_strategy.items():
        lines.append(f"| {s} | {100 * np.mean([r['with_near_copy'] for r in rs]):.1f} % | {100 * np.mean([r['without'] for r in rs]):.1f} % |")
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
