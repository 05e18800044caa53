"""What the tests of data, downloads and caches share: fake mirrors, failing disks, a tiny tokenizer."""

import dataclasses
import hashlib
import os

from gpt.io.downloads import REGISTRY


def files_in(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def fake_mirror(tmp_path, monkeypatch, name: str, content: bytes):
    """A mirror holding ``content`` as registry file ``name``, with the registry pinned to its sha256."""
    mirror = tmp_path / "fake_mirror"
    res = REGISTRY[name]
    (mirror / res.relpath).parent.mkdir(parents=True, exist_ok=True)
    (mirror / res.relpath).write_bytes(content)
    monkeypatch.setitem(REGISTRY, name, dataclasses.replace(res, sha256=hashlib.sha256(content).hexdigest()))
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror))


class FailingFile:
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


def fail_temp_writes(monkeypatch, error):
    """Every file opened with os.fdopen (the temporary file of a download or a .npy) fails on write."""
    real = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *a, **kw: FailingFile(real(*a, **kw), error))


class Tok:
    """A 4-token tokenizer: every text is [1, 2, 3]."""

    eot_token, n_vocab = 0, 4

    def encode_ordinary(self, text):
        return [1, 2, 3]
