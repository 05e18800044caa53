"""gpt.lora and gpt.io.adapters against Hugging Face PEFT itself: the same GPT, the same factors, the same
logits (fp32, within 1e-5), merged too; adapter folders in PEFT's format both ways; LoRA+ learning rates.
Skipped when peft is not installed (scripts/setup.sh installs it; pip: the [peft] extra)."""

import copy

import pytest
import torch

peft = pytest.importorskip("peft", reason='the [peft] extra is not installed: pip install -e ".[peft]"')
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict  # noqa: E402

from gpt.errors import AdapterError  # noqa: E402
from gpt.io.adapters import PEFT_PREFIX, load_adapter, save_adapter  # noqa: E402
from gpt.lora import apply_lora, lora_layers, merge_lora  # noqa: E402
from gpt.lora.variants import lora_plus_param_groups  # noqa: E402
from helpers_lora import BLOCK_LINEARS, randomize_lora, tiny_gpt, token_ids  # noqa: E402

VARIANTS = {
    "lora": {},
    "rslora": {"use_rslora": True},
    "dora": {"use_dora": True},
    "gaussian": {"init_lora_weights": "gaussian"},
    "pissa": {"init_lora_weights": "pissa"},
    "rslora+dora": {"use_rslora": True, "use_dora": True},
}
R, ALPHA = 4, 8.0
TOL = dict(atol=1e-5, rtol=0)


def _peft_init(variant: dict):
    init = variant.get("init_lora_weights", "kaiming")
    return True if init == "kaiming" else init


def _pair(variant: dict, targets=BLOCK_LINEARS, head: bool = False):
    """The course GPT with gpt.lora and the same GPT under get_peft_model, holding the same (trained-looking) adapter."""
    base = tiny_gpt(head=head)
    ours = apply_lora(copy.deepcopy(base), r=R, lora_alpha=ALPHA, target_modules=list(targets),
                      modules_to_save=["head"] if head else (), **variant)  # fmt: skip
    randomize_lora(ours, seed=3)
    if variant.get("use_dora"):
        with torch.no_grad():
            for _, layer in lora_layers(ours):
                layer.lora_magnitude_vector.mul_(1 + 0.1 * torch.randn(layer.out_features, generator=torch.Generator().manual_seed(5)))
    config = LoraConfig(r=R, lora_alpha=ALPHA, target_modules=list(targets), use_rslora=variant.get("use_rslora", False),
                        use_dora=variant.get("use_dora", False), init_lora_weights=_peft_init(variant),
                        modules_to_save=["head"] if head else None)  # fmt: skip
    theirs = get_peft_model(copy.deepcopy(base), config).eval()
    keep = ("head.", "lm_head.") if head else ()  # PEFT's suffix match of "head" also copies the tied lm_head
    ours_sd = {k: v for k, v in ours.state_dict().items() if "lora_" in k or k.startswith(keep)}
    result = set_peft_model_state_dict(theirs, {PEFT_PREFIX + k: v for k, v in ours_sd.items()})
    assert not result.unexpected_keys, result.unexpected_keys
    return base, ours, theirs


@pytest.mark.parametrize("name", list(VARIANTS))
def test_logits_equal_peft_on_the_same_factors_unmerged_and_merged(name):
    variant = VARIANTS[name]
    base, ours, theirs = _pair(variant)
    x = token_ids()
    with torch.no_grad():
        base_logits = base(x)
        ours_logits, theirs_logits = ours(x), theirs(x)
        assert (ours_logits - base_logits).abs().max() > 1e-3  # the adapter does something
        torch.testing.assert_close(ours_logits, theirs_logits, **TOL)
        merge_lora(ours)
        theirs.merge_adapter()
        torch.testing.assert_close(ours(x), theirs(x), **TOL)
        torch.testing.assert_close(ours(x), ours_logits, **TOL)


def test_pissa_start_equals_peft_residual_and_factors():
    base = tiny_gpt()
    ours = apply_lora(copy.deepcopy(base), r=R, lora_alpha=ALPHA, init_lora_weights="pissa")
    theirs = get_peft_model(copy.deepcopy(base), LoraConfig(r=R, lora_alpha=ALPHA, target_modules=BLOCK_LINEARS, init_lora_weights="pissa"))
    mine = ours.state_dict()
    for key, value in get_peft_model_state_dict(theirs).items():
        torch.testing.assert_close(mine[key.removeprefix(PEFT_PREFIX)], value, atol=1e-5, rtol=1e-4)
    for name in BLOCK_LINEARS:  # the frozen residual W - s·B0·A0
        torch.testing.assert_close(mine[f"{name}.weight"], theirs.get_submodule(f"base_model.model.{name}").base_layer.weight, atol=1e-6, rtol=0)
    with torch.no_grad():
        x = token_ids()
        torch.testing.assert_close(ours(x), base(x), **TOL)  # W_res + s·B0·A0 = W


@pytest.mark.parametrize("name", ["lora", "dora", "rslora", "pissa"])
def test_peft_format_folder_loads_with_peft_from_pretrained(name, tmp_path):
    base, ours, _ = _pair(VARIANTS[name], head=True)
    save_adapter(ours, tmp_path / "a", format="peft")
    loaded = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "a").eval()  # the untouched base, PiSSA too
    x = token_ids()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), ours(x), **TOL)
        torch.testing.assert_close(loaded.base_model.model.head.weight, ours.head.weight)
    again = load_adapter(copy.deepcopy(base), tmp_path / "a")  # and the course reads its own PEFT folder
    with torch.no_grad():
        torch.testing.assert_close(again(x), ours(x), **TOL)


@pytest.mark.parametrize("name", ["lora", "dora", "rslora"])
def test_adapter_saved_by_peft_loads_with_load_adapter(name, tmp_path):
    base, _, theirs = _pair(VARIANTS[name], targets=["q_proj", "v_proj"], head=True)  # PEFT's suffix patterns
    theirs.save_pretrained(tmp_path / "p")
    ours = load_adapter(copy.deepcopy(base), tmp_path / "p")
    assert sorted(n for n, _ in lora_layers(ours)) == sorted(f"blocks.{i}.attn.{m}" for i in range(2) for m in ("q_proj", "v_proj"))
    x = token_ids()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), **TOL)


def test_unconverted_pissa_adapter_from_peft_is_refused(tmp_path):
    base = tiny_gpt()
    theirs = get_peft_model(copy.deepcopy(base), LoraConfig(r=R, lora_alpha=ALPHA, target_modules=["q_proj"], init_lora_weights="pissa"))
    theirs.save_pretrained(tmp_path / "p")  # without conversion: the factors fit PEFT's residual base only
    with pytest.raises(AdapterError, match="path_initial_model_for_weight_conversion"):
        load_adapter(copy.deepcopy(base), tmp_path / "p")


def test_lora_plus_learning_rates_match_peft_create_loraplus_optimizer():
    from peft.optimizers import create_loraplus_optimizer

    base, ours, theirs = _pair(VARIANTS["dora"], head=True)
    ratio, lr = 16.0, 1e-3
    opt = create_loraplus_optimizer(theirs, torch.optim.AdamW, lr=lr, loraplus_lr_ratio=ratio)
    peft_names = {id(p): n for n, p in theirs.named_parameters()}
    theirs_lr = {peft_names[id(p)].removeprefix(PEFT_PREFIX).replace(".default", "").replace(".modules_to_save", "")
                 .replace("lora_magnitude_vector.weight", "lora_magnitude_vector"): g["lr"]
                 for g in opt.param_groups for p in g["params"]}  # fmt: skip
    theirs_lr.pop("lm_head.weight")  # PEFT's suffix match also copied the tied lm_head; the course freezes it
    ours_names = {id(p): n for n, p in ours.named_parameters()}
    ours_lr = {ours_names[id(p)]: g["lr"] for g in lora_plus_param_groups(ours, lr, ratio) for p in g["params"]}
    assert ours_lr == pytest.approx(theirs_lr)
    assert {v for v in ours_lr.values()} == {lr, lr * ratio}


def test_a_pissa_adapter_converted_by_peft_loads_onto_the_untouched_base(tmp_path):
    base = tiny_gpt()
    theirs = get_peft_model(copy.deepcopy(base), LoraConfig(r=R, lora_alpha=ALPHA, target_modules=BLOCK_LINEARS, init_lora_weights="pissa"))
    theirs.peft_config["default"].init_lora_weights = True  # PEFT's recipe: save the start as a plain adapter...
    theirs.save_pretrained(tmp_path / "init")
    theirs.peft_config["default"].init_lora_weights = "pissa"
    with torch.no_grad():  # ...train (a stand-in)...
        for n, p in theirs.named_parameters():
            if "lora_B" in n:
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(7)))
    theirs.save_pretrained(tmp_path / "done", path_initial_model_for_weight_conversion=str(tmp_path / "init"))  # ...convert
    ours = load_adapter(copy.deepcopy(base), tmp_path / "done")
    assert next(lora_layers(ours))[1].r == 2 * R
    x = token_ids()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), **TOL)


def test_our_peft_format_carries_a_checksum_and_peft_written_folders_load_unverified(tmp_path):
    import json
    import warnings

    from gpt.errors import AdapterError

    base, ours, theirs = _pair(VARIANTS["lora"], head=True)
    save_adapter(ours, tmp_path / "a", format="peft")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # verified: no warning
        load_adapter(copy.deepcopy(base), tmp_path / "a")
    cfg = tmp_path / "a" / "adapter_config.json"
    peft_cfg = json.loads(cfg.read_text())
    cfg.write_text(json.dumps({**peft_cfg, "lora_alpha": 400}))  # PEFT's own config, edited: the checksum covers it
    with pytest.raises(AdapterError, match=r"adapter_config.json was changed after it was saved"):
        load_adapter(copy.deepcopy(base), tmp_path / "a")
    _, plain, _ = _pair(VARIANTS["lora"])
    save_adapter(plain, tmp_path / "b", format="peft")
    with pytest.raises(AdapterError, match=r"was trained on base weights .*a different base model"):  # another base, no base_checkpoint
        load_adapter(tiny_gpt(seed=5), tmp_path / "b")
    theirs.save_pretrained(tmp_path / "p")  # PEFT's own files carry no checksum and no base sha256
    with pytest.warns(UserWarning, match=r"carries no checksum \(written by PEFT\): loaded unverified"):
        load_adapter(copy.deepcopy(base), tmp_path / "p")
