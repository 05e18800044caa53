"""Downloads: a small registry of public files, verified downloads, a local mirror, and the cache.

Every file is identified by the sha256 of the exact bytes the course uses. A file is fetched
from the cache (``data/``, or ``$GPT_DATA_DIR``), else from ``GPT_DATA_MIRROR`` (a folder or an
http(s) URL laid out like the registry's ``relpath``), else from its public URLs in order. A
download is written with :func:`gpt.io.files.atomic_file` to a temporary ``.<name>.<random>.part``
file, checked with :func:`gpt.io.files.sha256_file`, and only then renamed into the cache, so the
cache never holds a partial or unverified file. The temporary file is removed on any failure,
Ctrl-C included; one left by a killed process is removed by a later fetch once no process has
written to it for :data:`STALE_PART_SECONDS`. If the bytes differ from the pinned sha256 (the
upstream file changed, or was corrupted in transit) the file is refused: the course never trains
silently on data other than what its model card names.

Every problem a user can cause raises :class:`~gpt.errors.DataError` (a file: unknown, missing,
damaged, or the cache cannot be written; a full disk is reported as such, never blamed on the
source) or :class:`~gpt.errors.ConfigError` (an argument that cannot work), before any work where
possible. What the files hold for the course (books, token windows) is :mod:`gpt.data`.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import glob
import http.client
import io
import os
import shutil
import time
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, DataError
from ..runtime.progress import progress_bar
from .files import OutputError, atomic_file, sha256_file


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
# Names


def resource(name) -> Resource:
    """The registry entry ``name``; a :class:`DataError` naming some known names if there is none."""
    if isinstance(name, str) and name in REGISTRY:
        return REGISTRY[name]
    close = difflib.get_close_matches(str(name), list(REGISTRY), n=3)
    others = [n for n in REGISTRY if n not in PRETRAIN_BOOKS]
    raise DataError(
        f"unknown dataset {name!r}"
        + (f" (did you mean {', '.join(close)}?)" if close else "")
        + f"; known: {', '.join(others)} and the {len(PRETRAIN_BOOKS)} books {', '.join(PRETRAIN_BOOKS[:4])}, ... "
        "(all names in gpt.io.downloads.REGISTRY, the books in gpt.io.downloads.PRETRAIN_BOOKS)"
    )


def book_names(books) -> list[str]:
    """``books`` checked before any work: ``None`` means all of ``PRETRAIN_BOOKS``; a name is one book."""
    if books is None:
        return list(PRETRAIN_BOOKS)
    books = [books] if isinstance(books, str) else list(books)
    if not books:
        raise ConfigError("the list of books is empty; name at least one (such as 'pg1342'), or pass None for all of them")
    for b in books:
        if "gutenberg_id" not in resource(b).meta:
            raise DataError(f"{b!r} is a dataset but not a Project Gutenberg book; the books are in gpt.io.downloads.PRETRAIN_BOOKS")
    twice = sorted({b for b in books if books.count(b) > 1})
    if twice:
        raise ConfigError(f"book(s) {', '.join(twice)} listed more than once; name each book once")
    return books


# ---------------------------------------------------------------------------------------------
# Fetching

STALE_PART_SECONDS = 300
"""A ``.part`` file nobody has written to for this long was left by a killed download and is removed.
A live download writes at least every 30 s (its read timeout), so it never looks stale; two
processes fetching the same file into the same cache at the same time are not supported."""

_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def data_dir() -> Path:
    """The download cache: ``$GPT_DATA_DIR``, else ``data/`` of a source checkout, else ``./data``."""
    if os.environ.get("GPT_DATA_DIR"):
        return Path(os.environ["GPT_DATA_DIR"]).expanduser()
    checkout = Path(__file__).resolve().parents[2] / "data"
    if checkout.is_dir():
        return checkout
    return Path.cwd() / "data"


def cache_write_error(e: OSError, path: Path) -> DataError:
    """A :class:`DataError` for ``e``, raised while writing ``path``: names the folder and the fix."""
    root = data_dir()
    try:
        in_cache = Path(path).resolve().is_relative_to(root.resolve())
    except OSError:
        in_cache = False
    where = f"the data cache {root}" if in_cache else f"the folder {Path(path).parent}"
    fix = "set the environment variable GPT_DATA_DIR to a folder elsewhere" if in_cache else "choose another path"
    if e.errno in _DISK_FULL:
        return DataError(f"the disk holding {where} is full ({e.strerror}) while writing {path}; free some space or {fix}")
    if e.errno in _NOT_WRITABLE:
        return DataError(f"{where} cannot be written ({e.strerror}: {e.filename or path}); make it writable or {fix}")
    return DataError(f"{path} cannot be written in {where} ({e.strerror or e}); {fix}")


def _remove_stale_parts(target: Path) -> None:
    """Delete ``.<target name>.<random>.part`` files next to ``target`` untouched for STALE_PART_SECONDS."""
    prefix = f".{target.name}."
    for p in target.parent.glob(glob.escape(prefix) + "*.part"):
        if "." in p.name[len(prefix) : -len(".part")]:
            continue  # another file's temporary file (a target named "<target name>.<more>")
        with contextlib.suppress(OSError):
            if time.time() - p.stat().st_mtime > STALE_PART_SECONDS:
                p.unlink()



def _download(url: str, dest, progress: bool) -> None:
    """Stream ``url`` (http(s) or a local path) into ``dest`` (an object with ``write``)."""
    if "://" not in url:
        with open(url, "rb") as src:
            shutil.copyfileobj(src, dest)
        return
    req = urllib.request.Request(url, headers={"User-Agent": "gpt-course"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        total = int(resp.headers.get("Content-Length") or 0) or None
        bar = None
        if progress:
            bar = progress_bar(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], leave=False)
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



class _WrongBytes(Exception):
    """Raised inside :func:`atomic_file` when a download's sha256 is not the pinned one, so that nothing is kept."""


def _fetch_from(src: str, is_zip: bool, res: Resource, target: Path, progress: bool) -> str | None:
    """Download ``src`` into ``target`` with :func:`gpt.io.files.atomic_file`, renamed into place only when its sha256 is the pinned one.

    Returns None on success, else why this source failed. A failure to write the cache raises
    :class:`DataError` at once (another source would fail the same way). The temporary file is
    removed whatever happens, Ctrl-C included.
    """
    try:
        with atomic_file(target, suffix=".part") as out:
            if is_zip:  # the zip (a few hundred kB) in memory; only its member goes into the cache
                archive = io.BytesIO()
                _download(src, archive, progress)
                with zipfile.ZipFile(archive) as z:
                    out.write(z.read(res.zip_member))
            else:
                _download(src, out, progress)
            out.sync()
            got = sha256_file(out.temporary)
            if got != res.sha256:
                raise _WrongBytes(f"sha256 {got} does not match the pinned {res.sha256} (file changed upstream?)")
    except OutputError as e:  # a write into the cache
        cause = e.__cause__ if isinstance(e.__cause__, OSError) else e
        raise cache_write_error(cause, target) from cause
    except _WrongBytes as e:
        return str(e)
    except OSError as e:
        if e.errno in _DISK_FULL or e.errno == errno.EROFS:  # a write into the cache, never the source's fault
            raise cache_write_error(e, target) from e
        return str(e)
    except (zipfile.BadZipFile, KeyError, ValueError, http.client.HTTPException) as e:
        return f"{type(e).__name__}: {e}"
    return None


def _check_cached(target: Path, res: Resource) -> Path:
    if not target.is_file():
        raise DataError(f"{target} is in the data cache but is not a file; delete it and run again")
    try:
        got = sha256_file(target)
    except OSError as e:
        raise DataError(f"{target} is in the data cache but cannot be read ({e.strerror or e}); fix it or delete it") from e
    if got != res.sha256:
        raise DataError(
            f"{target} is in the cache but its sha256 is {got}, not {res.sha256}. It is not the file "
            f"the course uses; delete it and run again to fetch the right one."
        )
    return target


def fetch(name: str, progress: bool = True) -> Path:
    """Path of the verified local copy of dataset file ``name`` (see ``REGISTRY``), downloading it if needed."""
    res = resource(name)
    target = data_dir() / res.relpath
    if target.exists():
        return _check_cached(target, res)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise cache_write_error(e, target) from e
    _remove_stale_parts(target)
    errors = []
    for src, is_zip in _candidate_sources(res):
        why = _fetch_from(src, is_zip, res, target, progress)
        if why is None:
            return target
        errors.append(f"{src}: {why}")
    where = os.environ.get("GPT_DATA_MIRROR") or "the internet"
    raise DataError(
        f"dataset file {res.relpath!r} ({name}) is not in the cache and could not be fetched from {where}:\n  "
        + "\n  ".join(errors)
        + f"\nPut the file (sha256 {res.sha256}) at {target}, or set GPT_DATA_MIRROR to a folder or "
        f"http URL that holds {res.relpath}."
    )



def read_text(path: Path) -> str:
    """Read a UTF-8 text file (BOM dropped, line endings normalised to \\n); a clear error if it is not UTF-8."""
    try:
        with open(path, encoding="utf-8-sig", newline=None) as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not valid UTF-8 text (byte {e.start}: {e.reason})") from e
    except FileNotFoundError as e:
        raise DataError(f"{path} does not exist; check the path") from e
    except IsADirectoryError as e:
        raise DataError(f"{path} is a folder, not a text file; give the path of a file") from e
    except OSError as e:
        raise DataError(f"{path} cannot be read ({e.strerror or e})") from e
