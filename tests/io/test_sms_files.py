"""The SMS collection's file, parsed: every row kept as it is, a bad line named by its number."""

import pytest

from gpt.errors import DataError
from gpt.io.sms_files import load_sms_spam
from helpers_data import fake_mirror


def test_load_sms_spam(mirror_dir, cache, monkeypatch):
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    df = load_sms_spam()
    assert list(df.columns) == ["label", "text"]
    assert len(df) == 5574
    assert df["label"].value_counts().to_dict() == {"ham": 4827, "spam": 747}
    assert df["text"].str.startswith('"').sum() == 54  # quotes kept as they are, no rows merged
    assert df["text"].nunique() == 5171
    assert df.iloc[0]["text"].startswith("Go until jurong point")


def _fake_sms_mirror(tmp_path, monkeypatch, content: bytes):
    fake_mirror(tmp_path, monkeypatch, "sms_spam", content)


def test_sms_bad_label(tmp_path, cache, monkeypatch):
    _fake_sms_mirror(tmp_path, monkeypatch, b"ham\tfine\nspam\tWIN now\nhma\ttypo in the label\n")
    with pytest.raises(DataError, match=r":3: label 'hma' is neither"):
        load_sms_spam()


def test_sms_missing_tab(tmp_path, cache, monkeypatch):
    _fake_sms_mirror(tmp_path, monkeypatch, b"ham\tfine\nspam no tab here\n")
    with pytest.raises(DataError, match=r":2: no TAB"):
        load_sms_spam()


def test_sms_fake_file_parses(tmp_path, cache, monkeypatch):
    _fake_sms_mirror(tmp_path, monkeypatch, b'ham\t"quoted start\nspam\ttab\tinside\n')
    df = load_sms_spam()
    assert df.values.tolist() == [["ham", '"quoted start'], ["spam", "tab\tinside"]]


def test_sms_empty_file(tmp_path, cache, monkeypatch):
    _fake_sms_mirror(tmp_path, monkeypatch, b"\n\n")
    with pytest.raises(DataError, match="holds no messages"):
        load_sms_spam()
