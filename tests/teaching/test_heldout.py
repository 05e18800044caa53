"""The held-out solutions (tests/teaching/heldout/): every correct one passes its exercise's hidden
check, every wrong one fails it. In-process: probe() on the variant in a copy of the notebook's needed
setup cells, then check() on its JSON result (see heldout_runner.py and heldout/README.md)."""

from __future__ import annotations

import collections

import pytest

from heldout_runner import Notebook, run_variant, variants

VARIANTS = variants()
BY_NOTEBOOK = collections.defaultdict(list)
for _v in VARIANTS:
    BY_NOTEBOOK[_v.exercise[:2]].append(_v)


def test_the_held_out_set_is_large_enough():
    counts = collections.Counter(v.expect for v in VARIANTS)
    assert counts["correct"] >= 30 and counts["wrong"] >= 30, f"at least 30 correct and 30 wrong solutions, got {dict(counts)}"


@pytest.mark.parametrize("number", sorted(BY_NOTEBOOK))
def test_correct_pass_and_wrong_fail(number, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = Notebook(number)
    problems = []
    for exercise, code in notebook.solution.items():  # the teacher's own solution is correct too
        try:
            run_variant(notebook, exercise, code)
        except Exception as e:  # noqa: BLE001 - any failure of a correct solution is the finding
            problems.append(f"{exercise} (the notebook's solution) was rejected: {type(e).__name__}: {str(e)[:300]}")
    for v in sorted(BY_NOTEBOOK[number], key=lambda v: v.path.name):
        try:
            run_variant(notebook, v.exercise, v.code)
        except Exception as e:  # noqa: BLE001
            if v.expect == "correct":
                problems.append(f"{v.path.name} ({v.why}) was rejected: {type(e).__name__}: {str(e)[:300]}")
        else:
            if v.expect == "wrong":
                problems.append(f"{v.path.name} ({v.why}) was accepted")
    assert not problems, "\n".join(problems)
