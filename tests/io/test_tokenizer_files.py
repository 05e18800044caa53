"""gpt.io.tokenizer_files: the course's tokenizer file format, the shipped vocabulary refused when modified,
fingerprints, and the check that a model's vocabulary is the tokenizer's."""

import pytest

from gpt.errors import ConfigError, DataError
from gpt.io.tokenizer_files import (
    COURSE_TOKENIZER_FINGERPRINT,
    course_tokenizer_path,
    load_tokenizer,
    save_tokenizer,
    tokenizer_fingerprint,
    verified_course_tokenizer,
)
from gpt.tokenizer import course_tokenizer, train_bpe
from helpers_tokenizer import CORPUS, ROUND_TRIP


# --- saving and loading --------------------------------------------------------------------------


def test_save_load_round_trip(small_bpe, tmp_path):
    path = tmp_path / "tok.json"
    save_tokenizer(small_bpe, path)
    loaded = load_tokenizer(path)
    assert loaded._mergeable_ranks == small_bpe._mergeable_ranks
    assert loaded._special_tokens == small_bpe._special_tokens
    assert loaded._pat_str == small_bpe._pat_str
    assert loaded.name == small_bpe.name
    assert tokenizer_fingerprint(loaded) == tokenizer_fingerprint(small_bpe)
    for text in ROUND_TRIP:
        assert loaded.encode_ordinary(text) == small_bpe.encode_ordinary(text)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    "content, phrase",
    [
        ("this is not json", "JSONDecodeError"),
        ('{"format": "something-else/9", "tokens": []}', "unknown format 'something-else/9'"),
        ('{"format": "gpt-course-bpe/1"}', "KeyError"),
        ("", "JSONDecodeError"),
        ("[1, 2]", "expected a JSON object"),
        ('{"format": "gpt-course-bpe/1", "name": "x", "pat_str": "a", "special_tokens": {}, "tokens": ["!!"]}', "Error"),
    ],
)
def test_load_corrupt_tokenizer_file(tmp_path, content, phrase):
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as e:
        load_tokenizer(path)
    assert f"{path}: not a valid tokenizer file" in str(e.value) and phrase in str(e.value)
    assert isinstance(e.value, ValueError)


def test_load_missing_tokenizer_file_or_folder(tmp_path):
    with pytest.raises(ConfigError, match=f"tokenizer file {tmp_path / 'nope.json'} does not exist"):
        load_tokenizer(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="is a folder, not a tokenizer file"):
        load_tokenizer(tmp_path)


def test_modified_course_vocabulary_is_refused(small_bpe, tmp_path):
    """An overwritten gpt/assets/course_bpe_4096.json is refused instead of decoding ids into garbage."""
    assert tokenizer_fingerprint(course_tokenizer()) == COURSE_TOKENIZER_FINGERPRINT
    fake = tmp_path / "course_bpe_4096.json"
    save_tokenizer(small_bpe, fake)
    with pytest.raises(DataError, match=r"is not the course vocabulary shipped with the package \(it has 320 tokens"):
        verified_course_tokenizer(fake)
    assert verified_course_tokenizer(course_tokenizer_path()).n_vocab == 4096


def test_fingerprint_distinguishes_vocabularies(small_bpe):
    assert tokenizer_fingerprint(small_bpe) != tokenizer_fingerprint(train_bpe(CORPUS, 321))
    assert tokenizer_fingerprint(small_bpe) != tokenizer_fingerprint(course_tokenizer())
