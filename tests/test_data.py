"""The data layer: verified fetches through GPT_DATA_MIRROR (a folder and a loopback HTTP server),
the cache, the loaders, and the token datasets."""

import dataclasses
import errno
import hashlib
import http.server
import os
import re
import shutil
import threading
import time

import numpy as np
import pytest
import torch

import gpt.data as data
from gpt.data import (
    REGISTRY,
    ConfigError,
    DataError,
    TokenWindowDataset,
    create_dataloader,
    fetch,
    load_sms_spam,
    read_text,
    sha256_file,
    split_ids,
    strip_gutenberg,
    tokenize_to_array,
)

VERDICT = REGISTRY["the_verdict"]


def _files_in(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty download cache."""
    d = tmp_path / "cache"
    monkeypatch.setenv("GPT_DATA_DIR", str(d))
    return d


class _Server:
    """http.server on 127.0.0.1 (a free port) serving a folder, counting the requests."""

    def __init__(self, root):
        self.requests = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(root), **kw)

            def log_message(self, *args):  # keep the test output quiet
                pass

            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_root(tmp_path, mirror_dir):
    """A folder laid out like the mirror, holding copies of the small files."""
    root = tmp_path / "www"
    (root / "sms_spam_collection").mkdir(parents=True)
    shutil.copyfile(mirror_dir / VERDICT.relpath, root / VERDICT.relpath)
    shutil.copyfile(mirror_dir / REGISTRY["sms_spam"].relpath, root / REGISTRY["sms_spam"].relpath)
    return root


# --- fetching from a folder mirror ----------------------------------------------------------------


def test_fetch_from_folder_mirror(mirror_dir, cache, monkeypatch):
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    path = fetch("the_verdict", progress=False)
    assert path == cache / VERDICT.relpath
    assert sha256_file(path) == VERDICT.sha256
    assert _files_in(cache) == [VERDICT.relpath]  # no temporary files left behind


def test_second_fetch_uses_cache(mirror_dir, cache, monkeypatch):
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    first = fetch("the_verdict", progress=False)
    monkeypatch.setenv("GPT_DATA_MIRROR", str(cache.parent / "nowhere"))  # the mirror is gone
    assert fetch("the_verdict", progress=False) == first


@pytest.mark.parametrize("name", ["no_such_dataset", "pg99999", "", "PG1342", None])
def test_fetch_unknown_name(name, cache):
    with pytest.raises(DataError, match=f"unknown dataset {re.escape(repr(name))}.*known: sms_spam, the_verdict"):
        fetch(name)
    assert not cache.exists()  # nothing created


def test_registry_is_consistent():
    assert len(data.PRETRAIN_BOOKS) == 22
    for name, res in REGISTRY.items():
        assert res.name == name
        assert re.fullmatch("[0-9a-f]{64}", res.sha256), name
        assert res.urls and res.license and res.citation
    assert len({r.relpath for r in REGISTRY.values()}) == len(REGISTRY)


def test_registry_matches_mirror(mirror_dir):
    for res in REGISTRY.values():
        path = mirror_dir / res.relpath
        assert path.exists(), f"{res.relpath} missing from the mirror"
        assert path.stat().st_size > 0


# --- fetching over HTTP -------------------------------------------------------------------------


def test_fetch_over_http(http_root, cache, monkeypatch):
    with _Server(http_root) as server:
        monkeypatch.setenv("GPT_DATA_MIRROR", server.url + "/")
        path = fetch("the_verdict", progress=True)
        assert sha256_file(path) == VERDICT.sha256
        assert path == cache / VERDICT.relpath
        assert server.requests == ["/the-verdict.txt"]
        # second fetch: served from the cache, no request
        assert fetch("the_verdict", progress=False) == path
        assert server.requests == ["/the-verdict.txt"]
    assert _files_in(cache) == [VERDICT.relpath]


def test_http_wrong_bytes_are_refused(http_root, cache, monkeypatch):
    (http_root / VERDICT.relpath).write_bytes(b"these are not the bytes you are looking for\n")
    with _Server(http_root) as server:
        monkeypatch.setenv("GPT_DATA_MIRROR", server.url)
        with pytest.raises(DataError, match="sha256") as err:
            fetch("the_verdict", progress=False)
        assert server.requests == ["/the-verdict.txt"]
    msg = str(err.value)
    assert VERDICT.sha256 in msg
    assert hashlib.sha256(b"these are not the bytes you are looking for\n").hexdigest() in msg
    assert _files_in(cache) == []  # neither the target nor a .part file


def test_http_missing_file(http_root, cache, monkeypatch):
    (http_root / VERDICT.relpath).unlink()
    with _Server(http_root) as server:
        monkeypatch.setenv("GPT_DATA_MIRROR", server.url)
        with pytest.raises(DataError, match="404"):
            fetch("the_verdict", progress=False)
    assert _files_in(cache) == []


def test_unreachable_mirror_names_file_and_place(cache, monkeypatch):
    # a port nobody listens on: bind one, note it, close it
    with http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler) as s:
        port = s.server_address[1]
    monkeypatch.setenv("GPT_DATA_MIRROR", f"http://127.0.0.1:{port}")
    with pytest.raises(DataError) as err:
        fetch("the_verdict", progress=False)
    msg = str(err.value)
    assert "'the-verdict.txt'" in msg  # the missing file
    assert str(cache / VERDICT.relpath) in msg  # where to put it
    assert VERDICT.sha256 in msg
    assert "GPT_DATA_MIRROR" in msg
    assert _files_in(cache) == []


def test_missing_in_folder_mirror(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("GPT_DATA_MIRROR", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="not in the cache and could not be fetched"):
        fetch("pg1342", progress=False)
    assert _files_in(cache) == []


def test_corrupted_cached_file(mirror_dir, cache, monkeypatch):
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    path = fetch("the_verdict", progress=False)
    path.chmod(0o644)
    with open(path, "ab") as f:
        f.write(b" (one more line)")
    with pytest.raises(DataError, match="in the cache but its sha256") as err:
        fetch("the_verdict", progress=False)
    assert "delete it" in str(err.value)


# --- loaders ------------------------------------------------------------------------------------


def test_load_sms_spam(mirror_dir, cache, monkeypatch):
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    df = load_sms_spam()
    assert list(df.columns) == ["label", "text"]
    assert len(df) == 5574
    assert df["label"].value_counts().to_dict() == {"ham": 4827, "spam": 747}
    assert df["text"].str.startswith('"').sum() == 54  # quotes kept as they are, no rows merged
    assert df["text"].nunique() == 5171
    assert df.iloc[0]["text"].startswith("Go until jurong point")


def _fake_mirror(tmp_path, monkeypatch, name: str, content: bytes):
    """A mirror holding ``content`` as registry file ``name``, with the registry pinned to its sha256."""
    mirror = tmp_path / "fake_mirror"
    res = REGISTRY[name]
    (mirror / res.relpath).parent.mkdir(parents=True, exist_ok=True)
    (mirror / res.relpath).write_bytes(content)
    monkeypatch.setitem(REGISTRY, name, dataclasses.replace(res, sha256=hashlib.sha256(content).hexdigest()))
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror))


def _fake_sms_mirror(tmp_path, monkeypatch, content: bytes):
    _fake_mirror(tmp_path, monkeypatch, "sms_spam", content)


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


BOOK = "\n".join(
    [
        "The Project Gutenberg eBook of Something",
        "header line",
        "*** START OF THE PROJECT GUTENBERG EBOOK SOMETHING ***",
        "",
        "Chapter 1",
        "The text of the book.",
        "",
        "*** END OF THE PROJECT GUTENBERG EBOOK SOMETHING ***",
        "licence footer",
    ]
)


def test_strip_gutenberg():
    assert strip_gutenberg(BOOK) == "Chapter 1\nThe text of the book.\n"


def test_strip_gutenberg_without_end_marker():
    no_end = BOOK.split("*** END")[0] + "more text at the end\n"
    assert strip_gutenberg(no_end) == "Chapter 1\nThe text of the book.\n\nmore text at the end\n"


def test_strip_gutenberg_indented_end_marker():
    # pg35 (The Time Machine) indents its END marker; the licence after it must not leak into the corpus
    indented = BOOK.replace("*** END OF", "            *** END OF")
    assert strip_gutenberg(indented) == "Chapter 1\nThe text of the book.\n"


def test_strip_gutenberg_without_start_marker():
    with pytest.raises(DataError, match="pg999: no '\\*\\*\\* START OF'"):
        strip_gutenberg("just some text\n*** END OF IT ***\n", "pg999")


def test_real_books_are_stripped(mirror_dir, cache, monkeypatch):
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    # pg35: CRLF, both markers; pg47: BOM and no END marker
    time_machine = data.load_book("pg35")
    assert "\r" not in time_machine and "Project Gutenberg" not in time_machine[:2000]
    assert "The Time Traveller" in time_machine[:5000]
    assert "*** END" not in time_machine and "Project Gutenberg License" not in time_machine
    avonlea = data.load_book("pg47")
    assert not avonlea.startswith("\ufeff") and "*** START" not in avonlea
    assert avonlea.startswith("Produced by") and avonlea.endswith("the echoes bided their time.\n")


def test_every_book_is_stripped(mirror_dir, cache, monkeypatch):
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    texts = data.load_pretraining_texts()
    assert list(texts) == data.PRETRAIN_BOOKS
    for name, text in texts.items():
        for marker in ("*** START OF", "*** END OF", "FULL LICENSE", "Project Gutenberg License", "\r", "\ufeff"):
            assert marker not in text, f"{name}: {marker!r} left in the text"
        assert len(text) > 150_000, name


def test_read_text(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(b"\xef\xbb\xbfline one\r\nline two \xc2\xa3\r\n")
    assert read_text(p) == "line one\nline two £\n"


def test_read_text_rejects_non_utf8(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("café £5".encode("latin-1"))
    with pytest.raises(DataError, match="not valid UTF-8"):
        read_text(p)


# --- token datasets -----------------------------------------------------------------------------


def test_token_windows_non_overlapping():
    ids = np.arange(21)
    ds = TokenWindowDataset(ids, context_length=4)
    assert len(ds) == 5  # starts 0, 4, 8, 12, 16 (the last needs tokens 16..20)
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.tolist() == list(range(4 * i, 4 * i + 4))
        assert y.tolist() == list(range(4 * i + 1, 4 * i + 5))  # targets are the inputs shifted by one
        assert x.dtype == torch.int64
    with pytest.raises(IndexError):
        ds[5]
    assert ds[-1][0].tolist() == ds[4][0].tolist()


def test_token_windows_stride():
    ds = TokenWindowDataset(np.arange(10), context_length=4, stride=2)
    assert len(ds) == 3  # starts 0, 2, 4
    assert [ds[i][0].tolist() for i in range(3)] == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]]
    assert ds[2][1].tolist() == [5, 6, 7, 8]
    assert len(TokenWindowDataset(np.arange(10), 4, stride=1)) == 6
    assert len(TokenWindowDataset(np.arange(5), 4)) == 1  # exactly context + 1 tokens


def test_token_windows_too_short():
    with pytest.raises(ConfigError, match="need at least 5 tokens for one window of context_length 4, got 4"):
        TokenWindowDataset(np.arange(4), context_length=4)


def test_dataloader_batches():
    dl = create_dataloader(np.arange(200), context_length=8, batch_size=4, shuffle=True, seed=3)
    batches = list(dl)
    assert len(batches) == 6  # 24 windows, drop_last
    x, y = batches[0]
    assert x.shape == y.shape == (4, 8)
    assert torch.equal(x[:, 1:], y[:, :-1])
    again = list(create_dataloader(np.arange(200), context_length=8, batch_size=4, shuffle=True, seed=3))
    assert len(again) == len(batches) and all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    assert x[:, 0].tolist() != [0, 8, 16, 24]  # shuffled: not the first four windows in order


def test_split_ids():
    train, val = split_ids(np.arange(100), 0.1)
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))


class _CountingTokenizer:
    """Wraps a tiktoken Encoding and counts encode calls."""

    def __init__(self, enc):
        self.enc, self.calls = enc, 0
        self.eot_token, self.n_vocab = enc.eot_token, enc.n_vocab

    def encode_ordinary(self, text):
        self.calls += 1
        return self.enc.encode_ordinary(text)


def test_tokenize_to_array_and_cache(tmp_path):
    from gpt.tokenizer import course_tokenizer

    enc = course_tokenizer()
    tok = _CountingTokenizer(enc)
    texts = ["Hello there.", "General Kenobi!"]
    want = enc.encode_ordinary(texts[0]) + [enc.eot_token] + enc.encode_ordinary(texts[1]) + [enc.eot_token]
    ids = tokenize_to_array(texts, tok)
    assert ids.tolist() == want and ids.dtype == np.uint16
    cache = tmp_path / "c" / "ids.npy"
    assert tokenize_to_array(texts, tok, cache=cache).tolist() == want
    assert cache.exists() and tok.calls == 4
    # the second call loads the cache and does not tokenize
    assert tokenize_to_array(texts, tok, cache=cache).tolist() == want
    assert tok.calls == 4
    assert [p.name for p in cache.parent.iterdir()] == ["ids.npy"]


def test_tokenize_to_array_uint32_for_big_vocab():
    from gpt.tokenizer import gpt2_tokenizer

    assert tokenize_to_array("Hello, world", gpt2_tokenizer()).tolist() == [15496, 11, 995, 50256]


def test_tokenize_empty_corpus():
    from gpt.tokenizer import course_tokenizer

    with pytest.raises(ValueError, match="empty corpus"):
        tokenize_to_array(["", ""], course_tokenizer())


def test_load_pretraining_ids_split_per_book(mirror_dir, cache, monkeypatch):
    from gpt.tokenizer import course_tokenizer

    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    enc = course_tokenizer()
    books = ["pg35", "pg84"]
    train, val = data.load_pretraining_ids(enc, books, val_fraction=0.1)
    parts = [tokenize_to_array(data.load_book(b), enc) for b in books]
    cuts = [int(len(p) * 0.9) for p in parts]
    assert np.array_equal(train, np.concatenate([p[:c] for p, c in zip(parts, cuts)]))
    assert np.array_equal(val, np.concatenate([p[c:] for p, c in zip(parts, cuts)]))
    # cached: a second call reads the token file, even with the books gone from the mirror
    monkeypatch.setenv("GPT_DATA_MIRROR", str(cache / "nowhere"))
    for b in books:
        (cache / REGISTRY[b].relpath).unlink()
    train2, val2 = data.load_pretraining_ids(enc, books, val_fraction=0.1)
    assert np.array_equal(train, train2) and np.array_equal(val, val2)
    with pytest.raises(ConfigError, match="val_fraction must be a number between 0 and 1"):
        data.load_pretraining_ids(enc, books, val_fraction=0.0)


# --- bad inputs and faults: each one a DataError/ConfigError that names the problem and the fix -------

SMS = REGISTRY["sms_spam"]
TINY_BOOK = b"header\n*** START OF A TINY BOOK ***\nOne two three four five six seven eight nine ten.\n*** END OF IT ***\n"


def _parts(folder):
    return [p.name for p in folder.rglob("*.part")]


class _FailingFile:
    """A file whose first write stores a few bytes and then raises ``error`` (a disk that fails mid-write)."""

    def __init__(self, f, error):
        self.f, self.error = f, error

    def write(self, b):
        self.f.write(bytes(b)[:10])
        raise self.error

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _fail_temp_writes(monkeypatch, error):
    """Every file opened with os.fdopen (the temporary file of a download or a .npy) fails on write."""
    real = os.fdopen
    monkeypatch.setattr(data.os, "fdopen", lambda *a, **kw: _FailingFile(real(*a, **kw), error))


def _interrupt_download(monkeypatch, error):
    """Run the real download, but raise ``error`` after the first 100 bytes reach the temporary file."""
    real = data._download

    class Dest:
        def __init__(self, dest):
            self.dest = dest

        def write(self, b):
            self.dest.write(bytes(b)[:100])
            raise error

    monkeypatch.setattr(data, "_download", lambda url, dest, progress: real(url, Dest(dest), progress))


@pytest.fixture
def tiny_book(tmp_path, cache, monkeypatch):
    """pg35 replaced by a 13-token book in a fake mirror (fast to tokenize)."""
    _fake_mirror(tmp_path, monkeypatch, "pg35", TINY_BOOK)
    from gpt.tokenizer import course_tokenizer

    return course_tokenizer()


@pytest.mark.parametrize(
    "err, phrase",
    [
        (errno.ENOSPC, "is full"),
        (errno.EDQUOT, "is full"),
        (errno.EACCES, "cannot be written"),
        (errno.EROFS, "cannot be written"),
        (errno.EIO, "cannot be written"),
    ],
)
def test_fetch_cache_write_fails(err, phrase, mirror_dir, cache, monkeypatch):
    """A write into the cache that fails is the cache's problem (named, with GPT_DATA_DIR), not the source's."""
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    _fail_temp_writes(monkeypatch, OSError(err, os.strerror(err)))
    with pytest.raises(DataError, match=f"{phrase}.*GPT_DATA_DIR") as e:
        fetch("sms_spam", progress=False)
    assert f"data cache {cache}" in str(e.value)
    assert "could not be fetched" not in str(e.value) and str(mirror_dir) not in str(e.value)
    assert _files_in(cache) == []  # no .part file, no target


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS])
def test_fetch_copy_raises_disk_error(err, mirror_dir, cache, monkeypatch):
    """The copy function itself raising ENOSPC/EROFS is still blamed on the cache, and the .part file is removed."""
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    _interrupt_download(monkeypatch, OSError(err, os.strerror(err)))
    with pytest.raises(DataError, match=f"data cache {re.escape(str(cache))}.*GPT_DATA_DIR") as e:
        fetch("sms_spam", progress=False)
    assert "could not be fetched" not in str(e.value)
    assert _files_in(cache) == []


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EACCES])
def test_fetch_temp_file_cannot_be_created(err, mirror_dir, cache, monkeypatch):
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))

    def mkstemp(*a, **kw):
        raise OSError(err, os.strerror(err), kw.get("dir"))

    monkeypatch.setattr(data.tempfile, "mkstemp", mkstemp)
    with pytest.raises(DataError, match="GPT_DATA_DIR") as e:
        fetch("sms_spam", progress=False)
    assert str(cache) in str(e.value)


def test_fetch_source_permission_error_is_the_sources(mirror_dir, cache, monkeypatch):
    """EACCES while *reading* the source is that source's failure (listed with its path), not the cache's."""
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))

    def unreadable(url, dest, progress):
        raise PermissionError(errno.EACCES, "Permission denied", url)

    monkeypatch.setattr(data, "_download", unreadable)
    with pytest.raises(DataError, match="could not be fetched") as e:
        fetch("sms_spam", progress=False)
    assert str(mirror_dir / SMS.relpath) in str(e.value) and "GPT_DATA_DIR" not in str(e.value)
    assert _parts(cache) == []


def test_fetch_read_only_cache(mirror_dir, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("chmod does not stop this user (root) from writing")
        monkeypatch.setenv("GPT_DATA_DIR", str(ro))
        monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
        with pytest.raises(DataError, match=f"data cache {re.escape(str(ro))} cannot be written.*GPT_DATA_DIR"):
            fetch("the_verdict", progress=False)
    finally:
        ro.chmod(0o700)


def test_data_dir_is_a_file(mirror_dir, tmp_path, monkeypatch):
    not_a_dir = tmp_path / "data.txt"
    not_a_dir.write_text("a file, not a folder\n")
    monkeypatch.setenv("GPT_DATA_DIR", str(not_a_dir))
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    with pytest.raises(DataError, match=f"data cache {re.escape(str(not_a_dir))}.*GPT_DATA_DIR"):
        fetch("the_verdict", progress=False)


def test_cached_file_is_a_folder(cache):
    (cache / VERDICT.relpath).mkdir(parents=True)
    with pytest.raises(DataError, match="is in the data cache but is not a file; delete it"):
        fetch("the_verdict", progress=False)


def test_killed_download_leaves_no_part_for_long(mirror_dir, cache, monkeypatch):
    """A .part file of a killed (SIGKILL) download is removed by the next download of that file;
    one written to recently (a download in progress) is left alone, as is another file's."""
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    folder = (cache / SMS.relpath).parent
    folder.mkdir(parents=True)
    stale, live, other = (folder / n for n in (".SMSSpamCollection.abc123.part", ".SMSSpamCollection.xyz789.part", ".readme.abc123.part"))
    for p in (stale, live, other):
        p.write_bytes(b"half a download")
    old = time.time() - data.STALE_PART_SECONDS - 60
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    assert fetch("sms_spam", progress=False) == cache / SMS.relpath
    assert sorted(_parts(cache)) == sorted([live.name, other.name])


@pytest.mark.parametrize("where", ["download", "write"])
def test_keyboard_interrupt_leaves_no_part(where, mirror_dir, cache, monkeypatch):
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    if where == "download":
        _interrupt_download(monkeypatch, KeyboardInterrupt())
    else:
        _fail_temp_writes(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        fetch("sms_spam", progress=False)
    assert _files_in(cache) == []
    monkeypatch.undo()  # the next run works
    monkeypatch.setenv("GPT_DATA_DIR", str(cache))
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    assert sha256_file(fetch("sms_spam", progress=False)) == SMS.sha256


@pytest.mark.parametrize(
    "call",
    [
        lambda tok: data.load_pretraining_texts(["pg35", "pg99999"]),
        lambda tok: data.load_pretraining_ids(tok, ["pg35", "pg99999"]),
        lambda tok: data.load_book("pg99999"),
        lambda tok: data.corpus_token_cache(["pg99999"], tok),
    ],
    ids=["texts", "ids", "book", "cache_path"],
)
def test_unknown_book_before_any_work(call, mirror_dir, cache, monkeypatch):
    from gpt.tokenizer import course_tokenizer

    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    with pytest.raises(DataError, match="unknown dataset 'pg99999'.*known: .*pg1342"):
        call(course_tokenizer())
    assert not cache.exists()  # pg35 was not fetched first


@pytest.mark.parametrize(
    "books, error, phrase",
    [
        ([], ConfigError, "list of books is empty"),
        (["pg35", "pg84", "pg35"], ConfigError, "pg35 listed more than once"),
        (["sms_spam"], DataError, "'sms_spam' is a dataset but not a Project Gutenberg book"),
    ],
)
def test_bad_book_lists(books, error, phrase, mirror_dir, cache, monkeypatch):
    from gpt.tokenizer import course_tokenizer

    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    with pytest.raises(error, match=phrase):
        data.load_pretraining_texts(books)
    with pytest.raises(error, match=phrase):
        data.load_pretraining_ids(course_tokenizer(), books)
    assert not cache.exists()


@pytest.mark.parametrize("val_fraction", [0, 0.0, 1.0, -0.1, 1.5, float("nan"), "0.1", None, True])
def test_bad_val_fraction(val_fraction, cache):
    from gpt.tokenizer import course_tokenizer

    with pytest.raises(ConfigError, match=f"val_fraction must be .*got {re.escape(repr(val_fraction))}"):
        data.load_pretraining_ids(course_tokenizer(), ["pg35"], val_fraction=val_fraction)
    with pytest.raises(ConfigError, match="val_fraction must be"):
        split_ids(np.arange(100), val_fraction)
    assert not cache.exists()


@pytest.mark.parametrize("val_fraction, phrase", [(1e-20, "no validation tokens"), (0.95, "no training tokens")])
def test_val_fraction_leaves_a_book_empty(val_fraction, phrase, tiny_book):
    with pytest.raises(ConfigError, match=f"val_fraction {val_fraction!r} leaves pg35 \\(13 tokens\\) with {phrase}"):
        data.load_pretraining_ids(tiny_book, ["pg35"], val_fraction=val_fraction)
    with pytest.raises(ConfigError, match=phrase):
        split_ids(np.arange(12), val_fraction)


def test_load_pretraining_ids_tiny_book(tiny_book):
    train, val = data.load_pretraining_ids(tiny_book, ["pg35"], val_fraction=0.25)
    assert len(train) == 9 and len(val) == 4 and val[-1] == tiny_book.eot_token


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage", "float", "offsets"])
def test_load_pretraining_ids_damaged_cache_is_rebuilt(damage, tiny_book):
    want = data.load_pretraining_ids(tiny_book, ["pg35"], val_fraction=0.25)
    path = data.corpus_token_cache(["pg35"], tiny_book, tag="per-book-v2")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-5])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(b"not a numpy file")
    elif damage == "float":
        np.save(path, np.ones(12))
    else:
        np.save(path.with_suffix(".offsets.npy"), np.array([0, 5]))
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        got = data.load_pretraining_ids(tiny_book, ["pg35"], val_fraction=0.25)
    assert all(np.array_equal(a, b) for a, b in zip(want, got))
    assert np.array_equal(np.load(path), np.concatenate(want))  # the file is whole again


@pytest.mark.parametrize(
    "damage",
    [b"", b"not a numpy file", "truncate", np.zeros((2, 3), np.uint16), np.ones(6), np.array([10**6], np.uint32)],
    ids=["empty", "garbage", "truncated", "2d", "float", "id_beyond_vocab"],
)
def test_tokenize_to_array_damaged_cache_is_rebuilt(damage, tmp_path):
    from gpt.tokenizer import course_tokenizer

    enc = course_tokenizer()
    want = tokenize_to_array("Hello there.", enc)
    path = tmp_path / "ids.npy"
    if isinstance(damage, bytes):
        path.write_bytes(damage)
    elif isinstance(damage, str):
        np.save(path, np.arange(1000, dtype=np.uint16))
        path.write_bytes(path.read_bytes()[:300])
    else:
        np.save(path, damage)
    with pytest.warns(RuntimeWarning, match=f"token cache {re.escape(str(path))} is damaged"):
        assert tokenize_to_array("Hello there.", enc, cache=path).tolist() == want.tolist()
    assert np.load(path).tolist() == want.tolist()


@pytest.mark.parametrize("err, phrase", [(errno.ENOSPC, "is full"), (errno.EACCES, "cannot be written")])
def test_save_npy_fails_cleanly(err, phrase, cache, monkeypatch):
    path = cache / "cache" / "tokens.npy"
    _fail_temp_writes(monkeypatch, OSError(err, os.strerror(err)))
    with pytest.raises(DataError, match=f"data cache {re.escape(str(cache))} {phrase}|{phrase}.*GPT_DATA_DIR"):
        data._save_npy(path, np.arange(10))
    assert _files_in(cache) == []  # the temporary file is gone
    with pytest.warns(RuntimeWarning, match="token cache not saved"):  # a cache that cannot be written only warns
        assert tokenize_to_array("Hello", _Tok(), cache=path).tolist() == [1, 2, 3, 0]
    assert _files_in(cache) == []


def test_save_npy_interrupted(tmp_path, monkeypatch):
    _fail_temp_writes(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        data._save_npy(tmp_path / "x.npy", np.arange(10))
    assert list(tmp_path.iterdir()) == []


class _Tok:
    """A 4-token tokenizer: every text is [1, 2, 3]."""

    eot_token, n_vocab = 0, 4

    def encode_ordinary(self, text):
        return [1, 2, 3]


def test_tokenize_bad_texts():
    with pytest.raises(ConfigError, match="texts must be strings, got \\['int'"):
        tokenize_to_array([1, 2], _Tok())
    with pytest.raises(ConfigError, match="empty corpus"):
        tokenize_to_array([], _Tok())


@pytest.mark.parametrize(
    "kwargs, phrase",
    [
        (dict(context_length=0), "context_length must be a positive whole number, got 0"),
        (dict(context_length=-4), "context_length must be a positive whole number, got -4"),
        (dict(context_length=2.5), "context_length must be a positive whole number, got 2.5"),
        (dict(context_length="4"), "context_length must be a positive whole number, got '4'"),
        (dict(context_length=4, stride=0), "stride must be a positive whole number, got 0"),
        (dict(context_length=4, stride=-1), "stride must be a positive whole number, got -1"),
        (dict(context_length=100), "need at least 101 tokens .* got 20; use a smaller context_length"),
        (dict(ids=np.arange(20).reshape(4, 5), context_length=4), "1-D sequence of token ids, got shape \\(4, 5\\)"),
        (dict(ids=np.linspace(0, 1, 20), context_length=4), "token ids .* got dtype float64"),
        (dict(ids=np.arange(-5, 15), context_length=4), "token ids \\(whole numbers >= 0\\)"),
        (dict(ids=[], context_length=4), "need at least 5 tokens .* got 0"),
    ],
)
def test_token_windows_bad_arguments(kwargs, phrase):
    kwargs = {"ids": np.arange(20), **kwargs}
    with pytest.raises(ConfigError, match=phrase):
        TokenWindowDataset(**kwargs)
    with pytest.raises(ConfigError, match=phrase):
        create_dataloader(**kwargs)


@pytest.mark.parametrize(
    "batch_size, phrase",
    [
        (0, "batch_size must be a positive whole number, got 0"),
        (-2, "batch_size must be a positive whole number, got -2"),
        (1.5, "batch_size must be a positive whole number, got 1.5"),
        (5, "batch_size 5 is larger than the 4 windows of 4 tokens"),
    ],
)
def test_dataloader_bad_batch_size(batch_size, phrase):
    with pytest.raises(ConfigError, match=phrase):
        create_dataloader(np.arange(17), context_length=4, batch_size=batch_size)
    # without drop_last the one short batch is fine
    assert batch_size != 5 or len(list(create_dataloader(np.arange(17), 4, batch_size=5, drop_last=False))) == 1


@pytest.mark.parametrize(
    "make, phrase",
    [
        (lambda p: p / "missing.txt", "missing.txt does not exist"),
        (lambda p: p, "is a folder, not a text file"),
    ],
    ids=["missing", "folder"],
)
def test_read_text_bad_path(make, phrase, tmp_path):
    with pytest.raises(DataError, match=phrase):
        read_text(make(tmp_path))


def test_strip_gutenberg_empty_book():
    with pytest.raises(DataError, match="pg1: no text between"):
        strip_gutenberg("*** START OF X ***\n\n  \n*** END OF X ***\nlicence\n", "pg1")


def test_sms_empty_file(tmp_path, cache, monkeypatch):
    _fake_sms_mirror(tmp_path, monkeypatch, b"\n\n")
    with pytest.raises(DataError, match="holds no messages"):
        load_sms_spam()


def test_every_error_is_a_gpt_error():
    from gpt.errors import GPTError

    assert data.DataError is DataError and issubclass(DataError, GPTError) and issubclass(ConfigError, ValueError)
