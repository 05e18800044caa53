"""Datasets: a small registry of public files, verified downloads, a local mirror, and loaders.

Every file is identified by the sha256 of the exact bytes the course uses. A file is fetched
from the cache (``data/``), else from ``GPT_DATA_MIRROR`` (a folder or an http(s) URL laid out
like the registry's ``relpath``), else from its public URLs in order. A download is written to a
temporary file, checked, and only then renamed into the cache, so ``data/`` never holds a partial
or unverified file. If the bytes differ from the pinned sha256 (the upstream file changed, or was
corrupted in transit) the file is refused: the course never trains silently on data other than
what its model card names.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


class DataError(RuntimeError):
    """A dataset file is missing, unreachable, or not the expected bytes."""


@dataclass(frozen=True)
class Resource:
    name: str
    relpath: str  # where the file lives in the cache and in a mirror
    sha256: str  # of the file the course uses (for a zip download: of the extracted member)
    urls: tuple[str, ...]  # tried in order
    license: str
    citation: str
    zip_member: str | None = None  # the url points to a zip holding this member
    meta: dict = field(default_factory=dict, hash=False, compare=False)


_UCI_CITATION = (
    "Almeida, T.A., Gómez Hidalgo, J.M., Yamakami, A. Contributions to the Study of SMS Spam Filtering: "
    "New Collection and Results. Proc. ACM DocEng 2011. UCI Machine Learning Repository, id 228, "
    "doi:10.24432/C5CC84."
)

REGISTRY: dict[str, Resource] = {}


def _register(r: Resource) -> None:
    REGISTRY[r.name] = r


_register(
    Resource(
        name="sms_spam",
        relpath="sms_spam_collection/SMSSpamCollection",
        sha256="7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
        urls=(
            "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
            "https://raw.githubusercontent.com/Prashant-Rijal-dev/UCI_Spam_Detection/"
            "b464495d06055bbafcfb003cd2e1a4074ca55edd/SMSSpamCollection",
        ),
        zip_member="SMSSpamCollection",
        license="CC BY 4.0",
        citation=_UCI_CITATION,
    )
)
_register(
    Resource(
        name="the_verdict",
        relpath="the-verdict.txt",
        sha256="b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f",
        urls=(
            "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/"
            "28c65cdfbc3338e2e040016eea4b7fdf556e4d57/ch02/01_main-chapter-code/the-verdict.txt",
        ),
        license="public domain",
        citation="Edith Wharton, 'The Verdict' (1908), text from Wikisource.",
    )
)

# Project Gutenberg books (public domain in the USA): (id, slug, title, sha256, source repo, commit).
_VYJ = ("vyjayanv-hub/112_TP_Vasudevan", "f983423acfbf1acaf7d7d92f78fdb56bc7ef31fa")
_DER = ("DerikGreeff/SMS-Assignment", "f2b795b020909120db17e2c2798d36784b7cb15a")
_ANNE = ("cmerenstein/HW-5", "f6dcc369501d5e802b2994c5aa6392c5b5e3a2ff")
GUTENBERG_BOOKS = [
    (1184, "the_count_of_monte_cristo", "The Count of Monte Cristo", "0e88c3611e45bb7c4bc329c71cd018eea39b6c489b565835de8d2daeccf35793", _VYJ),
    (1342, "pride_and_prejudice", "Pride and Prejudice", "bf72b178d84c65c7669ef3273d9144c526998ceb972878c1835b2200305d19fd", _VYJ),
    (1400, "great_expectations", "Great Expectations", "7cf356c42833ed45bf31bcb19bc77e9517a30914a37bea3970c133be4716b2f7", _VYJ),
    (175, "the_phantom_of_the_opera", "The Phantom of the Opera", "fce5d43a7d5659e8f013aab751af80f5ef1a632d83bcc58b8382a07286efbcc2", _VYJ),
    (20203, "autobiography_of_benjamin_franklin", "Autobiography of Benjamin Franklin", "21e0603fb09ee4acb9dcc3e3cff35975229f1c404308fb197980c145b635116e", _VYJ),
    (25344, "the_scarlet_letter", "The Scarlet Letter", "71124f8d7e9bba090110350b0959ae8be3c25ddbe5f96da14ea3e918d7e567ea", _VYJ),
    (2701, "moby_dick", "Moby Dick; Or, The Whale", "fb259a942dd7dad856d6093c4d4090acb782a6e3d37b6d843c0e0c962ac5f06e", _VYJ),
    (28054, "the_brothers_karamazov", "The Brothers Karamazov", "bc9822d548dd114be7d5b0f9642a9ab4ee1b3788f207a53a8bdadef942ab01f2", _VYJ),
    (345, "dracula", "Dracula", "9017c5102ad39d704b0a37d241b898bc0aaae2955e7123bc4569b68fca5e087c", _VYJ),
    (514, "little_women", "Little Women", "454c8f25f9420540799c95d3120d354255ba13e85757953690a28cfee1e54dad", _VYJ),
    (64317, "the_great_gatsby", "The Great Gatsby", "3865269180ab760c1ddcae0bd540c8c2ce2824fc8d7a556721f1ab8d68b3434b", _VYJ),
    (84, "frankenstein", "Frankenstein", "905e38dc26f492e18269229eb14edf2166760e17df1dc59c7fcb3be1f945c364", _VYJ),
    (98, "a_tale_of_two_cities", "A Tale of Two Cities", "5b0e73de2d968f6c978ed15315d868fbe78d01e61c797404872e689af76a36cc", _VYJ),
    (1661, "the_adventures_of_sherlock_holmes", "The Adventures of Sherlock Holmes", "08ef0a9094923ab5f648e2e7b02d458e697509930177cac570355d0736d0d423", _DER),
    (4300, "ulysses", "Ulysses", "71557d977f7437d7d3622f459c189ec15cf4584250d29ec2e8e611c913b0094d", _DER),
    (76, "adventures_of_huckleberry_finn", "Adventures of Huckleberry Finn", "65f52c8d2eec3ca5945c695e6bdb845376451ee37c1f7377bdc0a6d0a55f559a", _DER),
    (74, "the_adventures_of_tom_sawyer", "The Adventures of Tom Sawyer", "f801c96b2d807ecf88c8bad36e0d24caf5b370bff3199fe431ebbf62463a89bf", ("AshveenBansal98/Python-Text-Search", "8263c2cbc12a80db2f595e89a997cb721bdd0056")),
    (35, "the_time_machine", "The Time Machine", "7fb3a97247192d3ddbe13be43d0359d8395db73b884f395c4b5f15f6931acba2", ("felisevan/TermExtractRPCA", "95ccb2077530a671ab6f38b8d2424211fbc6a459")),
    (120, "treasure_island", "Treasure Island", "1b50cee77959beaaadc45acd3c20d448369a5c707227e057ac238e54e5eefb6f", ("GiovanniFaldani/AlgorithmsInDataScience-Homework", "e477b433a993d40da9e11cc9026cedee5739ae36")),
    (45, "anne_of_green_gables", "Anne of Green Gables", "7b4aeb17a0ea8ed6c6d60c0ec795c7cf87175f16ab70e4646b29134c50424a70", _ANNE),
    (47, "anne_of_avonlea", "Anne of Avonlea", "d69f8c36fba8ac867a37d314ecaf14cd372ddeb8a1f4f97b390369b5ea45e8e8", _ANNE),
    (51, "anne_of_the_island", "Anne of the Island", "bc00ef593a91574542522606912da23ff65dc46ceebaa2b21a6f2032b84275ae", _ANNE),
]
for _id, _slug, _title, _sha, (_repo, _commit) in GUTENBERG_BOOKS:
    _register(
        Resource(
            name=f"pg{_id}",
            relpath=f"pretrain/pg{_id}_{_slug}.txt",
            sha256=_sha,
            # The pinned copy (exact bytes) first; Project Gutenberg's current file as the backup
            # (it is accepted only if its bytes still match).
            urls=(
                f"https://raw.githubusercontent.com/{_repo}/{_commit}/pg{_id}.txt",
                f"https://www.gutenberg.org/cache/epub/{_id}/pg{_id}.txt",
            ),
            license="public domain in the USA (Project Gutenberg)",
            citation=f"{_title}, Project Gutenberg eBook #{_id}, https://www.gutenberg.org/ebooks/{_id}",
            meta={"title": _title, "gutenberg_id": _id},
        )
    )
PRETRAIN_BOOKS = [f"pg{b[0]}" for b in GUTENBERG_BOOKS]


# ---------------------------------------------------------------------------------------------
# Fetching


def data_dir() -> Path:
    """The download cache: ``$GPT_DATA_DIR``, else ``data/`` of a source checkout, else ``./data``."""
    if os.environ.get("GPT_DATA_DIR"):
        return Path(os.environ["GPT_DATA_DIR"]).expanduser()
    checkout = Path(__file__).resolve().parents[1] / "data"
    if checkout.is_dir():
        return checkout
    return Path.cwd() / "data"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, dest, progress: bool) -> None:
    """Stream ``url`` (http(s) or a local path) into the open binary file ``dest``."""
    if "://" not in url:
        with open(url, "rb") as src:
            shutil.copyfileobj(src, dest)
        return
    req = urllib.request.Request(url, headers={"User-Agent": "gpt-course"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        total = int(resp.headers.get("Content-Length") or 0) or None
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], leave=False)
        for chunk in iter(lambda: resp.read(1 << 16), b""):
            dest.write(chunk)
            if bar:
                bar.update(len(chunk))
        if bar:
            bar.close()


def _candidate_sources(res: Resource) -> list[tuple[str, bool]]:
    """(url or path, is_zip) in the order they are tried."""
    mirror = os.environ.get("GPT_DATA_MIRROR")
    if mirror:  # the mirror replaces the internet
        if "://" in mirror:
            return [(mirror.rstrip("/") + "/" + res.relpath, False)]
        return [(str(Path(mirror).expanduser() / res.relpath), False)]
    return [(u, res.zip_member is not None and u.endswith(".zip")) for u in res.urls]


def fetch(name: str, progress: bool = True) -> Path:
    """Path of the verified local copy of dataset file ``name`` (see ``REGISTRY``), downloading it if needed."""
    if name not in REGISTRY:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(REGISTRY)}")
    res = REGISTRY[name]
    target = data_dir() / res.relpath
    if target.exists():
        got = sha256_file(target)
        if got == res.sha256:
            return target
        raise DataError(
            f"{target} is in the cache but its sha256 is {got}, not {res.sha256}. It is not the file "
            f"the course uses; delete it and run again to fetch the right one."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for src, is_zip in _candidate_sources(res):
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                _download(src, f, progress)
            if is_zip:
                with zipfile.ZipFile(tmp) as z:
                    member = z.read(res.zip_member)
                tmp.write_bytes(member)
            got = sha256_file(tmp)
            if got != res.sha256:
                errors.append(f"{src}: sha256 {got} does not match the pinned {res.sha256} (file changed upstream?)")
                continue
            os.replace(tmp, target)  # atomic: the cache only ever sees a complete, verified file
            return target
        except (OSError, zipfile.BadZipFile, KeyError, ValueError) as e:
            errors.append(f"{src}: {e}")
        finally:
            tmp.unlink(missing_ok=True)
    where = os.environ.get("GPT_DATA_MIRROR") or "the internet"
    raise DataError(
        f"dataset file {res.relpath!r} ({name}) is not in the cache and could not be fetched from {where}:\n  "
        + "\n  ".join(errors)
        + f"\nPut the file (sha256 {res.sha256}) at {target}, or set GPT_DATA_MIRROR to a folder or "
        f"http URL that holds {res.relpath}."
    )


# ---------------------------------------------------------------------------------------------
# Loaders


def read_text(path: Path) -> str:
    """Read a UTF-8 text file (BOM dropped, line endings normalised to \\n); a clear error if it is not UTF-8."""
    try:
        with open(path, encoding="utf-8-sig", newline=None) as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not valid UTF-8 text (byte {e.start}: {e.reason})") from e


def strip_gutenberg(text: str, name: str = "text") -> str:
    """Keep only the book: the lines between ``*** START OF ...`` and ``*** END OF ...``
    (to the end of the file where the END marker is missing). A marker may be indented
    (pg35's END marker is)."""
    lines = text.split("\n")
    start = next((i for i, l in enumerate(lines) if l.lstrip().startswith("*** START OF")), None)
    if start is None:
        raise DataError(f"{name}: no '*** START OF' Project Gutenberg marker found")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("*** END OF")), len(lines))
    return "\n".join(lines[start + 1 : end]).strip() + "\n"


def load_book(name: str) -> str:
    """One Gutenberg book (registry name such as ``"pg1342"``), header and footer removed."""
    return strip_gutenberg(read_text(fetch(name, progress=False)), name)


def load_pretraining_texts(books: list[str] | None = None) -> dict[str, str]:
    """The pretraining corpus: ``{registry name: book text}`` for the 22 Gutenberg books (or ``books``)."""
    return {b: load_book(b) for b in (books or PRETRAIN_BOOKS)}


def load_the_verdict() -> str:
    return read_text(fetch("the_verdict", progress=False))


def load_sms_spam():
    """The SMS Spam Collection as a DataFrame with columns ``label`` ('ham'/'spam') and ``text``.

    Each line is ``label<TAB>text``; it is split on the first TAB with no quote handling (a CSV
    reader with default quoting merges lines after messages starting with '"' and loses rows).
    """
    import pandas as pd

    path = fetch("sms_spam")
    rows = []
    for n, line in enumerate(read_text(path).split("\n"), 1):
        if not line:
            continue
        label, sep, text = line.partition("\t")
        if not sep:
            raise DataError(f"{path}:{n}: no TAB between label and text")
        if label not in ("ham", "spam"):
            raise DataError(f"{path}:{n}: label {label!r} is neither 'ham' nor 'spam'")
        rows.append((label, text))
    return pd.DataFrame(rows, columns=["label", "text"])


# ---------------------------------------------------------------------------------------------
# Token datasets


def tokenize_to_array(texts, tokenizer, cache: str | os.PathLike | None = None, progress: bool = False) -> np.ndarray:
    """Encode texts into one array of token ids, ``<|endoftext|>`` after each text.

    With ``cache``, the array is saved as ``.npy`` the first time and loaded afterwards. The
    cache is only valid for the same texts and tokenizer; name it accordingly (see
    :func:`corpus_token_cache`).
    """
    if cache is not None and Path(cache).exists():
        return np.load(cache)
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts or not any(t for t in texts):
        raise ValueError("cannot tokenize an empty corpus")
    eot = tokenizer.eot_token
    dtype = np.uint16 if tokenizer.n_vocab <= 65536 else np.uint32
    if progress:
        from tqdm.auto import tqdm

        texts = tqdm(texts, desc="tokenizing")
    parts = [np.asarray(tokenizer.encode_ordinary(t) + [eot], dtype=dtype) for t in texts]
    ids = np.concatenate(parts)
    if cache is not None:
        _save_npy(Path(cache), ids)
    return ids


def corpus_token_cache(names: list[str], tokenizer, tag: str = "") -> Path:
    """Cache path for the tokenized corpus of registry files ``names`` under ``tokenizer``."""
    from .tokenizer import tokenizer_fingerprint

    key = hashlib.sha256(
        ("|".join(REGISTRY[n].sha256 for n in names) + tokenizer_fingerprint(tokenizer) + tag).encode()
    ).hexdigest()[:16]
    return data_dir() / "cache" / f"tokens-{key}.npy"


def split_ids(ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Split a token stream into its first (1 - val_fraction) and last val_fraction."""
    cut = int(len(ids) * (1 - val_fraction))
    return ids[:cut], ids[cut:]


class TokenWindowDataset(torch.utils.data.Dataset):
    """Next-token windows over a token stream: item i is (ids[s : s+ctx], ids[s+1 : s+ctx+1]) with s = i·stride.

    ``stride == context_length`` gives non-overlapping windows; a smaller stride overlaps them.
    """

    def __init__(self, ids, context_length: int, stride: int | None = None):
        if context_length <= 0:
            raise ValueError("context_length must be positive")
        stride = stride or context_length
        if stride <= 0:
            raise ValueError("stride must be positive")
        self.ids = torch.from_numpy(np.asarray(ids).astype(np.int64))
        self.context_length, self.stride = context_length, stride
        if len(self.ids) < context_length + 1:
            raise ValueError(f"need at least {context_length + 1} tokens for one window, got {len(self.ids)}")

    def __len__(self):
        return (len(self.ids) - self.context_length - 1) // self.stride + 1

    def __getitem__(self, i):
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        s = (i % len(self)) * self.stride
        chunk = self.ids[s : s + self.context_length + 1]
        return chunk[:-1], chunk[1:]


def create_dataloader(ids, context_length: int, stride: int | None = None, batch_size: int = 8, shuffle: bool = True, drop_last: bool = True, seed: int = 0):
    """A DataLoader of (inputs, targets) batches over :class:`TokenWindowDataset`."""
    ds = TokenWindowDataset(ids, context_length, stride)
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, generator=g)


def load_pretraining_ids(tokenizer, books: list[str] | None = None, val_fraction: float = 0.05, progress: bool = False):
    """Token ids of the pretraining corpus, split per book: the last ``val_fraction`` of every book
    is held out for validation, the rest is for training. Returns ``(train_ids, val_ids)``.

    The tokenized corpus is cached under ``data/cache`` (keyed by the books' sha256 and the tokenizer).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError("val_fraction must be between 0 and 1")
    books = list(books or PRETRAIN_BOOKS)
    # The tag names the text preparation: change it whenever strip_gutenberg/read_text change what a book yields.
    cache = corpus_token_cache(books, tokenizer, tag="per-book-v2")
    offsets_path = cache.with_suffix(".offsets.npy")
    if cache.exists() and offsets_path.exists():
        ids, offsets = np.load(cache), np.load(offsets_path)
    else:
        texts = load_pretraining_texts(books)
        parts = [tokenize_to_array(t, tokenizer) for t in (texts.values() if not progress else _tqdm(texts.values()))]
        ids = np.concatenate(parts)
        offsets = np.cumsum([0] + [len(p) for p in parts])
        _save_npy(offsets_path, offsets)
        _save_npy(cache, ids)
    train, val = [], []
    for a, b in zip(offsets[:-1], offsets[1:]):
        cut = a + int((b - a) * (1 - val_fraction))
        train.append(ids[a:cut])
        val.append(ids[cut:b])
    return np.concatenate(train), np.concatenate(val)


def _tqdm(it):
    from tqdm.auto import tqdm

    return tqdm(list(it), desc="tokenizing")


def _save_npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.part")
    with os.fdopen(fd, "wb") as f:
        np.save(f, arr)
    os.replace(tmp, path)
