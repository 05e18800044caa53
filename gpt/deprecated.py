"""Old import paths, kept for one release: ``import gpt.files`` still works, warns, and hands on
:mod:`gpt.io.files` (``MOVED``); ``from gpt.lora import save_adapter`` still works, warns, and hands on
:func:`gpt.io.adapters.save_adapter` (``MOVED_NAMES``). Each entry below is deprecated; import the new path instead."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "gpt.lora_variants": "gpt.lora.variants", "gpt.adapters": "gpt.io.adapters", "gpt.lora.adapters": "gpt.io.adapters",
    "gpt.files": "gpt.io.files", "gpt.checkpoint": "gpt.io.checkpoint", "gpt.hf": "gpt.io.hf",
    "gpt.device": "gpt.runtime.device", "gpt.distributed": "gpt.runtime.distributed", "gpt.meters": "gpt.runtime.meters",
    "gpt.speed": "gpt.runtime.speed", "gpt.progress": "gpt.runtime.progress", "gpt.profile": "gpt.runtime.profile",
    "gpt.tools": "gpt.runtime.tools", "gpt.loss": "gpt.runtime.fused_loss",
    "gpt.experiment": "gpt.experiments.runner", "gpt.lora_ablation": "gpt.experiments.ablations",
    "gpt.results": "gpt.experiments.results", "gpt.compare": "gpt.experiments.compare", "gpt.stats": "gpt.experiments.stats",
    "gpt.dapt": "gpt.experiments.dapt", "gpt.baseline": "gpt.experiments.baseline", "gpt.run_folder": "gpt.experiments.run_folder",
    "gpt.tasks": "gpt.experiments.tasks",
    "gpt.classroom": "gpt.teaching.classroom", "gpt.course": "gpt.teaching.course", "gpt.reference": "gpt.teaching.reference",
    "gpt.viz": "gpt.teaching.viz",
}
MOVED_NAMES = {  # names a module that stays used to hand on, now imported from elsewhere: module -> (new module, names)
    "gpt.lora": ("gpt.io.adapters", ("save_adapter", "load_adapter", "read_adapter", "base_weights_sha256", "AdapterError",
                                     "ADAPTER_WEIGHTS_NAME", "ADAPTER_CONFIG_NAME", "ADAPTER_FORMATS", "PEFT_PREFIX")),
}
ALSO = {  # names an old module held that now live elsewhere: old module -> {name: "new.module:attribute"}
    "gpt.viz": {"plot_accuracy_vs_params": "gpt.experiments.results:plot_accuracy_vs_params"},
    "gpt.hf": {"from_pretrained": "gpt.model:GPT.from_pretrained"},
    "gpt.experiment": {"register_cli": "gpt.cli.finetune:register"},
    "gpt.dapt": {"register_cli": "gpt.cli.dapt:register"},
    "gpt.classroom": {"register_cli": "gpt.cli.classroom:register"},
}


class _Reexport(importlib.abc.Loader):
    """Loads an old path as a thin module holding the public names of its new home."""

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        new = MOVED[module.__name__]
        warnings.warn(f"{module.__name__} is deprecated and goes away in the next release: import {new}", DeprecationWarning, stacklevel=2)
        target = importlib.import_module(new)
        module.__dict__.update({n: v for n, v in vars(target).items() if not n.startswith("_")})
        for name, where in ALSO.get(module.__name__, {}).items():
            value = importlib.import_module(where.split(":")[0])
            for part in where.split(":")[1].split("."):
                value = getattr(value, part)
            module.__dict__[name] = value
        module.__doc__ = f"Deprecated: moved to :mod:`{new}`."


class _OldPaths(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, _Reexport())
        return None


def install() -> None:
    """Let the old paths import (once per process)."""
    if not any(isinstance(f, _OldPaths) for f in sys.meta_path):
        sys.meta_path.append(_OldPaths())


def moved_names(module: str):
    """A module-level ``__getattr__`` for ``module``: each of its names in ``MOVED_NAMES`` warns and hands on
    the new home's object; any other missing name stays an AttributeError. The new home is imported on first
    use, not here: it may import ``module`` itself (gpt.io.adapters imports gpt.lora.layer)."""
    new, names = MOVED_NAMES[module]

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(f"{module}.{name} is deprecated and goes away in the next release: from {new} import {name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new), name)

    return __getattr__
