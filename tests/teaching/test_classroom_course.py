"""The three grading properties on the course's own notebooks (gpt.teaching.grading, CI profile).

One `classroom grade` run over three submissions of every notebook:
* "solutions": the solved notebooks (notebooks/solutions/, hidden tests in) score full marks;
* "blank": the committed handouts (notebooks/NN_name.ipynb) score 0 on every exercise, each "not answered";
* "one": a released notebook with exactly one exercise solved (the source's solution pasted into the
  stub) scores exactly that exercise's points. To keep CI short this student submits three
  notebooks (01, 03 and 08), a different exercise in each.
"""

import json
import os
import time

import pandas as pd
import pytest

nbformat = pytest.importorskip("nbformat", reason='the tests read notebooks with nbformat: pip install -e ".[dev]"')

from gpt.teaching import classroom, grading  # noqa: E402
from gpt.teaching.course import course_root  # noqa: E402


ONE_SOLVED = ("01", "03", "08")


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    if os.environ.get("GPT_PROFILE") != "ci":
        pytest.skip("grades every notebook: run with GPT_PROFILE=ci (scripts/test.sh does)")
    root = tmp_path_factory.mktemp("course")
    sources = classroom.source_notebooks()
    released = course_root() / "notebooks"  # the committed handouts (test_handouts.py: the generator's output)
    exercises = {p.stem: classroom.check_notebook(p) for p in sources}
    solved = {}
    for i, path in enumerate(sources):
        source = json.loads(path.read_text())
        student = json.loads((released / path.name).read_text())
        ex = exercises[path.stem][i % len(exercises[path.stem])]
        solution = next(c for c in source["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == ex.solution_id)
        stub = next(c for c in student["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == ex.solution_id)
        stub["source"] = solution["source"]
        submissions = [("solutions", source), ("blank", json.loads((released / path.name).read_text()))]
        if path.name[:2] in ONE_SOLVED:
            solved[path.stem] = ex
            submissions.append(("one", student))
        for name, nb in submissions:
            (root / "subs" / name).mkdir(parents=True, exist_ok=True)
            (root / "subs" / name / path.name).write_text(json.dumps(nb))
    start = time.perf_counter()
    # time limits far above a CI-profile notebook's needs: a busy machine must not turn a solution into a "timed out"
    table = grading.grade(root / "subs", keep=root / "kept", print_fn=print,
                          options=grading.Options(cell_timeout=1800, notebook_timeout=7200))
    print(f"graded in {time.perf_counter() - start:.0f} s")
    details = pd.read_csv(root / "subs" / "grades_details.csv", dtype={"exercise": str}).fillna("")
    return table, details, exercises, solved, root


def test_source_notebooks_score_full_marks(course):
    table, details, exercises, solved, root = course
    rows = details[details.student == "solutions"]
    assert (rows.points == rows.max_points).all(), rows[rows.points < rows.max_points][["exercise", "reason"]].to_string()
    assert table.loc["solutions", "total"] == table.loc["solutions", "max"] == sum(
        e.points for ex in exercises.values() for e in ex)


def test_released_notebooks_score_zero(course):
    table, details, exercises, solved, root = course
    rows = details[details.student == "blank"]
    assert (rows.points == 0).all() and (rows.reason == "not answered (NotImplementedError)").all(), rows.to_string()


def test_one_solved_exercise_scores_exactly_its_points(course):
    table, details, exercises, solved, root = course
    rows = details[details.student == "one"]
    assert sorted(solved) == sorted(p.stem for p in classroom.source_notebooks() if p.name[:2] in ONE_SOLVED)
    for stem, ex in solved.items():
        mine = rows[rows.notebook == stem].set_index("exercise")
        assert mine.loc[ex.id, "points"] == ex.points, mine.loc[ex.id, "reason"]
        others = mine.drop(index=ex.id)
        assert (others.points == 0).all(), others.to_string()
    assert table.loc["one", "total"] == sum(ex.points for ex in solved.values())
    not_submitted = rows[~rows.notebook.isin(list(solved))]
    assert (not_submitted.points == 0).all() and (not_submitted.reason == "not submitted").all()
