"""``python -m gpt classroom handouts / release / grade / check``: the teacher's commands (the library:
:mod:`gpt.teaching.handouts` for the handouts, :mod:`gpt.teaching.classroom` for the exercises and grading)."""

from __future__ import annotations

from pathlib import Path

from ..teaching.classroom import (DEFAULT_CELL_TIMEOUT, DEFAULT_NOTEBOOK_TIMEOUT, check_notebook, exercises_table, grade,
                                  source_notebooks)
from ..teaching.handouts import release, write_handouts


def register(sub) -> None:
    """Add ``classroom handouts / release / grade / check`` to ``python -m gpt``."""
    c = sub.add_parser("classroom", help="graded exercises: make the handouts, release them, autograde submissions",
                       description="Teacher commands (grade needs the [classroom] extra). See notebooks/TEACHING.md.")
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
    g = csub.add_parser("grade", help="autograde SUBMISSIONS/<student>/<NN_name>.ipynb; print and write the table")
    g.add_argument("submissions", help="a folder with one subfolder per student")
    g.add_argument("--source", default="", help="the solved notebooks (solutions and hidden tests in; default: the course's)")
    g.add_argument("--out", default="", help="the CSV to write (default: SUBMISSIONS/grades.csv; details beside it)")
    g.add_argument("--profile", default="ci", choices=["ci", "default"], help="GPT_PROFILE the notebooks run in (default ci)")
    g.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT, help="seconds one cell may run")
    g.add_argument("--notebook-timeout", type=float, default=DEFAULT_NOTEBOOK_TIMEOUT, help="seconds one notebook may run")
    g.add_argument("--keep", default="", help="also write the executed notebooks into KEEP/<student>/ (for feedback)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing grades CSV (and --keep folder)")
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
    grade(args.submissions, args.source or None, out=args.out or None, overwrite=args.overwrite, profile=args.profile,
          cell_timeout=args.cell_timeout, notebook_timeout=args.notebook_timeout, keep=args.keep or None)
    return 0



def _cmd_check(args) -> int:
    paths = [Path(p) for p in args.notebooks] or source_notebooks()
    table = exercises_table([e for p in paths for e in check_notebook(p)])
    print(table.to_string(index=False) if len(table) else "no exercises")
    if len(table):
        print(f"{len(table)} exercises, {table['points'].sum()} points")
    return 0
