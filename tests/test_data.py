"""The data layer: verified fetches through GPT_DATA_MIRROR (a folder and a loopback HTTP server),
the cache, the loaders, and the token datasets."""

import dataclasses
import hashlib
import http.server
import shutil
import threading

import numpy as np
import pytest
import torch

import gpt.data as data
from gpt.data import (
    REGISTRY,
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


def test_fetch_unknown_name():
    with pytest.raises(KeyError, match="unknown dataset"):
        fetch("no_such_dataset")


def test_registry_is_consistent():
    assert len(data.PRETRAIN_BOOKS) == 22
    for name, res in REGISTRY.items():
        assert res.name == name
        assert len(res.sha256) == 64 and int(res.sha256, 16) >= 0
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


def _fake_sms_mirror(tmp_path, monkeypatch, content: bytes):
    """A mirror holding ``content`` as the SMS file, with the registry pinned to its sha256."""
    mirror = tmp_path / "fake_mirror"
    res = REGISTRY["sms_spam"]
    (mirror / res.relpath).parent.mkdir(parents=True)
    (mirror / res.relpath).write_bytes(content)
    monkeypatch.setitem(REGISTRY, "sms_spam", dataclasses.replace(res, sha256=hashlib.sha256(content).hexdigest()))
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror))


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
    with pytest.raises(ValueError, match="need at least 5 tokens"):
        TokenWindowDataset(np.arange(4), context_length=4)
    with pytest.raises(ValueError):
        TokenWindowDataset(np.arange(100), context_length=0)
    with pytest.raises(ValueError):
        TokenWindowDataset(np.arange(100), context_length=4, stride=-1)


def test_dataloader_batches():
    dl = create_dataloader(np.arange(200), context_length=8, batch_size=4, shuffle=True, seed=3)
    batches = list(dl)
    assert len(batches) == 6  # 24 windows, drop_last
    x, y = batches[0]
    assert x.shape == y.shape == (4, 8)
    assert torch.equal(x[:, 1:], y[:, :-1])
    again = list(create_dataloader(np.arange(200), context_length=8, batch_size=4, shuffle=True, seed=3))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))


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
    with pytest.raises(ValueError):
        data.load_pretraining_ids(enc, books, val_fraction=0.0)
