"""Tokenizers: GPT-2's BPE built offline, the course BPE trainer, prompts, the shipped vocabulary."""

import pytest

from gpt.errors import ConfigError
from gpt.io.tokenizer_files import tokenizer_fingerprint
from gpt.tokenizer import (
    ENDOFTEXT,
    course_tokenizer,
    encode_prompt,
    get_tokenizer,
    gpt2_tokenizer,
    pretokenize,
    train_bpe,
)
from helpers_tokenizer import CORPUS, ROUND_TRIP


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


# --- prompts ---------------------------------------------------------------------------------------


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
