"""The shipped reference checkpoint: it loads, matches the course tokenizer, and its model card's
held-out loss is reproduced by recomputing it exactly as ``python -m gpt pretrain`` does."""

import numpy as np
import pytest
import torch

from gpt.data import REGISTRY, load_pretraining_ids
from gpt.model import GPTConfig, count_parameters
from gpt.reference import load_reference, reference_card, reference_path
from gpt.tokenizer import COURSE_TOKENIZER_FILE, course_tokenizer, tokenizer_fingerprint
from gpt.train import evaluate, read_checkpoint

pytestmark = pytest.mark.skipif(
    not reference_path().exists(),
    reason=f"the reference checkpoint {reference_path()} is not there yet (it is trained with "
    "`python -m gpt pretrain ... --export gpt/assets/reference` and committed afterwards)",
)


@pytest.fixture(scope="module")
def card():
    return reference_card()


def test_checkpoint_matches_card_and_tokenizer(card):
    config, state, meta = read_checkpoint(reference_path())
    assert meta["tokenizer_fingerprint"] == tokenizer_fingerprint(course_tokenizer())
    assert card["tokenizer_fingerprint"] == tokenizer_fingerprint(course_tokenizer())
    assert card["tokenizer"] == COURSE_TOKENIZER_FILE
    assert config == GPTConfig.from_dict(card["config"])
    assert config == GPTConfig.from_preset(card["preset"])
    assert config.vocab_size == course_tokenizer().n_vocab
    assert all(torch.isfinite(t).all() for t in state.values())
    model = load_reference()
    assert count_parameters(model) == card["parameters"]


def test_card_corpus_is_the_registry(card):
    by_relpath = {r.relpath: r for r in REGISTRY.values()}
    assert card["corpus"], "the card lists no corpus files"
    for relpath, sha in card["corpus"].items():
        assert relpath in by_relpath, f"{relpath} is not in the data registry"
        assert by_relpath[relpath].sha256 == sha, f"{relpath}: card sha256 differs from the registry"


def test_heldout_loss_reproduces(card, mirror_dir, monkeypatch):
    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    by_relpath = {r.relpath: name for name, r in REGISTRY.items()}
    books = [by_relpath[relpath] for relpath in card["corpus"]]
    tok = course_tokenizer()
    train_ids, val_ids = load_pretraining_ids(tok, books, val_fraction=card["val_fraction"])
    assert len(train_ids) == card["train_tokens_in_corpus"]
    assert len(val_ids) == card["val_tokens_in_corpus"]
    torch.manual_seed(0)
    model = load_reference()
    loss = evaluate(
        model,
        torch.from_numpy(val_ids.astype(np.int64)),
        batch_size=card["batch_size"],
        n_batches=card["heldout_eval_batches"],
        device=torch.device("cpu"),
        precision="fp32",
        seed=0,
    )
    assert loss == pytest.approx(card["heldout_loss_fp32"], abs=0.02)
    # a trained model, far better than guessing uniformly among 4,096 tokens (ln 4096 = 8.3)
    assert loss < 6.0


def test_reference_generates_text(card):
    tok = course_tokenizer()
    model = load_reference()
    idx = torch.tensor([tok.encode("The old man")])
    out = model.generate(idx, 20)
    text = tok.decode(out[0].tolist())
    assert text.startswith("The old man") and len(text) > len("The old man") + 20
