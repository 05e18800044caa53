"""Smoke test of the LoRA scale benchmark on the tiny preset: it runs, writes its files, and its rows make sense."""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_lora_scale.py"


def test_bench_lora_scale_on_a_tiny_shape(tmp_path):
    cmd = [sys.executable, str(BENCH), "--shapes", "course-tiny", "--steps", "1", "--warmup", "1", "--seq", "32", "--out", str(tmp_path)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    doc = json.loads((tmp_path / "lora_scale.json").read_text())
    rows = {r["mode"]: r for r in doc["rows"]}
    full, lora = rows["full"], rows["lora"]
    assert full["parameters"] < lora["parameters"] == full["parameters"] + lora["trainable_params"] - 66  # + factors, same body and head
    assert lora["trainable_params"] < full["trainable_params"] == full["parameters"]
    assert lora["optimizer_state_bytes"] < full["optimizer_state_bytes"] and lora["gradient_bytes"] < full["gradient_bytes"]
    assert full["step_peak_bytes"] > full["gradient_bytes"] > 0 and full["step_seconds_median"] > 0
    assert "| course-tiny |" in (tmp_path / "lora_scale.md").read_text()
    assert (tmp_path / "lora_scale.png").stat().st_size > 5_000
