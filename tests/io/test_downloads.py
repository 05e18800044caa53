"""Downloads: verified fetches through GPT_DATA_MIRROR (a folder and a loopback HTTP server), the cache,
the registry, and the faults of a disk or a source, each a DataError that names the problem and the fix."""

import errno
import hashlib
import http.server
import os
import re
import shutil
import tempfile
import threading
import time

import pytest

import gpt.io.downloads as downloads
from gpt.errors import ConfigError, DataError, GPTError
from gpt.io.downloads import REGISTRY, fetch, read_text
from gpt.io.files import sha256_file
from helpers_data import fail_temp_writes, files_in

VERDICT = REGISTRY["the_verdict"]
SMS = REGISTRY["sms_spam"]


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


def _parts(folder):
    return [p.name for p in folder.rglob("*.part")]


def _interrupt_download(monkeypatch, error):
    """Run the real download, but raise ``error`` after the first 100 bytes reach the temporary file."""
    real = downloads._download

    class Dest:
        def __init__(self, dest):
            self.dest = dest

        def write(self, b):
            self.dest.write(bytes(b)[:100])
            raise error

    monkeypatch.setattr(downloads, "_download", lambda url, dest, progress: real(url, Dest(dest), progress))


# --- fetching from a folder mirror ------------------------------------------------------------


def test_fetch_from_folder_mirror(mirror_dir, cache, monkeypatch):
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    path = fetch("the_verdict", progress=False)
    assert path == cache / VERDICT.relpath
    assert sha256_file(path) == VERDICT.sha256
    assert files_in(cache) == [VERDICT.relpath]  # no temporary files left behind


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
    assert len(downloads.PRETRAIN_BOOKS) == 22
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
    assert files_in(cache) == [VERDICT.relpath]


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
    assert files_in(cache) == []  # neither the target nor a .part file


def test_http_missing_file(http_root, cache, monkeypatch):
    (http_root / VERDICT.relpath).unlink()
    with _Server(http_root) as server:
        monkeypatch.setenv("GPT_DATA_MIRROR", server.url)
        with pytest.raises(DataError, match="404"):
            fetch("the_verdict", progress=False)
    assert files_in(cache) == []


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
    assert files_in(cache) == []


def test_missing_in_folder_mirror(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("GPT_DATA_MIRROR", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="not in the cache and could not be fetched"):
        fetch("pg1342", progress=False)
    assert files_in(cache) == []


def test_corrupted_cached_file(mirror_dir, cache, monkeypatch):
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    path = fetch("the_verdict", progress=False)
    path.chmod(0o644)
    with open(path, "ab") as f:
        f.write(b" (one more line)")
    with pytest.raises(DataError, match="in the cache but its sha256") as err:
        fetch("the_verdict", progress=False)
    assert "delete it" in str(err.value)


def test_read_text(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(b"\xef\xbb\xbfline one\r\nline two \xc2\xa3\r\n")
    assert read_text(p) == "line one\nline two £\n"


def test_read_text_rejects_non_utf8(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("café £5".encode("latin-1"))
    with pytest.raises(DataError, match="not valid UTF-8"):
        read_text(p)


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
    fail_temp_writes(monkeypatch, OSError(err, os.strerror(err)))
    with pytest.raises(DataError, match=f"{phrase}.*GPT_DATA_DIR") as e:
        fetch("sms_spam", progress=False)
    assert f"data cache {cache}" in str(e.value)
    assert "could not be fetched" not in str(e.value) and str(mirror_dir) not in str(e.value)
    assert files_in(cache) == []  # no .part file, no target


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS])
def test_fetch_copy_raises_disk_error(err, mirror_dir, cache, monkeypatch):
    """The copy function itself raising ENOSPC/EROFS is still blamed on the cache, and the .part file is removed."""
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    _interrupt_download(monkeypatch, OSError(err, os.strerror(err)))
    with pytest.raises(DataError, match=f"data cache {re.escape(str(cache))}.*GPT_DATA_DIR") as e:
        fetch("sms_spam", progress=False)
    assert "could not be fetched" not in str(e.value)
    assert files_in(cache) == []


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EACCES])
def test_fetch_temp_file_cannot_be_created(err, mirror_dir, cache, monkeypatch):
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))

    def mkstemp(*a, **kw):
        raise OSError(err, os.strerror(err), kw.get("dir"))

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    with pytest.raises(DataError, match="GPT_DATA_DIR") as e:
        fetch("sms_spam", progress=False)
    assert str(cache) in str(e.value)


def test_fetch_source_permission_error_is_the_sources(mirror_dir, cache, monkeypatch):
    """EACCES while *reading* the source is that source's failure (listed with its path), not the cache's."""
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))

    def unreadable(url, dest, progress):
        raise PermissionError(errno.EACCES, "Permission denied", url)

    monkeypatch.setattr(downloads, "_download", unreadable)
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
    old = time.time() - downloads.STALE_PART_SECONDS - 60
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
        fail_temp_writes(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        fetch("sms_spam", progress=False)
    assert files_in(cache) == []
    monkeypatch.undo()  # the next run works
    monkeypatch.setenv("GPT_DATA_DIR", str(cache))
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    assert sha256_file(fetch("sms_spam", progress=False)) == SMS.sha256


def test_every_error_is_a_gpt_error():
    assert issubclass(DataError, GPTError) and issubclass(ConfigError, ValueError)
