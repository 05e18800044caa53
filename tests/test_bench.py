"""Smoke test of the LoRA scale benchmark on the tiny preset: it runs, writes its files, and its rows make sense."""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_lora_scale.py"
HANG = 3600  # seconds: a guard against a hung benchmark, not a speed check (speed is what bench/ measures)


def test_bench_lora_scale_on_a_tiny_shape(tmp_path):
    cmd = [sys.executable, str(BENCH), "--shapes", "course-tiny", "--steps", "1", "--warmup", "1", "--seq", "32", "--out", str(tmp_path)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=HANG)
    doc = json.loads((tmp_path / "lora_scale.json").read_text())
    rows = {r["mode"]: r for r in doc["rows"]}
    full, lora = rows["full"], rows["lora"]
    assert full["parameters"] < lora["parameters"] == full["parameters"] + lora["trainable_params"] - 66  # + factors, same body and head
    assert lora["trainable_params"] < full["trainable_params"] == full["parameters"]
    assert lora["optimizer_state_bytes"] < full["optimizer_state_bytes"] and lora["gradient_bytes"] < full["gradient_bytes"]
    assert full["step_peak_bytes"] > full["gradient_bytes"] > 0 and full["step_seconds_median"] > 0
    assert "| course-tiny |" in (tmp_path / "lora_scale.md").read_text()
    assert (tmp_path / "lora_scale.png").stat().st_size > 5_000


# --- the anchor of bench_vs_reference.py ------------------------------------------------------------

sys.path.insert(0, str(BENCH.parent))


def test_anchor_is_the_same_function_as_the_course_gpt():
    """The anchor re-implementation computes what the course's GPT computes: with the course model's weights
    copied in (the tied output layer into the anchor's separate one), the logits agree. So the speed
    comparison compares two implementations of one architecture, not two architectures."""
    import torch
    import torch.nn.functional as F

    from anchor_gpt import GELU, GPTModel, LayerNorm, config_like

    from gpt.model import GPT, GPTConfig

    x = torch.randn(3, 5, 8)
    torch.testing.assert_close(GELU()(x), F.gelu(x, approximate="tanh"))
    torch.testing.assert_close(LayerNorm(8)(x), F.layer_norm(x, (8,)))

    config = GPTConfig.from_preset("course-tiny", attn_impl="sdpa")
    torch.manual_seed(0)
    ours = GPT(config).eval()
    anchor = GPTModel(config_like(config.vocab_size, config.context_length, config.n_embd, config.n_layer, config.n_head)).eval()
    rename = {"ln1.weight": "norm1.scale", "ln1.bias": "norm1.shift", "ln2.weight": "norm2.scale", "ln2.bias": "norm2.shift",
              "attn.q_proj": "att.W_query", "attn.k_proj": "att.W_key", "attn.v_proj": "att.W_value", "attn.out_proj": "att.out_proj",
              "mlp.fc": "ff.layers.0", "mlp.proj": "ff.layers.2"}
    state = {}
    for name, t in ours.state_dict().items():
        new = name.replace("blocks.", "trf_blocks.").replace("ln_f.weight", "final_norm.scale").replace("ln_f.bias", "final_norm.shift")
        new = new.replace("lm_head.", "out_head.")
        for a, b in rename.items():
            new = new.replace(a, b)
        state[new] = t
    anchor.load_state_dict(state, strict=False)
    assert set(anchor.state_dict()) - set(state) == {f"trf_blocks.{i}.att.mask" for i in range(config.n_layer)}
    ids = torch.randint(0, config.vocab_size, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(anchor(ids), ours(ids), atol=1e-5, rtol=1e-5)


def test_bench_vs_reference_smoke(tmp_path):
    bench = BENCH.parent / "bench_vs_reference.py"
    cmd = [sys.executable, str(bench), "--steps", "2", "--warmup", "1", "--repeats", "1", "--batch-size", "2", "--context", "32",
           "--skip-compile", "--peak-seconds", "0.05", "--out", str(tmp_path)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=HANG)
    doc = json.loads((tmp_path / "vs_reference.json").read_text())
    rows = {r["label"]: r for r in doc["rows"]}
    assert set(rows) == {"anchor, fp32", "anchor, bf16", "course, default", "course, fp32"}
    assert rows["course, fp32"]["precision"] == "fp32" and rows["anchor, bf16"]["precision"] == "bf16"
    assert rows["course, default"]["parameters"] < rows["anchor, fp32"]["parameters"]  # the anchor's output layer is not tied
    for r in rows.values():
        assert r["tokens_per_second"] > 0 and r["mfu_bf16_peak"] > 0  # no upper bound: a busy machine skews the measured peak
        assert abs(r["model_flops_per_second"] - r["tokens_per_second"] * doc["flops_per_token"]) < 1e-6 * r["model_flops_per_second"]
    assert doc["profile"]["top_ops"] and doc["peak_flops"]["bf16"] > 0
    md = (tmp_path / "vs_reference.md").read_text()
    assert "## Targets" in md and "| course, default |" in md
    assert (tmp_path / "vs_reference.png").stat().st_size > 5_000
