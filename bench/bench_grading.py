"""How long `python -m gpt classroom grade` takes for a class: N students x the solved notebooks.

    python bench/bench_grading.py                       # 30 students x the 8 notebooks of notebooks/solutions/
    python bench/bench_grading.py --students 1 --notebooks 01 --out /tmp/bench   # a quick try

Each simulated student submits every notebook with a mix of answers: exercise k of student i is the
solution when (i + k) is even, and the blank stub (``raise NotImplementedError()``) otherwise, so every
notebook is graded in full (probes, checks and NotImplementedError paths). The run checks that exactly
the solved exercises scored, and records the wall time, the CPU, the machine's other load (CPU used by
other processes while it ran: on a busy machine the time is not valid) in ``bench/results/grading.{md,json}``.
Run it on an idle machine; the course's target is a class of 30 x 8 notebooks in <= 45 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BUSY, OtherLoad, run_info, write_results  # noqa: E402

from gpt.teaching import grading  # noqa: E402
from gpt.teaching.classroom import source_notebooks  # noqa: E402
from gpt.teaching.handouts import make_handout  # noqa: E402


def submission(nb: dict, handout: dict, student: int) -> tuple[dict, set[str]]:
    """The student's copy: the handout (:func:`gpt.teaching.handouts.make_handout`, the one blanking logic) with the
    solved notebook's solution cell put back where (student + k) is even; and the solved grade ids."""
    solutions = {c["metadata"]["nbgrader"]["grade_id"]: c["source"] for c in nb["cells"]
                 if c.get("metadata", {}).get("nbgrader", {}).get("solution")}
    copy = json.loads(json.dumps(handout))
    solved = set()
    for k, cell in enumerate((c for c in copy["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                              in solutions), start=1):
        if (student + k) % 2 == 0:
            gid = cell["metadata"]["nbgrader"]["grade_id"]
            cell["source"] = solutions[gid]
            solved.add(gid)
    return copy, solved


def build_class(notebooks: list[Path], students: int, root: Path) -> dict[tuple[str, str], set[str]]:
    solved = {}
    for path in notebooks:
        nb = json.loads(path.read_text(encoding="utf-8"))
        handout = make_handout(nb, path.name)
        for i in range(students):
            copy, ids = submission(nb, handout, i)
            folder = root / f"student{i:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / path.name).write_text(json.dumps(copy))
            solved[(folder.name, path.stem)] = ids
    return solved


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--students", type=int, default=30)
    p.add_argument("--notebooks", nargs="*", default=[], help="notebook numbers to include (default: all)")
    p.add_argument("--source", default="", help="the solved notebooks (default: notebooks/solutions/, else notebooks/)")
    p.add_argument("--jobs", type=int, default=grading.Options().jobs)
    p.add_argument("--out", default="", help="folder for grading.md/json (default bench/results)")
    args = p.parse_args(argv)
    notebooks = [n for n in source_notebooks(args.source or grading.default_source())
                 if not args.notebooks or n.name[:2] in args.notebooks]
    info = run_info()
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        subs = Path(tmp) / "subs"
        solved = build_class(notebooks, args.students, subs)
        options = grading.Options(jobs=args.jobs)
        with OtherLoad() as load:
            start = time.perf_counter()
            grading.grade(subs, notebooks[0].parent if not args.source else args.source, options=options)
            seconds = time.perf_counter() - start
        import pandas as pd  # here, not at the top: only the result check needs it

        details = pd.read_csv(subs / "grades_details.csv", dtype={"exercise": str}).fillna("")
    wrong = [f"{r.student} {r.exercise}: {r.reason}" for r in details.itertuples()  # other notebooks: not submitted
             if (r.points > 0) != (f"ex{r.exercise.replace('.', '_')}" in solved.get((r.student, r.notebook), ()))]
    rows = [{"students": args.students, "notebooks": len(notebooks), "jobs": args.jobs, "seconds": round(seconds, 1),
             "submissions": args.students * len(notebooks), "scored_as_expected": not wrong,
             "other_load_cores": round(load.cores, 2)}]
    info["other_load_cores"] = load.cores
    body = ("# Grading a class\n\n{header}\n"
            f"{args.students} students x {len(notebooks)} notebooks ({', '.join(n.stem for n in notebooks)}), "
            f"--jobs {args.jobs}: **{seconds / 60:.1f} min** wall ({seconds:.0f} s).\n\n"
            f"Every exercise scored as expected (solved ones full, blank ones 0): {'yes' if not wrong else 'NO'}\n")
    if wrong:
        body += "\n" + "\n".join(f"- {w}" for w in wrong[:50]) + "\n"
    md, js = write_results("grading", info, rows, body, Path(args.out) if args.out else None)
    print(f"{seconds:.0f} s for {args.students} x {len(notebooks)}; other load {load.cores:.2f} cores"
          + (" (busy: not valid)" if load.cores > BUSY else "") + f"; wrote {md} and {js}")
    return 0 if not wrong else 1


if __name__ == "__main__":
    sys.exit(main())
