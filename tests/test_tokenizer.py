"""Tokenizers: GPT-2's BPE built offline, the course BPE trainer, saving/loading, the shipped vocabulary."""

import pytest

import gpt.tokenizer as tokenizer_module
from gpt.errors import ConfigError, DataError
from gpt.tokenizer import (
    COURSE_TOKENIZER_FINGERPRINT,
    ENDOFTEXT,
    course_tokenizer,
    course_tokenizer_path,
    encode_prompt,
    get_tokenizer,
    gpt2_tokenizer,
    load_tokenizer,
    pretokenize,
    save_tokenizer,
    tokenizer_fingerprint,
    train_bpe,
)

# A small deterministic corpus: enough distinct pairs for a few hundred merges.
CORPUS = [
    "It was the best of times, it was the worst of times, it was the age of wisdom, "
    "it was the age of foolishness, it was the epoch of belief, it was the epoch of incredulity.",
    "Call me Ishmael. Some years ago - never mind how long precisely - having little or no money "
    "in my purse, and nothing particular to interest me on shore, I thought I would sail about.",
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife. However little known the feelings or views of such a man may be.",
    "Happy families are all alike; every unhappy family is unhappy in its own way. 1234567890 + 42 = 1234567932!",
]

ROUND_TRIP = [
    "",
    "Hello, world",
    "naïve café, crème brûlée, Ærøskøbing, Straße",
    "It costs £5 — or €6, or ¥700.",
    "emoji: 😀🎉👍🏽 and a family 👨‍👩‍👧‍👦",
    "中文字符 日本語のテキスト 한국어",
    "tabs\tand\t\ttabs,   three spaces,\n\n\nnewlines\r\nCRLF   ",
    "   leading and trailing whitespace   ",
    "\x00\x01 control bytes \x7f",
    "mixed: Ünïcödé 123 ١٢٣ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
]


@pytest.fixture(scope="module")
def small_bpe():
    return train_bpe(CORPUS, 320)


# --- GPT-2 --------------------------------------------------------------------------------------


def test_gpt2_known_ids():
    enc = gpt2_tokenizer()
    assert enc.encode("Hello, world") == [15496, 11, 995]
    assert enc.encode(" the") == [262]
    assert enc.encode("Hello, world. Is this-- a test?") == [15496, 11, 995, 13, 1148, 428, 438, 257, 1332, 30]
    assert enc.eot_token == 50256
    assert enc.encode(ENDOFTEXT, allowed_special="all") == [50256]
    assert enc.n_vocab == 50257


def test_gpt2_round_trip():
    enc = gpt2_tokenizer()
    for text in ROUND_TRIP:
        assert enc.decode(enc.encode_ordinary(text)) == text


def test_get_tokenizer_names():
    assert get_tokenizer("gpt2") is gpt2_tokenizer()
    assert get_tokenizer("course") is course_tokenizer()
    with pytest.raises(ConfigError, match="unknown tokenizer 'gpt3'"):
        get_tokenizer("gpt3")


# --- training our own BPE -----------------------------------------------------------------------


def test_pretokenize_splits_like_gpt2():
    assert pretokenize("Hello, world! It's 2024.") == ["Hello", ",", " world", "!", " It", "'s", " 2024", "."]


def test_train_bpe_is_deterministic(small_bpe):
    again = train_bpe(CORPUS, 320)
    assert again._mergeable_ranks == small_bpe._mergeable_ranks
    assert again._special_tokens == small_bpe._special_tokens
    assert tokenizer_fingerprint(again) == tokenizer_fingerprint(small_bpe)


def test_train_bpe_exact_vocab_size(small_bpe):
    assert small_bpe.n_vocab == 320
    ranks = small_bpe._mergeable_ranks
    assert sorted(ranks.values()) == list(range(319))  # 256 bytes + 63 merges, ranks 0..318
    assert all(ranks[bytes([b])] == b for b in range(256))
    assert small_bpe.eot_token == 319
    # every learned token is the concatenation of two earlier tokens
    by_rank = sorted(ranks, key=ranks.get)
    for tok in by_rank[256:]:
        assert any(tok[:i] in ranks and tok[i:] in ranks and max(ranks[tok[:i]], ranks[tok[i:]]) < ranks[tok] for i in range(1, len(tok)))


@pytest.mark.parametrize("vocab_size", [257, 258, 300, 400])
def test_train_bpe_sizes(vocab_size):
    enc = train_bpe(CORPUS, vocab_size)
    assert enc.n_vocab == vocab_size
    assert enc.eot_token == vocab_size - 1


def test_train_bpe_first_merge_is_most_frequent_pair():
    enc = train_bpe(["aab aab aab xy"], 258)
    # pairs within words: (a,a) x3, (a,b) x3, (" ",a) x2, (x,y) x1 -> tie between "aa" and "ab", "aa" sorts first
    assert enc._mergeable_ranks[b"aa"] == 256


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_train_bpe_round_trips_any_utf8(small_bpe, text):
    ids = small_bpe.encode_ordinary(text)
    assert small_bpe.decode_bytes(ids) == text.encode("utf-8")
    assert small_bpe.decode(ids) == text


def test_learned_merges_compress(small_bpe):
    text = " ".join(CORPUS)
    assert len(small_bpe.encode_ordinary(text)) < 0.75 * len(text.encode("utf-8"))


def test_train_bpe_rejects_empty_corpus():
    with pytest.raises(ConfigError, match="empty corpus"):
        train_bpe("", 300)
    with pytest.raises(ConfigError, match="empty corpus"):
        train_bpe([], 300)


def test_train_bpe_rejects_too_small_vocab():
    with pytest.raises(ConfigError, match="at least 257"):
        train_bpe(CORPUS, 256)
    with pytest.raises(ConfigError, match="at least 258"):
        train_bpe(CORPUS, 257, special_tokens=(ENDOFTEXT, "<|pad|>"))
    with pytest.raises(ConfigError, match="vocab_size must be a whole number, got 300.5"):
        train_bpe(CORPUS, 300.5)


def test_train_bpe_rejects_vocab_larger_than_corpus_allows():
    # "hello hello world" allows only 10 merges before every word is one token
    with pytest.raises(ConfigError, match="only allows 10 merges"):
        train_bpe("hello hello world", 300)


def test_train_bpe_rejects_non_str():
    with pytest.raises(TypeError):
        train_bpe([b"bytes"], 300)


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
        tokenizer_module._verified_course_tokenizer(fake)
    assert tokenizer_module._verified_course_tokenizer(course_tokenizer_path()).n_vocab == 4096


@pytest.mark.parametrize(
    "prompt, phrase",
    [
        ("", "is empty"),
        ("   \n\t", "is empty"),
        ("Hello <|endoftext|> world", "contains <|endoftext|>, a special token that cannot be typed in a prompt"),
        (b"bytes", "a prompt is a string"),
    ],
)
def test_encode_prompt_rejects_bad_prompts(prompt, phrase):
    with pytest.raises(ConfigError) as e:
        encode_prompt(prompt)
    assert phrase in str(e.value)


def test_encode_prompt_encodes_ordinary_text():
    enc = course_tokenizer()
    assert encode_prompt("The old man") == enc.encode_ordinary("The old man")
    assert encode_prompt("<|endoftext", enc) == enc.encode_ordinary("<|endoftext")  # not the special token


def test_fingerprint_distinguishes_vocabularies(small_bpe):
    assert tokenizer_fingerprint(small_bpe) != tokenizer_fingerprint(train_bpe(CORPUS, 321))
    assert tokenizer_fingerprint(small_bpe) != tokenizer_fingerprint(course_tokenizer())


# --- the shipped course vocabulary ---------------------------------------------------------------


def test_course_tokenizer_shape():
    enc = course_tokenizer()
    assert enc.n_vocab == 4096
    assert enc.eot_token == 4095
    assert enc.encode(ENDOFTEXT, allowed_special="all") == [4095]
    assert sorted(enc._mergeable_ranks.values()) == list(range(4095))


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_course_tokenizer_round_trips(text):
    enc = course_tokenizer()
    assert enc.decode(enc.encode_ordinary(text)) == text


def test_course_tokenizer_compresses_english():
    enc = course_tokenizer()
    text = " ".join(CORPUS)
    n = len(enc.encode_ordinary(text))
    assert n < 0.4 * len(text.encode("utf-8"))  # > 2.5 bytes per token on ordinary English prose
    assert len(enc.encode_ordinary(" the")) == 1
