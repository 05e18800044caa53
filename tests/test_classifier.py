"""The classifier: padding invariance, last-token gather, composition, strategies, inference, bad input."""

import json
import warnings

import numpy as np
import pytest
import torch

from gpt import classifier as C
from gpt.errors import CheckpointError, ConfigError
from gpt.model import GPT, GPTConfig, count_parameters
from gpt.io.tokenizer_files import VocabularyMismatchError, tokenizer_fingerprint
from gpt.tokenizer import course_tokenizer
from gpt.io.weights import save_model
from helpers_classify import TINY, tiny_classifier, tiny_gpt


@pytest.mark.parametrize("attn_impl", ["sdpa", "explicit"])
def test_predictions_do_not_depend_on_right_padding(attn_impl):
    model = tiny_classifier(attn_impl=attn_impl).eval()
    tok = course_tokenizer()
    seqs, _ = C.encode_messages(["Free entry in a weekly competition!", "ok see you"], tok, 64)
    ref = None
    for pad_to in (max(map(len, seqs)), 20, 64):
        x, lengths = C.pad_batch(seqs, tok.eot_token, pad_to=pad_to)
        with torch.no_grad():
            logits = model(x, lengths)
        ref = logits if ref is None else ref
        torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-5)
    # alone (no padding at all) or batched with a long message: the same probabilities
    alone = C.predict_proba(model, ["ok see you"])
    batched = C.predict_proba(model, ["ok see you", "a much longer message " * 5])
    np.testing.assert_allclose(alone[0], batched[0], atol=1e-6)


def test_last_token_gather():
    model = tiny_classifier().eval()
    x = torch.randint(0, 4000, (3, 10))
    lengths = torch.tensor([10, 4, 1])
    with torch.no_grad():
        h = model.hidden_states(x)
        got = model.last_token_states(x, lengths)
        for i, n in enumerate(lengths.tolist()):
            torch.testing.assert_close(got[i], h[i, n - 1])
            torch.testing.assert_close(got[i], model.hidden_states(x[i : i + 1, :n])[0, -1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model(x), model.head(h[:, -1]))  # no lengths: no padding
    for bad in ([0, 4, 1], [11, 4, 1], [4, 4]):
        with pytest.raises(ConfigError, match="lengths must be"):
            model(x, torch.tensor(bad))


def test_the_classifier_holds_a_copy_of_the_gpt_body():
    gpt = tiny_gpt()
    model = C.GPTClassifier.from_gpt(gpt, seed=1)
    assert isinstance(model.gpt, GPT) and model.gpt is not gpt and model.config == gpt.config
    assert isinstance(model.head, torch.nn.Linear) and model.head.weight.shape == (2, 32)
    torch.testing.assert_close(model.gpt.blocks[1].mlp.fc.weight, gpt.blocks[1].mlp.fc.weight)
    torch.testing.assert_close(C.GPTClassifier.from_gpt(gpt, seed=1).head.weight, model.head.weight)
    assert not torch.equal(C.GPTClassifier.from_gpt(gpt, seed=2).head.weight, model.head.weight)
    with torch.no_grad():
        model.gpt.blocks[0].mlp.fc.weight.add_(1.0)
    assert not torch.equal(model.gpt.blocks[0].mlp.fc.weight, gpt.blocks[0].mlp.fc.weight), "the original GPT is untouched"
    # tied weights: the body's lm_head is the embedding and adds no parameters
    assert count_parameters(model) == count_parameters(gpt) + 2 * 32 + 2


def test_untied_lm_head_never_trains():
    model = C.GPTClassifier.from_gpt(tiny_gpt(tie_weights=False))
    C.set_trainable(model, "full")
    assert not model.gpt.lm_head.weight.requires_grad and model.gpt.tok_emb.weight.requires_grad


def test_strategies_trainable_counts():
    model = tiny_classifier()
    total = count_parameters(model)
    assert C.set_trainable(model, "head") == {"trainable": 32 * 2 + 2, "total": total}
    block = sum(p.numel() for p in model.gpt.blocks[-1].parameters())
    assert C.set_trainable(model, "last-block")["trainable"] == block + 2 * 32 + 66
    assert C.set_trainable(model, "full")["trainable"] == total


def test_classify_output():
    model = tiny_classifier().eval()
    label, p = C.classify(model, "Congratulations, you won a prize!")
    assert 0.0 <= p <= 1.0 and (label == "spam") == (p > 0.5)
    assert C.classify(model, "Congratulations, you won a prize!".encode()) == (label, p)
    np.testing.assert_allclose(C.predict_proba(model, ["Congratulations, you won a prize!"])[0, 1], p)
    with pytest.warns(UserWarning, match="first 64 tokens"):
        _, p_long = C.classify(model, "x" * 10_000)
    assert 0.0 <= p_long <= 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        C.classify(model, "short message")


def test_vocabulary_mismatch_is_an_error(tmp_path):
    small = tmp_path / "small_vocab.safetensors"
    save_model(GPT(GPTConfig(**{**TINY, "vocab_size": 300})), small)
    with pytest.raises(VocabularyMismatchError, match="300"):
        C.classifier_from_checkpoint(small)
    wrong = tmp_path / "wrong_fingerprint.safetensors"
    save_model(tiny_gpt(), wrong, metadata={"tokenizer_fingerprint": "0123456789abcdef"})
    with pytest.raises(VocabularyMismatchError, match="fingerprint"):
        C.classifier_from_checkpoint(wrong)
    right = tmp_path / "right.safetensors"
    gpt = tiny_gpt()
    save_model(gpt, right, metadata={"tokenizer_fingerprint": tokenizer_fingerprint(course_tokenizer())})
    model = C.classifier_from_checkpoint(right)
    torch.testing.assert_close(model.gpt.blocks[1].attn.q_proj.weight, gpt.blocks[1].attn.q_proj.weight)
    with pytest.raises(VocabularyMismatchError):
        C.classify(tiny_classifier(vocab_size=300), "hello")


# --- bad input: one clear error each ------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "   \n", b"\xff\xfe not utf-8", "lone \udcff surrogate"])
def test_classify_refuses_bad_messages(bad):
    with pytest.raises(ConfigError, match="empty message|not valid"):
        C.classify(tiny_classifier(), bad)


@pytest.mark.parametrize("bad", [42, None, ["a list"]])
def test_classify_refuses_non_text(bad):
    with pytest.raises(TypeError, match="str or UTF-8 bytes"):
        C.classify(tiny_classifier(), bad)


@pytest.mark.parametrize("one_message", ["hello", b"hello"])
def test_predict_proba_refuses_a_single_string(one_message):
    with pytest.raises(ConfigError, match="single message"):
        C.predict_proba(tiny_classifier(), one_message)


def test_predict_proba_refuses_non_lists_and_bad_batch_sizes():
    with pytest.raises(ConfigError, match="list of messages"):
        C.predict_proba(tiny_classifier(), 42)
    with pytest.raises(ConfigError, match="batch_size"):
        C.predict_proba(tiny_classifier(), ["hi"], batch_size=0)


@pytest.mark.parametrize(
    "call, phrase",
    [
        (lambda: C.pad_batch([], 0), "at least one sequence"),
        (lambda: C.pad_batch([[1], []], 0), "no empty sequence"),
        (lambda: C.pad_batch([[1, 2, 3]], 0, pad_to=2), "shorter than the longest"),
        (lambda: C.encode_messages(["hi"], course_tokenizer(), 0), "max_length"),
        (lambda: C.set_trainable(tiny_classifier(), "everything"), "unknown strategy"),
        (lambda: C.GPTClassifier(tiny_gpt(), num_classes=1), "num_classes"),
        (lambda: C.GPTClassifier(tiny_gpt(), classifier_dropout=1.0), "classifier_dropout"),
    ],
)
def test_bad_arguments(call, phrase):
    with pytest.raises(ConfigError, match=phrase):
        call()


def test_evaluate_refuses_empty_or_columnless_splits():
    import pandas as pd

    model = tiny_classifier()
    with pytest.raises(ConfigError, match="empty split"):
        C.evaluate_classifier(model, pd.DataFrame({"label": [], "text": []}))
    with pytest.raises(ConfigError, match="missing"):
        C.evaluate_classifier(model, pd.DataFrame({"text": ["hi"]}))
    with pytest.raises(ConfigError, match="labels must be one of"):
        C.evaluate_classifier(model, pd.DataFrame({"label": ["eggs"], "text": ["hi"]}))


def test_checkpoints_that_do_not_fit(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        C.classifier_from_checkpoint(tmp_path / "missing.safetensors")
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(other), metadata={"gpt_config": json.dumps(GPTConfig(**TINY).to_dict())})
    with pytest.raises(CheckpointError, match="does not match"):
        C.classifier_from_checkpoint(other)
    save_model(tiny_gpt(), tmp_path / "ok.safetensors")
    with pytest.raises(ConfigError, match="dropout"):
        C.classifier_from_checkpoint(tmp_path / "ok.safetensors", dropout=1.5)


def test_pad_to_multiple_of_rounds_the_length_up_within_the_context():
    seqs = [[1, 2, 3], [4] * 17]
    ids, lengths = C.pad_batch(seqs, 0, pad_to_multiple_of=16)
    assert ids.shape == (2, 32) and lengths.tolist() == [3, 17] and (ids[1, 17:] == 0).all()
    assert C.pad_batch(seqs, 0, pad_to_multiple_of=16, max_length=20)[0].shape == (2, 20)  # never past the context
    assert C.pad_batch(seqs, 0, pad_to_multiple_of=16, max_length=10)[0].shape == (2, 17)  # nor below the longest
    for bad in (0, -16, 2.5, True):
        with pytest.raises(ConfigError, match="pad_to_multiple_of"):
            C.pad_batch(seqs, 0, pad_to_multiple_of=bad)


@pytest.mark.parametrize("attn_impl", ["sdpa", "explicit"])
def test_padding_to_a_multiple_does_not_change_the_predictions(attn_impl):
    """The model is causal and pools the last real token: extra padding is never read."""
    model = tiny_classifier(attn_impl=attn_impl)
    g = torch.Generator().manual_seed(0)
    ids = [torch.randint(0, 4096, (n,), generator=g).tolist() for n in (3, 9, 14, 30, 5)]
    plain = C.predict_ids(model, ids, pad_id=0, batch_size=2)
    rounded = C.predict_ids(model, ids, pad_id=0, batch_size=2, pad_to_multiple_of=16)
    np.testing.assert_allclose(rounded, plain, atol=1e-6)
