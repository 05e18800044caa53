"""gpt.runtime.memory: a run that cannot fit is refused before its first step, naming --batch-size; the
weights' bytes and the AdamW training estimate."""

import pytest
import torch

from gpt.errors import ConfigError
from gpt.model import GPT, GPTConfig, count_parameters
from gpt.runtime.memory import (available_bytes, check_training_memory, parameter_bytes, training_bytes_lower_bound,
                                training_memory_estimate)
from gpt.runtime.meters import SavedActivations
from gpt.train import lm_loss

COURSE = GPTConfig.from_preset("course")


def test_the_estimate_is_below_what_a_training_forward_saves():
    config = GPTConfig.from_preset("course-tiny")
    model = GPT(config).train()
    x = torch.randint(0, config.vocab_size, (4, config.context_length))
    meter = SavedActivations(model)
    with meter.track():
        lm_loss(model, x, x)
    assert 0 < training_bytes_lower_bound(config, 0, 4) < meter.peak_bytes


def test_a_batch_that_cannot_fit_is_refused_naming_the_flag():
    n = 2_600_000
    with pytest.raises(ConfigError) as e:
        check_training_memory(COURSE, n, 100_000, "cpu", available=int(21.9e9))
    msg = str(e.value)
    assert msg.startswith("--batch-size 100000 needs at least ") and "but only 21.9 GB is available on this machine" in msg
    fits = int(msg.rsplit("lower --batch-size to ", 1)[1].split(" ")[0])
    assert 1 <= fits < 100_000
    check_training_memory(COURSE, n, fits, "cpu", available=int(21.9e9))  # the advice fits
    with pytest.raises(ConfigError):
        check_training_memory(COURSE, n, fits + 1, "cpu", available=int(21.9e9))
    with pytest.raises(ConfigError, match="the model alone does not fit"):
        check_training_memory(COURSE, n, 1, "cpu", available=1000)
    check_training_memory(COURSE, n, 10**9, "meta")  # memory unknown: nothing is checked


def test_gpus_hold_a_share_of_the_global_batch():
    need_one = training_bytes_lower_bound(COURSE, 0, 64)
    check_training_memory(COURSE, 0, 256, "cuda", processes=4, available=need_one)
    with pytest.raises(ConfigError, match="on the GPU"):
        check_training_memory(COURSE, 0, 256, "cuda", processes=2, available=need_one)


def test_available_memory_is_read_on_linux():
    avail = available_bytes("cpu")
    assert avail is None or avail > 0
    assert count_parameters(GPT(COURSE)) > 0


def test_parameter_bytes_of_gpt2_small_on_meta():
    with torch.device("meta"):
        model = GPT(GPTConfig.from_preset("gpt2-small"))
    assert parameter_bytes(model) == 4 * 124_439_808  # fp32, output layer tied to the embedding


def test_training_memory_estimate():
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("course-tiny")).eval()
    n = count_parameters(model)
    est = training_memory_estimate(model)
    assert est == {"weights": 4 * n, "gradients": 4 * n, "adamw_state": 8 * n, "total": 16 * n}
    assert training_memory_estimate(model, torch.bfloat16)["weights"] == 2 * n


def test_track_if_larger_measures_only_a_batch_longer_or_bigger_than_every_one_before():
    model = torch.nn.Linear(1, 1)
    meter = SavedActivations(model)

    def forward(batch, length):
        x = torch.ones(batch, length)
        with meter.track_if_larger(x):
            (x * model.weight[0, 0]).tanh().sum()  # saves x and the tanh's output
        measured, meter.peak_bytes = meter.peak_bytes, 0
        return measured

    assert forward(2, 8) > 0
    assert forward(2, 8) == forward(1, 4) == forward(4, 4) == 0  # no new length, no more tokens: not measured
    assert forward(1, 9) > 0 and forward(3, 6) > 0  # a new length; more tokens (18 > 16)
    assert meter.largest == (9, 18)
