"""The experiments' tests share one checkpoint: a one-block course GPT saved to a temporary file, with the
data mirror set and downloads cached in a temporary folder."""

import pytest
import torch

from gpt.io.weights import save_model
from gpt.model import GPT, GPTConfig
from helpers_classify import TINY_ONE_BLOCK


@pytest.fixture()
def tiny_checkpoint(mirror_dir, tmp_path, monkeypatch):
    """The path of a freshly saved one-block GPT (seed 0)."""
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    monkeypatch.setenv("GPT_DATA_DIR", str(tmp_path / "data"))
    path = tmp_path / "tiny.safetensors"
    torch.manual_seed(0)
    save_model(GPT(GPTConfig(**TINY_ONE_BLOCK)), path)
    return path
