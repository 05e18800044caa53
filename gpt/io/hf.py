"""Real GPT-2 weights: Hugging Face GPT-2 checkpoints converted into the course's :class:`~gpt.model.GPT`.

:meth:`GPT.from_pretrained <gpt.model.GPT.from_pretrained>` (with :func:`read_pretrained`) reads a GPT-2 checkpoint in Hugging Face's
layout, a folder with ``config.json`` and ``model.safetensors`` (or a sharded
``model.safetensors.index.json`` with its shards):

* a local folder (what ``GPT2LMHeadModel.save_pretrained`` writes, or the files copied from the hub);
* or one of the hub names :data:`HUB_NAMES` (``gpt2``, ``gpt2-medium``, ``gpt2-large``, ``gpt2-xl``),
  fetched through ``huggingface_hub`` (the optional extra ``pip install -e ".[hf]"``) into its cache.
  Offline, or without ``huggingface_hub``, the error says which files to put into which folder.

The conversion, weight by weight (Hugging Face name -> course name):

=================================  ===========================================================
``wte`` / ``wpe``                  ``tok_emb`` / ``pos_emb``
``h.<i>.ln_1`` / ``h.<i>.ln_2``    ``blocks.<i>.ln1`` / ``blocks.<i>.ln2``
``h.<i>.attn.c_attn``              ``blocks.<i>.attn.q_proj``, ``k_proj``, ``v_proj`` (split in three)
``h.<i>.attn.c_proj``              ``blocks.<i>.attn.out_proj``
``h.<i>.mlp.c_fc`` / ``c_proj``    ``blocks.<i>.mlp.fc`` / ``blocks.<i>.mlp.proj``
``ln_f``                           ``ln_f``; ``lm_head`` is tied to ``tok_emb`` (as in GPT-2)
=================================  ===========================================================

GPT-2 stores its linear layers as ``Conv1D``: the weight is ``(in, out)`` and ``y = x @ W + b``;
``nn.Linear`` keeps ``(out, in)``, so every such weight is transposed. ``c_attn`` computes query, key
and value in one matmul, ``(C, 3C)``: its columns ``[0, C)`` are the query, ``[C, 2C)`` the key,
``[2C, 3C)`` the value. GPT-2's other choices are the course's already: tanh-approximated GELU
(``gelu_new``), LayerNorm with eps 1e-5, pre-norm blocks, a bias on q/k/v (``qkv_bias=True``).
A config that differs in something the course model cannot compute (another activation or eps,
attention scaled by layer index, cross-attention, an MLP width other than 4C) is refused by name.

The loaded model is paired with GPT-2's tokenizer (:func:`gpt.tokenizer.gpt2_tokenizer`, offline):
``model.tokenizer_name == "gpt2"`` when the vocabulary has GPT-2's 50,257 tokens, so the classifier,
fine-tuning and LoRA pick that tokenizer (and its padding id, ``<|endoftext|>`` = 50256) themselves.

:func:`save_tiny_random_gpt2` writes a tiny random ``GPT2LMHeadModel`` (transformers) to a folder:
the stand-in for GPT-2 in the tests and in notebook 08's CI profile, where no hub can be reached.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from types import SimpleNamespace

import torch
from safetensors.torch import load_file

from ..errors import CheckpointError, ConfigError
from .checkpoint import check_finite


__all__ = ["HUB_NAMES", "PretrainedFiles", "resolve_pretrained", "read_pretrained", "convert_state_dict", "gpt_config_from_hf",
           "save_tiny_random_gpt2", "base_for", "TINY_RANDOM", "GPT2_VOCAB_SIZE"]

# Hub names -> the repository that holds them (the short names are aliases of openai-community's repos).
HUB_NAMES = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
}
HUB_NAMES.update({repo: repo for repo in list(HUB_NAMES.values())})
CONFIG_FILE, WEIGHTS_FILE, INDEX_FILE = "config.json", "model.safetensors", "model.safetensors.index.json"
GPT2_VOCAB_SIZE = 50257
_GELU_TANH = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")  # all tanh-approximated GELU: F.gelu(approximate="tanh")


@dataclass(frozen=True)
class PretrainedFiles:
    """Where a checkpoint's files are: its ``config.json`` and its safetensors file(s) (one, or the shards)."""

    name: str  # as given: a hub name or a folder
    config: Path
    weights: tuple[Path, ...]

    @property
    def main_weights(self) -> Path:
        """The file that identifies the weights (its sha256 goes into results rows and adapters): the
        single ``model.safetensors``, or the shard index."""
        return self.weights[0] if len(self.weights) == 1 else self.config.parent / INDEX_FILE


# ---------------------------------------------------------------------------------------------
# Finding the files: a local folder, or the hub


def _offline_help(name: str) -> str:
    repo = HUB_NAMES[name]
    folder = f"models/{name.split('/')[-1]}"
    return (
        f"download {CONFIG_FILE} and {WEIGHTS_FILE} from https://huggingface.co/{repo}/tree/main on a machine with "
        f"internet, put both into one folder (for example {folder}/{CONFIG_FILE} and {folder}/{WEIGHTS_FILE}) and "
        f"pass that folder instead of {name!r}: GPT.from_pretrained({folder!r}), or --base {folder}"
    )


def _check_shard_names(shards: list, index: Path) -> None:
    """A shard index's ``weight_map`` names files inside the index's own folder: plain relative names,
    never an absolute path or one with ``..`` (which would load weights from elsewhere)."""
    for shard in shards:
        parts = PurePosixPath(shard).parts if isinstance(shard, str) else ()
        if not shard or not parts or "\\" in shard or PurePosixPath(shard).is_absolute() or PureWindowsPath(shard).is_absolute() \
                or ".." in parts or not shard.endswith(".safetensors"):
            raise CheckpointError(
                f"{index} names the shard {shard!r}, which is not a .safetensors file inside {index.parent}; a shard index may only "
                "name files in its own folder. The index is damaged or was tampered with: use the model's original files"
            )


def _folder_files(folder: Path, name: str) -> PretrainedFiles:
    config = folder / CONFIG_FILE
    if not config.is_file():
        raise CheckpointError(
            f"{folder} holds no {CONFIG_FILE}: a Hugging Face GPT-2 folder needs {CONFIG_FILE} and {WEIGHTS_FILE} "
            "(what GPT2LMHeadModel.save_pretrained writes, or the two files downloaded from the hub)"
        )
    if (folder / WEIGHTS_FILE).is_file():
        return PretrainedFiles(name, config, (folder / WEIGHTS_FILE,))
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(f"{index} is not a safetensors shard index ({type(e).__name__}: {e})") from e
        _check_shard_names(shards, index)
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise CheckpointError(f"{folder} lacks the shards {missing} that {index.name} names; copy them into {folder}")
        return PretrainedFiles(name, config, tuple(folder / s for s in shards))
    found = sorted(p.name for p in folder.iterdir())
    hint = " (pytorch_model.bin is not read: it is a pickle; use the model.safetensors file of the same repository)" \
        if "pytorch_model.bin" in found else ""
    raise CheckpointError(f"{folder} holds no {WEIGHTS_FILE} (it holds {found}){hint}")


def _download(name: str) -> PretrainedFiles:
    repo = HUB_NAMES[name]
    try:
        from huggingface_hub import hf_hub_download  # here, not at the top: an optional extra ([hf])
    except ImportError as e:
        raise CheckpointError(
            f"{name!r} is fetched from the Hugging Face hub with huggingface_hub, which is not installed "
            f"(pip install -e \".[hf]\"); or {_offline_help(name)}"
        ) from e
    try:
        config = Path(hf_hub_download(repo, CONFIG_FILE))
        weights = Path(hf_hub_download(repo, WEIGHTS_FILE))
    except Exception as e:  # offline, hub unreachable, proxy, disk: huggingface_hub raises many types
        raise CheckpointError(f"could not fetch {name!r} from the Hugging Face hub ({type(e).__name__}: {e}). Offline: {_offline_help(name)}") from e
    return PretrainedFiles(name, config, (weights,))


def resolve_pretrained(name_or_path: str | os.PathLike) -> PretrainedFiles:
    """The files of ``name_or_path``: an existing folder is read as it is; a hub name is fetched (or
    found in huggingface_hub's cache). Anything else is a :class:`~gpt.errors.ConfigError`."""
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path):
        raise ConfigError(f"from_pretrained needs a hub name ({', '.join(list(HUB_NAMES)[:4])}) or a folder, got {name_or_path!r}")
    path = Path(name_or_path)
    if path.is_dir():
        return _folder_files(path, str(name_or_path))
    if path.is_file():
        raise CheckpointError(f"{path} is a file; give the folder that holds {CONFIG_FILE} and {WEIGHTS_FILE} (here: {path.parent})")
    if str(name_or_path) in HUB_NAMES:
        return _download(str(name_or_path))
    raise ConfigError(
        f"{str(name_or_path)!r} is neither a folder nor a GPT-2 hub name; give a folder holding {CONFIG_FILE} and "
        f"{WEIGHTS_FILE}, or one of {', '.join(list(HUB_NAMES)[:4])}"
    )


# ---------------------------------------------------------------------------------------------
# The conversion


def gpt_config_from_hf(hf: dict, source: str = "config.json", **overrides) -> dict:
    """The :class:`~gpt.model.GPTConfig` fields of a Hugging Face GPT-2 ``config.json`` (as a dict); a setting
    the course model cannot compute is a :class:`~gpt.errors.CheckpointError` naming it."""
    if not isinstance(hf, dict):
        raise CheckpointError(f"{source} is not a JSON object")
    if hf.get("model_type") != "gpt2":
        raise CheckpointError(f"{source} describes model_type {hf.get('model_type')!r}; only GPT-2 checkpoints (model_type 'gpt2') convert")
    problems = []
    if hf.get("activation_function", "gelu_new") not in _GELU_TANH:
        problems.append(f"activation_function {hf.get('activation_function')!r} (the course model uses tanh-GELU, 'gelu_new')")
    if abs(float(hf.get("layer_norm_epsilon", 1e-5)) - 1e-5) > 1e-12:
        problems.append(f"layer_norm_epsilon {hf.get('layer_norm_epsilon')} (the course model uses 1e-5)")
    if hf.get("n_inner") not in (None, 4 * hf.get("n_embd", 0)):
        problems.append(f"n_inner {hf.get('n_inner')} (the course model's MLP is 4 x n_embd wide)")
    if not hf.get("scale_attn_weights", True):
        problems.append("scale_attn_weights false (the course model divides attention scores by sqrt(head width))")
    for flag in ("scale_attn_by_inverse_layer_idx", "add_cross_attention"):
        if hf.get(flag):
            problems.append(f"{flag} true")
    if problems:
        raise CheckpointError(f"{source} is a GPT-2 variant the course model cannot compute: {'; '.join(problems)}")
    try:
        fields = dict(vocab_size=hf["vocab_size"], context_length=hf["n_positions"], n_layer=hf["n_layer"],
                      n_head=hf["n_head"], n_embd=hf["n_embd"])
    except KeyError as e:
        raise CheckpointError(f"{source} lacks the field {e.args[0]!r} of a GPT-2 config") from e
    fields.update(qkv_bias=True, tie_weights=bool(hf.get("tie_word_embeddings", True)), dropout=0.0)
    return {**fields, **overrides}


def convert_state_dict(hf_state: dict[str, torch.Tensor], config, source: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """A Hugging Face GPT-2 state dict (keys with or without the ``transformer.`` prefix) as the
    course GPT's state dict. Conv1D weights are transposed, ``c_attn`` is split into q/k/v; the
    attention-mask buffers old checkpoints carry (``attn.bias``, ``attn.masked_bias``) are skipped.
    A missing, unknown or mis-shaped tensor is a :class:`~gpt.errors.CheckpointError` naming it.
    ``config``: a :class:`~gpt.model.GPTConfig`, or its fields (:func:`gpt_config_from_hf`)."""
    config = SimpleNamespace(**config) if isinstance(config, dict) else config
    C = config.n_embd
    src = {}
    for k, v in hf_state.items():
        k = k.removeprefix("transformer.")
        if k.endswith(("attn.bias", "attn.masked_bias")) and v.dim() != 1:
            continue  # a causal-mask buffer, not a weight
        src[k] = v
    used: set[str] = set()

    def take(key: str, shape: tuple) -> torch.Tensor:
        if key not in src:
            raise CheckpointError(f"{source} lacks the tensor {key!r} of a GPT-2 with {config.n_layer} layers")
        t = src[key]
        if tuple(t.shape) != shape:
            raise CheckpointError(f"{source}: tensor {key!r} has shape {tuple(t.shape)}, config.json implies {shape}")
        used.add(key)
        return t.float()

    def conv1d(prefix: str, n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Conv1D: y = x @ W + b with W (in, out); nn.Linear wants (out, in)
        return take(f"{prefix}.weight", (n_in, n_out)).t().contiguous(), take(f"{prefix}.bias", (n_out,))

    out = {"tok_emb.weight": take("wte.weight", (config.vocab_size, C)),
           "pos_emb.weight": take("wpe.weight", (config.context_length, C)),
           "ln_f.weight": take("ln_f.weight", (C,)), "ln_f.bias": take("ln_f.bias", (C,))}
    for i in range(config.n_layer):
        h, b = f"h.{i}", f"blocks.{i}"
        for hf_ln, ln in (("ln_1", "ln1"), ("ln_2", "ln2")):
            out[f"{b}.{ln}.weight"] = take(f"{h}.{hf_ln}.weight", (C,))
            out[f"{b}.{ln}.bias"] = take(f"{h}.{hf_ln}.bias", (C,))
        w, bias = conv1d(f"{h}.attn.c_attn", C, 3 * C)  # w: (3C, C) rows = [query; key; value]
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            out[f"{b}.attn.{name}.weight"] = w[j * C : (j + 1) * C].clone()
            out[f"{b}.attn.{name}.bias"] = bias[j * C : (j + 1) * C].clone()
        out[f"{b}.attn.out_proj.weight"], out[f"{b}.attn.out_proj.bias"] = conv1d(f"{h}.attn.c_proj", C, C)
        out[f"{b}.mlp.fc.weight"], out[f"{b}.mlp.fc.bias"] = conv1d(f"{h}.mlp.c_fc", C, 4 * C)
        out[f"{b}.mlp.proj.weight"], out[f"{b}.mlp.proj.bias"] = conv1d(f"{h}.mlp.c_proj", 4 * C, C)
    if "lm_head.weight" in src:
        head = take("lm_head.weight", (config.vocab_size, C))
        if config.tie_weights and not torch.equal(head, out["tok_emb.weight"]):
            raise CheckpointError(f"{source}: lm_head.weight differs from wte.weight, but config.json says the two are tied")
        out["lm_head.weight"] = head
    elif not config.tie_weights:
        raise CheckpointError(f"{source} lacks lm_head.weight, which an untied GPT-2 (tie_word_embeddings false) needs")
    if config.tie_weights:
        out["lm_head.weight"] = out["tok_emb.weight"]
    unknown = sorted(set(src) - used)
    if unknown:
        raise CheckpointError(f"{source} holds tensors a GPT-2 does not have: {unknown[:5]}; is it a GPT-2 checkpoint?")
    return out


def _read_weights(files: PretrainedFiles) -> dict[str, torch.Tensor]:
    state = {}
    for f in files.weights:
        try:
            state.update(load_file(str(f)))
        except Exception as e:  # safetensors raises several types for a damaged file
            raise CheckpointError(f"{f} is not a readable safetensors file ({e}); download it again") from e
    return state


def read_pretrained(name_or_path: str | os.PathLike, **config_overrides) -> tuple[dict, dict[str, torch.Tensor], PretrainedFiles]:
    """(config fields, course state dict, files) of a Hugging Face GPT-2 checkpoint: what
    :meth:`GPT.from_pretrained <gpt.model.GPT.from_pretrained>` builds the model from.

    ``name_or_path``: a folder (``config.json`` + ``model.safetensors``) or a hub name of
    :data:`HUB_NAMES`. ``config_overrides`` change fields that do not change what the weights mean
    (``dropout``, default 0.0; ``attn_impl``)."""
    bad = set(config_overrides) - {"dropout", "attn_impl"}
    if bad:
        raise ConfigError(f"from_pretrained can override dropout and attn_impl only (the weights fix the rest), got {sorted(bad)}")
    files = resolve_pretrained(name_or_path)
    try:
        hf = json.loads(files.config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, OSError) as e:
        raise CheckpointError(f"{files.config} is not a readable JSON file ({e})") from e
    fields = gpt_config_from_hf(hf, str(files.config), **config_overrides)
    state = convert_state_dict(_read_weights(files), fields, source=str(files.weights[0].parent))
    check_finite(state, files.weights[0])
    return fields, state, files


# ---------------------------------------------------------------------------------------------
# A stand-in for GPT-2 where the hub cannot be reached

TINY_RANDOM = "tiny-random-gpt2"


def base_for(name: str, folder: str | os.PathLike) -> str:
    """What to pass to :func:`from_pretrained` for a profile's ``gpt2_base``: a hub name or folder as it
    is; :data:`TINY_RANDOM` writes :func:`save_tiny_random_gpt2` into ``folder`` (once) and returns it."""
    if name != TINY_RANDOM:
        return name
    if not (Path(folder) / WEIGHTS_FILE).is_file():
        save_tiny_random_gpt2(folder)
    return str(folder)



def save_tiny_random_gpt2(folder: str | os.PathLike, n_layer: int = 2, n_head: int = 2, n_embd: int = 32, n_positions: int = 128,
                          vocab_size: int = GPT2_VOCAB_SIZE, seed: int = 0) -> Path:
    """Write a randomly initialised ``transformers.GPT2LMHeadModel`` of GPT-2's architecture and vocabulary
    (but tiny widths) to ``folder`` with ``save_pretrained``; needs ``transformers`` (the ``[hf]`` extra)."""
    try:
        from transformers import GPT2Config, GPT2LMHeadModel  # here, not at the top: an optional extra ([hf])
    except ImportError as e:
        raise ConfigError("save_tiny_random_gpt2 needs transformers: pip install -e \".[hf]\"") from e
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head))
    model.save_pretrained(str(folder))
    return Path(folder)
