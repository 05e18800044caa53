"""gpt.experiments.dapt: the message stream, the held-out split, a DAPT run that lowers the held-out loss, the command."""

import json

import numpy as np
import pytest
import torch

from gpt.cli import main
from gpt.experiments.dapt import dapt, message_stream, split_messages
from gpt.errors import ConfigError
from gpt.model import GPT, GPTConfig
from gpt.tokenizer import course_tokenizer
from gpt.io.weights import load_model, save_model
from gpt.train_config import TrainConfig

TEXTS = [f"WIN a £{100 * (i % 7)} prize! txt WIN to 8{i % 10}00 now" if i % 2 else f"ok c u at {i % 12} tmrw, ur mum says hi"
         for i in range(300)]


def test_message_stream_ends_every_message_with_end_of_text():
    tok = course_tokenizer()
    ids = message_stream(["hello there", "ur prize"], tok)
    assert ids.dtype == np.int64 and (ids == tok.eot_token).sum() == 2 and ids[-1] == tok.eot_token
    assert tok.decode(ids.tolist()) == "hello there<|endoftext|>ur prize<|endoftext|>"


def test_split_messages_holds_out_the_last_part():
    train, held = split_messages(list(range(100)), 0.1)
    assert train == list(range(90)) and held == list(range(90, 100))
    with pytest.raises(ConfigError, match="between 0 and 1"):
        split_messages(list(range(10)), 1.0)
    with pytest.raises(ConfigError, match="too few"):
        split_messages(["one"], 0.5)


def test_dapt_lowers_the_held_out_loss_on_the_messages():
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("course-tiny"))
    cfg = TrainConfig(max_steps=40, batch_size=8, lr=3e-3, min_lr=3e-4, warmup_steps=4, eval_interval=20, eval_batches=2,
                      precision="fp32", device="cpu", seed=0)
    hist = dapt(model, TEXTS, course_tokenizer(), cfg, progress=False)
    assert hist["heldout_messages"] == 30 and hist["train_messages"] == 270
    assert hist["heldout_loss_after"] < hist["heldout_loss_before"] - 1.0


def test_dapt_command_writes_a_model_and_its_card_and_refuses_to_overwrite(tmp_path, capsys):
    torch.manual_seed(0)
    base = tmp_path / "base.safetensors"
    save_model(GPT(GPTConfig.from_preset("course-tiny")), base)
    out = tmp_path / "dapt"
    args = ["dapt", "--checkpoint", str(base), "--steps", "3", "--batch-size", "4", "--warmup", "1", "--eval-batches", "1",
            "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    card = json.loads((out / "dapt_card.json").read_text())
    assert card["steps"] == 3 and card["train_messages"] + card["heldout_messages"] > 1000 and card["base_checkpoint"].endswith("base.safetensors")
    assert load_model(out / "model.safetensors").config == GPTConfig.from_preset("course-tiny")
    capsys.readouterr()
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
