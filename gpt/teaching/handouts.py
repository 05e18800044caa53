"""Handouts: the notebooks a learner opens, made from the solved ones, and the links that open them.

The course keeps every chapter twice. ``notebooks/solutions/NN_name.ipynb`` is the solved notebook:
the source that CI executes and that grading compares with. ``notebooks/NN_name.ipynb`` is the
*handout* a learner opens, made from it by :func:`make_handout`, which is deterministic (the same
solved notebook always gives the same bytes):

* every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region becomes ``# YOUR CODE HERE`` and
  ``raise NotImplementedError()``, indented as the region was (a ``def`` line outside the region stays);
* every ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` region is removed, whatever it holds;
* the outputs of the exercises' solution and test cells are cleared; every other cell keeps its
  committed outputs, so a handout reads like the executed notebook;
* nbgrader's cell metadata is kept (nbgrader and JupyterHub workflows still work);
* a note under the first markdown cell's badge tells the learner that hidden tests grade each exercise
  and that an answer must hold everything it needs in its solution cell.

:func:`write_handouts` regenerates the handouts (``python -m gpt classroom handouts``) or, with
``check=True``, names the ones that drifted (``--check``; a test runs it in CI). :func:`release`
writes the handouts into a folder for a class, optionally pointed at another repository or ref.

Every notebook's setup cell (its first code cell) holds ``COURSE_REPO`` and ``COURSE_REF``, and every
Colab badge opens the handout ``notebooks/NN_name.ipynb`` of a GitHub repository at a ref.
:func:`set_setup_constants` sets both in a notebook and :func:`set_badges` in any text; a repository
(``owner/name``) and a ref are checked by :func:`check_repo` / :func:`check_ref` and written as
string literals, so a value cannot inject code into the setup cell.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

from ..io.files import atomic_dir, atomic_write_text, display_path
from .classroom import (BEGIN_HIDDEN, BEGIN_SOLUTION, END_HIDDEN, END_SOLUTION, ClassroomError, cell_source, check_notebook, exercises_table,
                        read_notebook, source_notebooks)
from .course import course_root


MARKERS = (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN, END_HIDDEN)
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
BANNER = (
    "> **This is the handout: the exercises are yours to write.** Each exercise's solution cell says "
    "`raise NotImplementedError()` until you write the code, and its test cell checks it with visible tests. "
    "When the notebook is graded, **hidden tests** grade every exercise too: other inputs than the visible "
    "ones, and that you wrote the code the exercise asks for instead of calling the package's version. "
    "**Everything an answer needs (imports, helper functions, constants) must be inside its solution "
    "cell**: that cell is what is graded. The rest of the notebook uses the package, never your code, so it "
    "runs top to bottom and a blank exercise fails only its own test cell."
)
BADGE_MARK = "colab-badge.svg"
COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/(?P<repo>[^/\s()\]]+/[^/\s()\]]+)/blob/"
                        r"(?P<ref>[^\s()\]]+?)/notebooks/(?:solutions/)?(?P<name>\d\d_\w+\.ipynb)")
GITHUB_REPO = re.compile(r"(?:https://github\.com/)?(?P<owner>[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38})/"
                         r"(?P<name>[A-Za-z0-9._-]{1,100}?)(?:\.git)?/?")
GIT_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/+-]{0,199}")
SETUP_LINE = r'^{name} = "[^"\n]*"'


def solutions_dir() -> Path:
    """``notebooks/solutions/``: the solved notebooks, the source of the handouts."""
    return course_root() / "notebooks" / "solutions"


def handouts_dir() -> Path:
    """``notebooks/``: the handouts a learner opens."""
    return course_root() / "notebooks"


# ---------------------------------------------------------------- repository, ref and the links that name them


def check_repo(repo: str) -> str:
    """``owner/name`` of a GitHub repository, given as ``owner/name`` or ``https://github.com/owner/name``."""
    m = GITHUB_REPO.fullmatch(repo or "")
    if not m or m["name"] in (".", ".."):
        raise ClassroomError(f"--repo {repo!r} is not a GitHub repository: give owner/name (letters, digits and "
                             "- in the owner; letters, digits, . _ - in the name), e.g. YOUR-ORG/YOUR-REPO or "
                             "https://github.com/YOUR-ORG/YOUR-REPO (the badges open notebooks in Colab from GitHub)")
    return f"{m['owner']}/{m['name']}"


def check_ref(ref: str) -> str:
    """A git tag, branch or commit name, in the characters a setup cell and a URL can hold safely."""
    bad = (not GIT_REF.fullmatch(ref or "") or any(s in ref for s in ("..", "//", "/.", "@{"))
           or ref.endswith(("/", ".", ".lock")))
    if bad:
        raise ClassroomError(f"--ref {ref!r} is not a git tag, branch or commit name: use letters, digits and . _ / + - "
                             "only, starting with a letter or digit (e.g. v2027-spring or a commit hash)")
    return ref


def colab_url(repo: str, ref: str, name: str) -> str:
    """The Colab link that opens the handout ``notebooks/<name>`` of GitHub's ``repo`` at ``ref``."""
    return f"https://colab.research.google.com/github/{check_repo(repo)}/blob/{check_ref(ref)}/notebooks/{name}"


def set_badges(text: str, repo: str | None = None, ref: str | None = None) -> str:
    """``text`` with every Colab link opening the handout (never ``solutions/``), at ``repo``/``ref`` where given."""
    def link(m: re.Match) -> str:
        return colab_url(repo or m["repo"], ref or m["ref"], m["name"])

    return COLAB_LINK.sub(link, text)


def set_badges_in_file(path: str | os.PathLike, repo: str | None = None, ref: str | None = None) -> bool:
    """:func:`set_badges` on a text file (a README); True if it changed."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    new = set_badges(text, repo, ref)
    if new != text:
        atomic_write_text(path, new)
    return new != text


def _set_source(cell: dict, text: str) -> None:
    cell["source"] = text.splitlines(keepends=True)


def _pin(nb: dict, name: str, repo: str | None, ref: str | None) -> dict:
    """``nb`` (changed in place) with the setup cell's COURSE_REPO / COURSE_REF and every badge set."""
    repo, ref = (check_repo(repo) if repo else None), (check_ref(ref) if ref else None)
    setup = next((c for c in nb.get("cells", []) if c["cell_type"] == "code"), None)
    text = cell_source(setup) if setup else ""
    if not re.search(SETUP_LINE.format(name="COURSE_REF"), text, flags=re.MULTILINE):
        raise ClassroomError(f"{name}: its first code cell is not the setup cell (no COURSE_REF line)")
    for constant, value in (("COURSE_REPO", repo and f"https://github.com/{repo}"), ("COURSE_REF", ref)):
        if value:  # json.dumps: a string literal, whatever the value holds (check_* allow no quotes anyway)
            text = re.sub(SETUP_LINE.format(name=constant), lambda m, c=constant, v=value: f"{c} = {json.dumps(v)}",
                          text, flags=re.MULTILINE)
    if text != cell_source(setup):
        _set_source(setup, text)
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown" and COLAB_LINK.search(cell_source(cell)):
            _set_source(cell, set_badges(cell_source(cell), repo, ref))
    return nb


def set_setup_constants(path: str | os.PathLike, repo: str | None = None, ref: str | None = None) -> bool:
    """Point a notebook at ``repo``/``ref``: COURSE_REPO / COURSE_REF in its setup cell (its first code cell)
    and every Colab badge (which opens the handout). True if the file changed."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    new = notebook_text(_pin(read_notebook(path), path.name, repo, ref))
    if new == text:
        return False
    atomic_write_text(path, new)
    return True


# ---------------------------------------------------------------- the handout of a solved notebook


def notebook_text(nb: dict) -> str:
    """A notebook as its file holds it: nbformat's layout (one-space indent, sorted keys, a final newline)."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _blank_regions(text: str, where: str) -> tuple[str, bool]:
    """``text`` with each solution region replaced by the stub and each hidden-test region removed."""
    lines, inside, changed = [], None, False
    for line in text.split("\n"):
        marker = line.strip()
        if marker not in MARKERS and any(m in line for m in MARKERS):
            raise ClassroomError(f"{where}: write {next(m for m in MARKERS if m in line)!r} alone on its line "
                                 f"(found {marker!r}), or the handout would keep what it should remove")
        if marker in (BEGIN_SOLUTION, BEGIN_HIDDEN):
            if inside:
                raise ClassroomError(f"{where}: {marker} inside the {inside} region; close it with its END line first")
            inside, changed = marker, True
            if marker == BEGIN_SOLUTION:
                indent = line[: len(line) - len(line.lstrip())]
                lines += [indent + stub for stub in STUB]
        elif marker in (END_SOLUTION, END_HIDDEN):
            if inside != marker.replace("END", "BEGIN"):
                raise ClassroomError(f"{where}: {marker} without its BEGIN line")
            inside = None
        elif not inside:
            lines.append(line)
    if inside:
        raise ClassroomError(f"{where}: {inside} has no END line")
    return "\n".join(lines).rstrip("\n"), changed


def _add_banner(cell: dict) -> None:
    """The handout's note, as a paragraph right under the badge (or the title) of the first markdown cell."""
    lines = cell_source(cell).split("\n")
    at = next((i for i, line in enumerate(lines) if BADGE_MARK in line), 0) + 1
    _set_source(cell, "\n".join(lines[:at] + ["", BANNER] + lines[at:]))


def make_handout(solved: dict, name: str = "notebook") -> dict:
    """The handout of a solved notebook (a new dict; ``solved`` is not changed). ``name`` is for messages."""
    nb = copy.deepcopy(solved)
    for i, cell in enumerate(nb.get("cells", [])):
        if cell["cell_type"] != "code":
            continue
        text, changed = _blank_regions(cell_source(cell), f"{name} cell {i}")
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if changed:
            _set_source(cell, text)
        if changed or meta.get("solution") or meta.get("grade"):
            cell["outputs"], cell["execution_count"] = [], None
    first = next((c for c in nb.get("cells", []) if c["cell_type"] == "markdown"), None)
    if first is not None:
        _add_banner(first)
    return nb


def handout_text(solved_path: str | os.PathLike) -> str:
    """The handout file's text for the solved notebook at ``solved_path``."""
    path = Path(solved_path)
    return notebook_text(make_handout(read_notebook(path), path.name))


def write_handouts(source: str | os.PathLike | None = None, out: str | os.PathLike | None = None, *,
                   check: bool = False) -> list[str]:
    """Make ``out/NN_name.ipynb`` (default ``notebooks/``) from every solved notebook of ``source``
    (a folder, default ``notebooks/solutions/``, or one notebook); returns what differed, one line per notebook.

    ``check``: write nothing, only return the differences (a handout that is out of date or missing, or
    a handout whose solved notebook is gone from the ``source`` folder). Otherwise each changed handout is
    written in one step (temporary file, rename), and a handout without a solved notebook is deleted.
    """
    solved = source_notebooks(source or solutions_dir())
    out = Path(out) if out else handouts_dir()
    differ = []
    for path in solved:
        target = out / path.name
        text = handout_text(path)
        current = target.read_text(encoding="utf-8") if target.is_file() else None
        if current != text:
            differ.append(f"{display_path(target)} {'is missing' if current is None else 'differs from its solved notebook'}")
            if not check:
                atomic_write_text(target, text)
    names = {p.name for p in solved}
    folder = Path(source or solutions_dir()).is_dir()  # one solved notebook given: the other handouts are not its business
    for orphan in sorted(p for p in out.glob("[0-9][0-9]_*.ipynb") if folder and p.name not in names):
        differ.append(f"{display_path(orphan)} has no solved notebook {display_path(solved[0].parent / orphan.name)}")
        if not check:
            orphan.unlink()
    return differ


def release(out: str | os.PathLike, source=None, *, overwrite: bool = False, repo: str | None = None,
            ref: str | None = None) -> list[Path]:
    """Write the handout of every solved notebook of ``source`` (default ``notebooks/solutions/``) into ``out``.

    The handouts are :func:`make_handout`'s, the same as the committed ``notebooks/NN_name.ipynb``.
    ``repo`` (GitHub ``owner/name``) and ``ref`` (a tag, branch or commit) replace the setup cell's
    COURSE_REPO / COURSE_REF and every badge's repository and ref: teaching from a fork or a tag. Also
    writes ``exercises.csv``: every exercise with its notebook and points. Needs no nbgrader.
    """
    repo, ref = (check_repo(repo) if repo else None), (check_ref(ref) if ref else None)  # before any work
    notebooks = source_notebooks(source)
    exercises = [e for nb in notebooks for e in check_notebook(nb)]
    out = Path(out)
    with atomic_dir(out, overwrite=overwrite) as tmp:  # refuses an existing folder before any work
        for path in notebooks:
            handout = make_handout(read_notebook(path), path.name)
            if repo or ref:
                _pin(handout, path.name, repo, ref)
            (tmp / path.name).write_text(notebook_text(handout), encoding="utf-8")
        exercises_table(exercises).to_csv(tmp / "exercises.csv", index=False)
    return [out / path.name for path in notebooks]
