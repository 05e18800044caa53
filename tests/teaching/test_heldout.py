"""The held-out answers (tests/teaching/heldout/) through the real grader: every correct one scores full
points, every wrong one 0, and every one that calls the package's own version ("package" in its file
name) is stopped by the FORBIDDEN tripwire.

The answers are packed into few submissions, so the sandbox runs stay few: submission k of notebook NN
is its handout (notebooks/NN_name.ipynb) with variant k of every exercise that has one pasted into the
exercise's solution cell (the others stay blank). One ``grading.grade`` run (two at a time, isolated)
grades them all; the assertions read its grades_details.csv. That the solved notebooks' own solution
cells score full is test_classroom_course.py's.
"""

from __future__ import annotations

import collections
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from gpt.io.downloads import fetch
from gpt.teaching import grading, sandbox
from gpt.teaching.course import course_root

HELDOUT = Path(__file__).resolve().parent / "heldout"
TRIPWIRE = re.compile(r"the exercise asks you to write \S+ yourself; calling the package's \S+ scores 0")


@dataclass(frozen=True)
class Variant:
    path: Path
    exercise: str  # "06.2"
    expect: str  # "correct" or "wrong"
    why: str
    code: str

    @property
    def grade_id(self) -> str:
        return "ex" + self.exercise.replace(".", "_")


def read_variant(path: Path) -> Variant:
    """A variant file: header lines ``# exercise: 06.2``, ``# expect: correct|wrong``, ``# why: ...``, then the solution cell."""
    meta, text = {}, path.read_text(encoding="utf-8")
    for line in text.splitlines():
        if not line.startswith("# ") or ":" not in line:
            break
        key, _, value = line[2:].partition(":")
        meta[key.strip()] = value.strip()
    if meta.get("expect") not in ("correct", "wrong") or not re.fullmatch(r"\d\d\.\d+", meta.get("exercise", "")):
        raise ValueError(f"{path.name}: the header needs '# exercise: NN.k' and '# expect: correct' or '# expect: wrong'")
    return Variant(path, meta["exercise"], meta["expect"], meta.get("why", ""), text)


VARIANTS = [read_variant(p) for p in sorted(HELDOUT.glob("*.py"))]
BY_NOTEBOOK = collections.defaultdict(list)
for _v in VARIANTS:
    BY_NOTEBOOK[_v.exercise[:2]].append(_v)


def test_the_held_out_set_is_large_enough():
    counts = collections.Counter(v.expect for v in VARIANTS)
    assert counts["correct"] >= 30 and counts["wrong"] >= 30, f"at least 30 correct and 30 wrong solutions, got {dict(counts)}"


def packed(variants: list[Variant]) -> list[dict[str, Variant]]:
    """Submission k: grade_id -> variant k of each exercise that has a k-th variant."""
    per_exercise = collections.defaultdict(list)
    for v in variants:
        per_exercise[v.grade_id].append(v)
    return [{gid: vs[k] for gid, vs in per_exercise.items() if k < len(vs)}
            for k in range(max(map(len, per_exercise.values())))]


def submission(handout: dict, answers: dict[str, Variant]) -> dict:
    nb = json.loads(json.dumps(handout))
    pasted = set()
    for cell in nb["cells"]:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
        if gid in answers:
            cell["source"] = answers[gid].code
            pasted.add(gid)
    assert pasted == set(answers), f"the handout has no solution cell {sorted(set(answers) - pasted)}"
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    if os.environ.get("GPT_PROFILE") != "ci":
        pytest.skip("grades every notebook: run with GPT_PROFILE=ci (scripts/test.sh does)")
    if sandbox.isolation_problem():
        pytest.skip(f"the grader's sandbox is unavailable here: {sandbox.isolation_problem()}")
    fetch("the_verdict", progress=False)  # the sandbox reads the data cache but cannot write it: fill it here
    subs = tmp_path_factory.mktemp("heldout") / "subs"
    source = grading.default_source()
    placed = {}  # (student, notebook stem, exercise) -> variant
    for number, variants in sorted(BY_NOTEBOOK.items()):
        solved = next(source.glob(f"{number}_*.ipynb"))
        handout = json.loads((course_root() / "notebooks" / solved.name).read_text(encoding="utf-8"))
        for k, answers in enumerate(packed(variants)):
            folder = subs / f"v{k}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / solved.name).write_text(json.dumps(submission(handout, answers)), encoding="utf-8")
            placed.update({(folder.name, solved.stem, v.exercise): v for v in answers.values()})
    start = time.perf_counter()
    # time limits far above a CI-profile notebook's needs: a busy machine must not turn an answer into a "timed out"
    grading.grade(subs, source, options=grading.Options(jobs=2, cell_timeout=1800, notebook_timeout=7200),
                  print_fn=lambda *a: None)
    print(f"graded {len(list(subs.rglob('*.ipynb')))} submissions in {time.perf_counter() - start:.0f} s")
    details = pd.read_csv(subs / "grades_details.csv", dtype={"exercise": str}).fillna("")
    rows = {(r.student, r.notebook, r.exercise): r for r in details.itertuples()}
    return {key: (v, rows[key]) for key, v in placed.items()}


def _problem(v: Variant, row) -> str:
    if v.expect == "correct" and row.points != row.max_points:
        return f"{v.path.name} ({v.why}) was rejected: {row.reason}"
    if v.expect == "wrong" and row.points != 0:
        return f"{v.path.name} ({v.why}) was accepted"
    if "package" in v.path.stem and not TRIPWIRE.fullmatch(row.reason):
        return f"{v.path.name} ({v.why}) was not stopped by the tripwire: {row.reason}"
    return ""


@pytest.mark.parametrize("number", sorted(BY_NOTEBOOK))
def test_correct_answers_score_full_and_wrong_ones_zero(graded, number):
    results = [(v, row) for (_, _, exercise), (v, row) in graded.items() if exercise[:2] == number]
    assert len(results) == len(BY_NOTEBOOK[number])
    problems = [p for p in (_problem(v, row) for v, row in sorted(results, key=lambda x: x[0].path.name)) if p]
    assert not problems, "\n".join(problems)
