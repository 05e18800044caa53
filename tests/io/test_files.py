"""gpt.io.files: output checks before work, atomic writes that leave the old file or the new one."""

import os
import stat

import pytest

from gpt.errors import OutputExistsError
from gpt.io.files import OutputError, atomic_dir, atomic_write_text, check_output, others_in, replace_dir


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two" and [p.name for p in path.parent.iterdir()] == ["a.txt"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask(), "the file gets the usual permissions, not mkstemp's 0600"


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_atomic_dir_all_or_nothing(tmp_path):
    target = tmp_path / "ck"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target, overwrite=True) as tmp:
            (tmp / "a").write_text("2")
            raise RuntimeError("crash while writing")
    assert (target / "a").read_text() == "1" and [p.name for p in tmp_path.iterdir()] == ["ck"]
    with pytest.raises(OutputExistsError, match="--overwrite"):
        with atomic_dir(target):
            pass
    with atomic_dir(target, overwrite=True) as tmp:
        (tmp / "b").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["b"] and [p.name for p in tmp_path.iterdir()] == ["ck"]


@pytest.mark.parametrize(
    "make, kind, error, phrase",
    [
        (lambda p: p.mkdir(), "file", OutputError, "is a folder"),
        (lambda p: p.write_text("x"), "dir", OutputError, "is a file"),
        (lambda p: p.write_text("x"), "file", OutputExistsError, "already exists; pass --overwrite"),
        (lambda p: (p.mkdir(), (p / "f").write_text("x")), "dir", OutputExistsError, "already exists"),
    ],
)
def test_check_output(tmp_path, make, kind, error, phrase):
    path = tmp_path / "out"
    make(path)
    with pytest.raises(error, match=phrase):
        check_output(path, kind=kind)


def test_check_output_below_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file, so"):
        check_output(tmp_path / "f" / "sub" / "out.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_output(empty, kind="dir") == empty  # an empty folder may be filled


def test_replace_dir_keeps_the_entries_that_are_not_the_runs_outputs(tmp_path):
    old, new = tmp_path / "run", tmp_path / ".run.new"
    for folder, text in ((old, "old"), (new, "new")):
        (folder / "checkpoint").mkdir(parents=True)
        (folder / "model.safetensors").write_text(text)
        (folder / "checkpoint" / "state.json").write_text(text)
    (old / "MODEL_CARD.md").write_text("old card")  # an output the new run lacks: not carried over
    (old / "notes.txt").write_text("mine")
    (old / "plots").mkdir()
    (old / "plots" / "a.png").write_text("png")
    outputs = ["model.safetensors", "MODEL_CARD.md", "checkpoint"]
    assert others_in(old, new, outputs) == ["notes.txt", "plots"]
    replace_dir(new, old, outputs=outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging, no old copy left
    assert sorted(p.name for p in old.iterdir()) == ["checkpoint", "model.safetensors", "notes.txt", "plots"]
    assert (old / "model.safetensors").read_text() == "new" and (old / "checkpoint" / "state.json").read_text() == "new"
    assert (old / "notes.txt").read_text() == "mine" and (old / "plots" / "a.png").read_text() == "png"
    # without outputs: the whole folder is replaced, as before
    (tmp_path / "b").mkdir()
    replace_dir(tmp_path / "b", old)
    assert list(old.iterdir()) == []
