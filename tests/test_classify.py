"""Spam classification: splits, the last-token classifier, strategies, training, baseline, bad input."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from gpt import classify as C
from gpt.data import DataError, sha256_file
from gpt.model import GPTConfig, count_parameters
from gpt.tokenizer import course_tokenizer, tokenizer_fingerprint
from gpt.train import save_model

TINY = dict(vocab_size=4096, context_length=64, n_layer=2, n_head=2, n_embd=32)


def tiny_classifier(seed=0, **overrides):
    torch.manual_seed(seed)
    return C.GPTClassifier(GPTConfig(**{**TINY, **overrides}))


def toy_splits():
    spam = ["WIN a FREE prize now! Call 0800 123", "URGENT! You have won cash, txt CLAIM to 8888", "Free entry: win £1000 cash now"]
    ham = ["see you at lunch", "ok i will call you later", "are we still meeting tonight?"]
    df = lambda s, h: pd.DataFrame({"label": ["spam"] * len(s) + ["ham"] * len(h), "text": s + h})  # noqa: E731
    return {"train": df(spam * 4, ham * 4), "val": df(spam, ham), "test": df(spam[:2], ham[:2])}


@pytest.fixture()
def splits(mirror_dir, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    monkeypatch.setenv("GPT_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    return C.load_splits()


# --- splits ------------------------------------------------------------------------------------


def test_splits_sizes_labels_and_disjoint_texts(splits):
    sizes = {n: len(d) for n, d in splits.items()}
    assert sizes == {"train": 1045, "val": 149, "test": 300, "test_natural": 1119}
    counts = {n: d["label"].value_counts().to_dict() for n, d in splits.items()}
    assert counts["test"] == {"ham": 150, "spam": 150}
    assert counts["val"] == {"ham": 74, "spam": 75}
    assert counts["train"] == {"ham": 523, "spam": 522}
    assert counts["test_natural"]["spam"] == 150 and abs(150 / 1119 - 747 / 5574) < 0.001
    texts = {n: set(d["text"]) for n, d in splits.items()}
    for a, b in [("train", "val"), ("train", "test"), ("val", "test"), ("train", "test_natural"), ("val", "test_natural")]:
        assert not texts[a] & texts[b], f"{a} and {b} share texts"
    # the natural test split contains the balanced one; the source lines are never reused across splits
    assert set(splits["test"]["line"]) <= set(splits["test_natural"]["line"])
    lines = [set(splits[n]["line"]) for n in ("train", "val", "test")]
    assert sum(map(len, lines)) == len(set().union(*lines)) == 1494


def test_splits_are_deterministic_and_pinned(splits, tmp_path):
    a = C.save_splits(C.make_splits(), tmp_path / "a")
    b = C.save_splits(C.make_splits(), tmp_path / "b")
    for name in C.SPLIT_NAMES:
        assert a[name].read_bytes() == b[name].read_bytes()
        assert sha256_file(a[name]) == C.SPLIT_SHA256[name]
        pd.testing.assert_frame_equal(C.read_split_csv(a[name]), splits[name])


def test_bad_labels_are_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"label": ["ham", "eggs"], "text": ["hi", "there"]}).to_csv(bad, index=False)
    with pytest.raises(DataError, match="eggs"):
        C.read_split_csv(bad)
    with pytest.raises(DataError, match="eggs"):
        C.make_splits(pd.DataFrame({"label": ["ham", "eggs"], "text": ["a", "b"]}))
    with pytest.raises(DataError, match="both labels"):
        C.make_splits(pd.DataFrame({"label": ["ham", "spam"], "text": ["same", "same"]}))
    with pytest.raises(ValueError, match="eggs"):
        C.label_ids(["spam", "eggs"])


def test_split_csv_keeps_awkward_texts(tmp_path):
    df = pd.DataFrame({"label": ["ham"] * 4, "text": ['"quoted" start', "NA", "tab\there, comma", "null"], "line": [1, 2, 3, 4]})
    path = C.save_splits({"x": df}, tmp_path)["x"]
    pd.testing.assert_frame_equal(C.read_split_csv(path), df)


# --- the classifier ----------------------------------------------------------------------------


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
    with pytest.raises(ValueError):
        model(x, torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError):
        model(x, torch.tensor([11, 4, 1]))


def test_head_replaces_lm_head_and_loads_gpt_weights():
    from gpt.model import GPT

    torch.manual_seed(0)
    gpt = GPT(GPTConfig(**TINY))
    model = C.GPTClassifier.from_gpt(gpt, seed=1)
    assert not hasattr(model, "lm_head") and isinstance(model.head, torch.nn.Linear)
    assert model.head.weight.shape == (2, 32)
    torch.testing.assert_close(model.blocks[1].mlp.fc.weight, gpt.blocks[1].mlp.fc.weight)
    torch.testing.assert_close(C.GPTClassifier.from_gpt(gpt, seed=1).head.weight, model.head.weight)
    with pytest.raises(TypeError):
        model.generate(torch.zeros(1, 1, dtype=torch.long), 1)


def test_strategies_trainable_counts():
    model = tiny_classifier()
    total = count_parameters(model)
    head = C.set_trainable(model, "head")
    assert head == {"trainable": 32 * 2 + 2, "total": total}
    block = sum(p.numel() for p in model.blocks[-1].parameters())
    assert C.set_trainable(model, "last-block")["trainable"] == block + 2 * 32 + 66
    assert C.set_trainable(model, "full")["trainable"] == total
    with pytest.raises(ValueError):
        C.set_trainable(model, "everything")


def test_frozen_parameters_do_not_change_and_result_fields():
    model = tiny_classifier()
    C.set_trainable(model, "last-block")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    r = C.finetune(model, toy_splits(), epochs=2, lr=1e-2, batch_size=4, seed=0, progress=False)
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert not torch.equal(p, before[n]), n
        else:
            assert torch.equal(p, before[n]), n
    assert r["trainable_params"] == count_parameters(model, trainable_only=True) < r["total_params"]
    assert len(r["history"]["val_accuracy"]) == 2 and 1 <= r["best_epoch"] <= 2
    assert set(r["metrics"]) == {"val", "test"}
    n_tensors = sum(1 for p in model.parameters() if p.requires_grad)
    # AdamW: exp_avg and exp_avg_sq (fp32) per trainable parameter, plus a 4-byte step counter per tensor
    assert r["optimizer_state_bytes"] == 2 * 4 * r["trainable_params"] + 4 * n_tensors
    assert r["activation_bytes"] > 0 and r["gradient_bytes"] == 4 * r["trainable_params"]
    assert r["peak_memory_method"] in ("rss_sampled", "cuda_max_allocated", "unavailable")
    json.dumps({k: v for k, v in r.items()})  # the result is plain data


def test_finetune_is_reproducible_and_refuses_nothing_to_train():
    def run():
        model = tiny_classifier(dropout=0.1)
        C.set_trainable(model, "full")
        return C.finetune(model, toy_splits(), epochs=1, batch_size=4, seed=3, progress=False)["history"]["train_loss"]

    assert run() == run()
    model = tiny_classifier()
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        C.finetune(model, toy_splits(), epochs=1, progress=False)


# --- classify() and bad input ------------------------------------------------------------------


def test_classify_output_and_bad_input():
    model = tiny_classifier().eval()
    label, p = C.classify(model, "Congratulations, you won a prize!")
    assert label in ("ham", "spam") and 0.0 <= p <= 1.0 and (label == "spam") == (p > 0.5)
    assert C.classify(model, "Congratulations, you won a prize!".encode()) == (label, p)
    for bad in ("", "   \n", b"\xff\xfe not utf-8", "lone \udcff surrogate"):
        with pytest.raises(ValueError):
            C.classify(model, bad)
    with pytest.raises(TypeError):
        C.classify(model, 42)
    with pytest.warns(UserWarning, match="first 64 tokens"):
        label, p = C.classify(model, "x" * 10_000)
    assert 0.0 <= p <= 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        C.classify(model, "short message")


def test_vocabulary_mismatch_is_an_error(tmp_path):
    from gpt.model import GPT

    small = tmp_path / "small_vocab.safetensors"
    save_model(GPT(GPTConfig(**{**TINY, "vocab_size": 300})), small)
    with pytest.raises(C.VocabularyMismatchError, match="300"):
        C.classifier_from_checkpoint(small)
    wrong = tmp_path / "wrong_fingerprint.safetensors"
    save_model(GPT(GPTConfig(**TINY)), wrong, metadata={"tokenizer_fingerprint": "0123456789abcdef"})
    with pytest.raises(C.VocabularyMismatchError, match="fingerprint"):
        C.classifier_from_checkpoint(wrong)
    right = tmp_path / "right.safetensors"
    save_model(GPT(GPTConfig(**TINY)), right, metadata={"tokenizer_fingerprint": tokenizer_fingerprint(course_tokenizer())})
    assert isinstance(C.classifier_from_checkpoint(right), C.GPTClassifier)
    with pytest.raises(C.VocabularyMismatchError):
        C.classify(tiny_classifier(vocab_size=300), "hello")


# --- baseline, metrics, command line -----------------------------------------------------------


def test_baseline_learns_a_separable_toy_set():
    r = C.train_baseline(toy_splits(), epochs=30, lr=0.05, batch_size=4, progress=False)
    assert r["metrics"]["test"]["accuracy"] == 1.0 and r["metrics"]["val"]["f1"] == 1.0
    assert r["trainable_params"] == 2 * len(r["model"].vocabulary) + 2
    assert r["model"].predict_proba(["win free cash prize now"])[0, 1] > 0.5


def test_classification_metrics():
    m = C.classification_metrics([0, 0, 1, 1, 1], [0, 1, 1, 1, 0])
    assert m["confusion"] == [[1, 1], [1, 2]]
    assert m["accuracy"] == pytest.approx(0.6) and m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3) and m["f1"] == pytest.approx(2 / 3)
    assert C.classification_metrics([0, 0], [0, 0])["f1"] == 0.0


def test_cli_writes_result_rows(splits, tmp_path):
    from gpt.model import GPT

    ckpt = tmp_path / "tiny.safetensors"
    torch.manual_seed(0)
    save_model(GPT(GPTConfig(**TINY)), ckpt)
    out = tmp_path / "results"
    for strategy in ("head", "baseline"):
        args = ["finetune", "--strategy", strategy, "--seeds", "0", "--epochs", "1", "--checkpoint", str(ckpt), "--out", str(out)]
        assert C.main(args) == 0
    table = pd.read_csv(out / "results.csv")
    assert list(table["strategy"]) == ["head", "baseline"] and list(table.columns) == C.RESULT_COLUMNS
    assert table.loc[0, "trainable_params"] == 66 and table["command"].str.startswith("python -m gpt").all()
    assert (out / "runs" / "head_seed0.json").exists() and "| head |" in (out / "summary.md").read_text()


def test_cli_lora_strategy_rows_and_storage(splits, tmp_path):
    from gpt.model import GPT

    ckpt = tmp_path / "tiny.safetensors"
    torch.manual_seed(0)
    save_model(GPT(GPTConfig(**TINY)), ckpt)
    out = tmp_path / "results"
    for strategy, extra in (("lora", ["--rank", "2", "--alpha", "4"]), ("full", [])):
        args = ["finetune", "--strategy", strategy, *extra, "--seeds", "0", "--epochs", "1", "--checkpoint", str(ckpt), "--out", str(out)]
        assert C.main(args) == 0
    table = pd.read_csv(out / "results.csv").set_index("strategy")
    assert list(table.index) == ["full", "lora-r2"]  # sorted: full, last-block, head, lora by rank, baseline
    # r·(in + out) per wrapped layer: per block q, k, v, out (32 -> 32) and fc (32 -> 128), proj (128 -> 32); + the head
    lora = 2 * (4 * (32 + 32) + 2 * (32 + 128)) * TINY["n_layer"]
    assert table.loc["lora-r2", "trainable_params"] == lora + 32 * 2 + 2
    assert table.loc["lora-r2", "rank"] == 2 and table.loc["lora-r2", "alpha"] == 4
    # what a task must store: the whole model for full fine-tuning, the adapter for LoRA
    assert table.loc["full", "stored_bytes"] > table.loc["full", "trainable_params"] * 4
    assert table.loc["lora-r2", "stored_bytes"] < table.loc["full", "stored_bytes"] / 5
    adam = 2 * 4 * table.loc["lora-r2", "trainable_params"]  # two fp32 moments per trainable number (+ a step counter per tensor)
    assert adam <= table.loc["lora-r2", "optimizer_state_bytes"] < adam + 1000
    assert 0 < table.loc["lora-r2", "seconds_per_step"] < table.loc["lora-r2", "seconds_per_epoch"]
    assert (out / "runs" / "lora-r2_seed0.json").exists() and "| lora-r2 |" in (out / "summary.md").read_text()
    with pytest.raises(SystemExit):  # a LoRA flag on another strategy is refused
        C.main(["finetune", "--strategy", "head", "--rank", "4", "--seeds", "0", "--checkpoint", str(ckpt), "--out", str(out)])


def test_strategy_order_and_lora_labels():
    names = ["baseline", "lora-r16", "head", "lora-r2", "full", "last-block"]
    assert sorted(names, key=C.strategy_order) == ["full", "last-block", "head", "lora-r2", "lora-r16", "baseline"]
    assert C.lora_label(8) == "lora-r8"


def test_finetune_other_binary_labels():
    splits = toy_splits()
    relabel = {"ham": "twain", "spam": "dickens"}
    splits = {k: v.assign(label=v["label"].map(relabel)) for k, v in splits.items()}
    model = tiny_classifier()
    C.set_trainable(model, "head")
    r = C.finetune(model, splits, epochs=1, labels=("twain", "dickens"), progress=False, eval_splits=("test",))
    assert set(r["metrics"]["test"]["predicted"]) <= {"twain", "dickens"} and r["labels"] == ["twain", "dickens"]
    with pytest.raises(ValueError, match="labels must be one of"):
        C.finetune(model, splits, epochs=1, progress=False)  # ham/spam expected, twain/dickens given
