"""The shipped reference checkpoint: it loads, matches the course tokenizer, and its model card's
held-out loss is reproduced by recomputing it exactly as ``python -m gpt pretrain`` does."""

import numpy as np
import pytest
import torch

from gpt.io.corpus import load_pretraining_ids
from gpt.io.downloads import REGISTRY
from gpt.model import GPTConfig, count_parameters
from gpt.teaching.reference import load_reference, reference_card, reference_path
from gpt.io.tokenizer_files import COURSE_TOKENIZER_FILE, COURSE_TOKENIZER_FINGERPRINT, tokenizer_fingerprint
from gpt.tokenizer import course_tokenizer
from gpt.io.weights import read_checkpoint
from gpt.train import evaluate

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
    assert meta["tokenizer_fingerprint"] == tokenizer_fingerprint(course_tokenizer()) == COURSE_TOKENIZER_FINGERPRINT
    assert card["tokenizer_fingerprint"] == tokenizer_fingerprint(course_tokenizer())
    assert card["tokenizer"] == COURSE_TOKENIZER_FILE
    assert config == GPTConfig.from_dict(card["config"])
    # the preset's architecture; attn_impl only chooses how attention is computed (it was trained with "sdpa",
    # before "auto" became the default)
    assert config == GPTConfig.from_preset(card["preset"], attn_impl=config.attn_impl)
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


@pytest.fixture(scope="module")
def corpus_ids(card, mirror_dir):
    """(train_ids, val_ids) exactly as ``python -m gpt pretrain`` builds them for the card's books."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GPT_DATA_MIRROR", str(mirror_dir))
        by_relpath = {r.relpath: name for name, r in REGISTRY.items()}
        books = [by_relpath[relpath] for relpath in card["corpus"]]
        return load_pretraining_ids(course_tokenizer(), books, val_fraction=card["val_fraction"])


def test_card_token_counts_match_the_data_code(card, corpus_ids):
    train_ids, val_ids = corpus_ids
    assert (len(train_ids), len(val_ids)) == (card["train_tokens_in_corpus"], card["val_tokens_in_corpus"]), (
        "the corpus the current data code builds differs from the one the reference was trained on; "
        "retrain and re-export the reference (python -m gpt pretrain ... --export gpt/assets/reference)"
    )


def test_heldout_loss_reproduces(card, corpus_ids):
    _, val_ids = corpus_ids
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


def test_sample_command_accepts_the_reference(capsys):
    """`python -m gpt sample` checks a checkpoint's vocabulary against the course tokenizer; the reference passes."""
    from gpt.cli import main

    assert main(["sample", "--prompt", "The old man", "--max-new-tokens", "5", "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("--- 'The old man' -> The old man") and len(out.strip()) > len("--- 'The old man' -> The old man")
