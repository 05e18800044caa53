"""``python -m gpt classroom release / grade / check``: the teacher's commands (the library: :mod:`gpt.teaching.classroom`)."""

from __future__ import annotations

from pathlib import Path

from ..teaching.classroom import (DEFAULT_CELL_TIMEOUT, DEFAULT_NOTEBOOK_TIMEOUT, check_notebook, exercises_table, grade, release,
                                  source_notebooks)


def register(sub) -> None:
    """Add ``classroom release / grade / check`` to ``python -m gpt``."""
    c = sub.add_parser("classroom", help="graded exercises: release the student notebooks, autograde submissions (nbgrader)",
                       description="Teacher commands (needs the [classroom] extra). See notebooks/TEACHING.md.")
    csub = c.add_subparsers(dest="classroom_command", required=True)
    r = csub.add_parser("release", help="write the student versions of the notebooks into OUT")
    r.add_argument("out", help="the folder to write (refused if it exists, unless --overwrite)")
    r.add_argument("--source", default="", help="a folder of source notebooks, or one notebook (default: the course's notebooks/)")
    r.add_argument("--repo", default="", help="the git URL the released setup cells clone (default: the notebooks' COURSE_REPO)")
    r.add_argument("--ref", default="", help="the tag or commit the released setup cells install (default: the notebooks' COURSE_REF)")
    r.add_argument("--overwrite", action="store_true")
    r.set_defaults(func=_cmd_release)
    g = csub.add_parser("grade", help="autograde SUBMISSIONS/<student>/<NN_name>.ipynb; print and write the table")
    g.add_argument("submissions", help="a folder with one subfolder per student")
    g.add_argument("--source", default="", help="the source notebooks (solutions and hidden tests in; default: the course's)")
    g.add_argument("--out", default="", help="the CSV to write (default: SUBMISSIONS/grades.csv; details beside it)")
    g.add_argument("--profile", default="ci", choices=["ci", "default"], help="GPT_PROFILE the notebooks run in (default ci)")
    g.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT, help="seconds one cell may run")
    g.add_argument("--notebook-timeout", type=float, default=DEFAULT_NOTEBOOK_TIMEOUT, help="seconds one notebook may run")
    g.add_argument("--keep", default="", help="also write the executed notebooks into KEEP/<student>/ (for feedback)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing grades CSV (and --keep folder)")
    g.set_defaults(func=_cmd_grade)
    k = csub.add_parser("check", help="check the exercises' nbgrader format and list them")
    k.add_argument("notebooks", nargs="*", help="notebooks (default: the course's)")
    k.set_defaults(func=_cmd_check)



def _cmd_release(args) -> int:
    paths = release(args.out, args.source or None, overwrite=args.overwrite, repo=args.repo or None, ref=args.ref or None)
    print(f"wrote {len(paths)} student notebooks and exercises.csv to {args.out}")
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
