"""``python -m gpt classroom handouts / release / grade / check``: the teacher's commands (the library:
:mod:`gpt.teaching.handouts` for the handouts, :mod:`gpt.teaching.classroom` for the exercises,
:mod:`gpt.teaching.grading` for grading)."""

from __future__ import annotations

import os
from pathlib import Path

from ..teaching.classroom import check_notebook, exercises_table, source_notebooks
from ..teaching.grading import DEFAULT_CELL_TIMEOUT, DEFAULT_NOTEBOOK_TIMEOUT, Options, grade
from ..teaching.handouts import release, write_handouts
from .args import int_at_least, positive_float


def register(sub) -> None:
    """Add ``classroom handouts / release / grade / check`` to ``python -m gpt``."""
    c = sub.add_parser("classroom", help="graded exercises: make the handouts, release them, grade submissions in sandboxes",
                       description="Teacher commands. See notebooks/TEACHING.md.")
    csub = c.add_subparsers(dest="classroom_command", required=True)
    h = csub.add_parser("handouts", help="regenerate the handouts notebooks/NN_name.ipynb from notebooks/solutions/",
                        description="Make every handout (exercises blank, hidden tests removed, other outputs kept) "
                                    "from its solved notebook; --check only names the handouts that differ.")
    h.add_argument("--check", action="store_true", help="write nothing; exit 1 naming every handout that is out of date")
    h.add_argument("--source", default="", help="the solved notebooks (default: the course's notebooks/solutions/)")
    h.add_argument("--out", default="", help="the folder of the handouts (default: the course's notebooks/)")
    h.set_defaults(func=_cmd_handouts)
    r = csub.add_parser("release", help="write the handouts into OUT for a class (no nbgrader needed)")
    r.add_argument("out", help="the folder to write (refused if it exists, unless --overwrite)")
    r.add_argument("--source", default="", help="a folder of solved notebooks, or one notebook (default: the course's notebooks/solutions/)")
    r.add_argument("--repo", default="", help="GitHub OWNER/NAME (or its https://github.com URL) that the setup cells clone "
                                             "and the Colab badges open (default: the notebooks' own)")
    r.add_argument("--ref", default="", help="the tag, branch or commit the setup cells install and the badges open "
                                            "(default: the notebooks' pinned COURSE_REF)")
    r.add_argument("--overwrite", action="store_true")
    r.set_defaults(func=_cmd_release)
    g = csub.add_parser("grade", help="grade SUBMISSIONS/<student>/<NN_name>.ipynb with the hidden tests, each in a sandbox",
                        description="Runs each student's solution cells and the hidden probes in an isolated sandbox "
                                    "(Linux namespaces: no access to your files, no network, limits), checks the "
                                    "results in a clean process, and writes the grades. See docs/teaching.md.")
    g.add_argument("submissions", help="a folder with one subfolder per student")
    g.add_argument("--source", default="", help="the solved notebooks, hidden tests in (default: the course's notebooks/solutions/)")
    g.add_argument("--out", default="", help="the CSV to write (default: SUBMISSIONS/grades.csv; grades_details.csv beside it)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing grades CSV (and --keep folder)")
    g.add_argument("--jobs", type=int_at_least(1), default=os.cpu_count() or 1,
                   help="submission notebooks graded at a time (default: the CPU count)")
    g.add_argument("--cell-timeout", type=positive_float, default=DEFAULT_CELL_TIMEOUT,
                   help=f"seconds one exercise may run (default {DEFAULT_CELL_TIMEOUT})")
    g.add_argument("--notebook-timeout", type=positive_float, default=DEFAULT_NOTEBOOK_TIMEOUT,
                   help=f"seconds one submission notebook may run in all (default {DEFAULT_NOTEBOOK_TIMEOUT})")
    g.add_argument("--keep", default="", help="also write what each submission printed into KEEP/<student>/<NN_name>.log")
    g.add_argument("--profile", default="ci", choices=["ci", "default"], help="GPT_PROFILE the code runs in (default ci)")
    g.add_argument("--no-isolation", action="store_true",
                   help="run students' code WITHOUT a sandbox, with your rights (only where isolation is unavailable, "
                        "on a machine you can throw away); said in the first line and in the details CSV")
    g.set_defaults(func=_cmd_grade)
    k = csub.add_parser("check", help="check the exercises' nbgrader format and list them")
    k.add_argument("notebooks", nargs="*", help="solved notebooks (default: the course's notebooks/solutions/)")
    k.set_defaults(func=_cmd_check)


def _cmd_handouts(args) -> int:
    differ = write_handouts(args.source or None, args.out or None, check=args.check)
    for line in differ:
        print(line)
    if args.check and differ:
        print(f"{len(differ)} handout(s) out of date: run python -m gpt classroom handouts")
        return 1
    if differ:
        print(f"updated {len(differ)} handout(s)")
    else:
        print("every handout matches its solved notebook")
    return 0


def _cmd_release(args) -> int:
    paths = release(args.out, args.source or None, overwrite=args.overwrite, repo=args.repo or None, ref=args.ref or None)
    print(f"wrote {len(paths)} handouts and exercises.csv to {args.out}")
    return 0


def _cmd_grade(args) -> int:
    options = Options(cell_timeout=args.cell_timeout, notebook_timeout=args.notebook_timeout, jobs=args.jobs,
                      isolate=not args.no_isolation, profile=args.profile)
    grade(args.submissions, args.source or None, out=args.out or None, overwrite=args.overwrite, options=options,
          keep=args.keep or None)
    return 0


def _cmd_check(args) -> int:
    paths = [Path(p) for p in args.notebooks] or source_notebooks()
    table = exercises_table([e for p in paths for e in check_notebook(p)])
    print(table.to_string(index=False) if len(table) else "no exercises")
    if len(table):
        print(f"{len(table)} exercises, {table['points'].sum()} points")
    return 0
