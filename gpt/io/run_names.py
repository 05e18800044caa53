"""How a fine-tuning run is named: in result tables, and in the files of its run folder.

A configuration's name (:attr:`gpt.finetune_config.FinetuneConfig.label`) is its row in
``results.csv`` and the start of its files (``runs/<label>_seed<n>.json``,
``checkpoints/<label>_seed<n>/``), so that a results folder keeps one configuration per name.

* :func:`lora_label` -- a LoRA run's name from its rank: ``lora-r8``.
* :func:`lora_variant_suffix` -- the variants a LoRA config uses, as a suffix: ``-dora``, ``-qv``, ...
  (:data:`TARGET_PRESETS` names common layer choices).
* :func:`check_run_name` -- a name given by hand (``--label``) must be safe as a file name.
"""

from __future__ import annotations

from ..errors import ConfigError

# Named layer choices for target_modules (the label uses the name): query + value, attention, MLP.
TARGET_PRESETS = {"qv": ("q_proj", "v_proj"), "attn": ("attn",), "mlp": ("mlp",)}


def check_run_name(name) -> None:
    """``name`` (``FinetuneConfig.name``) is None, or 1 to 64 letters, digits, '-', '+' or '.', not first, without '_seed'."""
    if name is None:
        return
    ok = isinstance(name, str) and name and not name.startswith((".", "-")) and "_seed" not in name and len(name) <= 64
    if not ok or not all(ch.isascii() and (ch.isalnum() or ch in "-+.") for ch in name):
        raise ConfigError(f"name (--label) must be 1 to 64 letters, digits, '-', '+' or '.' (not first), without '_seed', "
                          f"since it names the run's files; got {name!r}")


def lora_label(r: int) -> str:
    """The strategy name of a LoRA run in result tables: ``"lora-r8"``."""
    return f"lora-r{int(r)}"


def lora_variant_suffix(c) -> str:
    """The label suffix of a LoRA config's variants: ``"-rslora"``, ``"-dora"``, ``"-gaussian"`` / ``"-pissa"``,
    ``"-loraplus16"``, and the targets (a :data:`TARGET_PRESETS` name such as ``"-qv"``, else the names
    joined by ``+``); ``""`` for plain LoRA on every layer, so those labels stay ``lora-r8``."""
    parts = []
    if c.use_rslora:
        parts.append("rslora")
    if c.use_dora:
        parts.append("dora")
    if c.init_lora_weights != "kaiming":
        parts.append(c.init_lora_weights)
    if c.loraplus_lr_ratio is not None:
        parts.append(f"loraplus{c.loraplus_lr_ratio:g}")
    if c.target_modules is not None:
        preset = [k for k, v in TARGET_PRESETS.items() if v == tuple(c.target_modules)]
        parts.append(preset[0] if preset else "+".join(c.target_modules))
    return "".join("-" + p for p in parts)
