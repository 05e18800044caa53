"""SMS splits: sizes, labels, no shared texts, pinned bytes, awkward texts, bad files."""

import numpy as np
import pandas as pd
import pytest

from gpt import sms
from gpt.io import sms_files
from gpt.io.files import sha256_file
from gpt.errors import ConfigError, DataError


def test_splits_sizes_labels_and_disjoint_texts(splits):
    sizes = {n: len(d) for n, d in splits.items()}
    assert sizes == {"train": 1045, "val": 149, "test": 300, "test_natural": 1119}
    counts = {n: d["label"].value_counts().to_dict() for n, d in splits.items()}
    assert counts["test"] == {"ham": 150, "spam": 150}
    assert counts["val"] == {"ham": 74, "spam": 75}
    assert counts["train"] == {"ham": 523, "spam": 522}
    assert counts["test_natural"]["spam"] == 150 and abs(150 / 1119 - 747 / 5574) < 0.001
    texts = {n: set(d["text"]) for n, d in splits.items()}
    for a, b in [("train", "val"), ("train", "test"), ("val", "test"), ("train", "test_natural"), ("val", "test_natural")]:
        assert not texts[a] & texts[b], f"{a} and {b} share texts"
    # the natural test split contains the balanced one; the source lines are never reused across splits
    assert set(splits["test"]["line"]) <= set(splits["test_natural"]["line"])
    lines = [set(splits[n]["line"]) for n in ("train", "val", "test")]
    assert sum(map(len, lines)) == len(set().union(*lines)) == 1494


def test_splits_are_deterministic_and_pinned(splits, tmp_path):
    a = sms_files.save_splits(sms.make_splits(), tmp_path / "a")
    b = sms_files.save_splits(sms.make_splits(), tmp_path / "b")
    for name in sms.SPLIT_NAMES:
        assert a[name].read_bytes() == b[name].read_bytes()
        assert sha256_file(a[name]) == sms_files.SPLIT_SHA256[name]
        pd.testing.assert_frame_equal(sms_files.read_split_csv(a[name]), splits[name])


def test_a_damaged_cached_split_is_rebuilt(splits):
    path = sms_files.splits_dir() / "val.csv"
    path.write_text("label,text\nham,changed\n")
    again = sms.load_splits()
    pd.testing.assert_frame_equal(again["val"], splits["val"])
    assert sha256_file(path) == sms_files.SPLIT_SHA256["val"]


def test_split_csv_keeps_awkward_texts(tmp_path):
    df = pd.DataFrame({"label": ["ham"] * 4, "text": ['"quoted" start', "NA", "tab\there, comma", "null"], "line": [1, 2, 3, 4]})
    path = sms_files.save_splits({"x": df}, tmp_path)["x"]
    pd.testing.assert_frame_equal(sms_files.read_split_csv(path), df)
    assert not list(tmp_path.glob(".*")), "no temporary file is left behind"


def test_label_ids():
    assert sms.label_ids(["ham", "spam", "ham"]).tolist() == [0, 1, 0]
    assert sms.label_ids(["dickens", "twain"], ("twain", "dickens")).tolist() == [1, 0]
    assert sms.label_ids([]).dtype == np.int64


# --- bad input ---------------------------------------------------------------------------------


def test_bad_labels_are_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"label": ["ham", "eggs"], "text": ["hi", "there"]}).to_csv(bad, index=False)
    with pytest.raises(DataError, match="eggs"):
        sms_files.read_split_csv(bad)
    with pytest.raises(DataError, match="eggs"):
        sms.make_splits(pd.DataFrame({"label": ["ham", "eggs"], "text": ["a", "b"]}))
    with pytest.raises(DataError, match="both labels"):
        sms.make_splits(pd.DataFrame({"label": ["ham", "spam"], "text": ["same", "same"]}))
    with pytest.raises(ConfigError, match="eggs"):
        sms.label_ids(["spam", "eggs"])


@pytest.mark.parametrize(
    "content, phrase",
    [
        (None, "does not exist"),
        (b"", "not a readable CSV"),
        (b"label,text\n\xff\xfe,bad\n", "not valid UTF-8"),
        (b"label,words\nham,hi\n", "missing column"),
        (b'label,text\nham,"unclosed\n', "not a readable CSV"),
    ],
)
def test_unreadable_split_files(tmp_path, content, phrase):
    path = tmp_path / "split.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=phrase):
        sms_files.read_split_csv(path)


def test_a_folder_is_not_a_split_file(tmp_path):
    with pytest.raises(DataError, match="not a file"):
        sms_files.read_split_csv(tmp_path)
