"""Small display helpers for the notebooks: tokens, attention maps, loss curves, sampling distributions.

Plotting functions draw into ``ax`` when one is given (and return it); otherwise they make their own
figure, close it so Jupyter does not show it twice, and return it, so that a call as the last line
of a cell displays the picture exactly once.
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd
import torch



_COLORS = ["#fde2a7", "#c8e6c9", "#bbdefb", "#f8bbd0", "#d1c4e9", "#ffccbc", "#b2ebf2"]


# ---------------------------------------------------------------------------------------------
# Tokens


def token_strings(ids, enc) -> list[str]:
    """The text of each token id on its own (a token that is only part of a UTF-8 character shows as '�')."""
    return [enc.decode_single_token_bytes(int(i)).decode("utf-8", errors="replace") for i in ids]


class TokenView:
    """Text split into its tokens: coloured boxes in a notebook, ``tok|en|s`` as plain text."""

    def __init__(self, pieces: list[str], ids: list[int], show_ids: bool = False):
        self.pieces, self.ids, self.show_ids = pieces, ids, show_ids

    def __repr__(self) -> str:
        body = "|".join(self.pieces)
        if self.show_ids:
            body += "\n" + " ".join(map(str, self.ids))
        return f"{len(self.ids)} tokens: {body}"

    def _repr_html_(self) -> str:
        spans = []
        for n, (piece, i) in enumerate(zip(self.pieces, self.ids)):
            text = html.escape(piece).replace("\n", "↵<br>")
            sub = f"<sub style='color:#555'>{i}</sub>" if self.show_ids else ""
            spans.append(
                f"<span title='id {i}' style='background:{_COLORS[n % len(_COLORS)]};color:#000;"
                f"border-radius:3px;padding:1px 0;margin-right:1px;white-space:pre-wrap'>{text}{sub}</span>"
            )
        return (
            f"<div style='font-family:monospace;line-height:1.9'><b>{len(self.ids)} tokens</b><br>"
            + "".join(spans)
            + "</div>"
        )


def show_tokens(text: str, enc, show_ids: bool = False, allowed_special="all") -> TokenView:
    """Display how the tokenizer ``enc`` cuts ``text`` into tokens (hover a token to see its id)."""
    ids = enc.encode(text, allowed_special=allowed_special)
    return TokenView(token_strings(ids, enc), ids, show_ids)


def token_table(text: str, enc, allowed_special="all"):
    """A DataFrame with one row per token: its id, its text and its raw bytes."""

    ids = enc.encode(text, allowed_special=allowed_special)
    return pd.DataFrame(
        {
            "id": ids,
            "token": [repr(s) for s in token_strings(ids, enc)],
            "bytes": [len(enc.decode_single_token_bytes(i)) for i in ids],
        }
    )


def compression_table(texts: dict[str, str], encoders: dict[str, object]):
    """Characters per token for each text (rows) under each tokenizer (columns); higher is better compression.

    Special-token strings in the texts are encoded as ordinary text.
    """

    rows = {}
    for tname, text in texts.items():
        row = {"characters": len(text)}
        for ename, enc in encoders.items():
            row[ename] = round(len(text) / max(1, len(enc.encode_ordinary(text))), 2)
        rows[tname] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.columns = ["characters"] + [f"{e} chars/token" for e in encoders]
    return df


# ---------------------------------------------------------------------------------------------
# Attention


def _new_axes(ax, figsize):
    import matplotlib.pyplot as plt  # here, not at the top: matplotlib is slow to import, and only the plots need it

    if ax is not None:
        return ax.figure, ax, False
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax, True


def _finish(fig, ax, own):
    import matplotlib.pyplot as plt  # here, not at the top: matplotlib is slow to import, and only the plots need it

    if not own:
        return ax
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_attention(weights, labels=None, ax=None, title: str | None = None, annotate: bool = True):
    """Heatmap of a (T, T) attention matrix: row = query token, column = key token it looks at."""
    w = torch.as_tensor(weights).detach().float().cpu().numpy()
    fig, ax, own = _new_axes(ax, (0.55 * w.shape[1] + 2.5, 0.5 * w.shape[0] + 1.5))
    im = ax.imshow(w, cmap="Blues", vmin=0.0, vmax=max(1e-9, float(np.nanmax(w))))
    if labels is not None:
        ax.set_xticks(range(len(labels)), [repr(l)[1:-1] for l in labels], rotation=60, ha="right")
        ax.set_yticks(range(len(labels)), [repr(l)[1:-1] for l in labels])
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if title:
        ax.set_title(title)
    if annotate and w.shape[0] <= 12:
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=8, color="white" if w[i, j] > 0.6 * w.max() else "black")
    if own:
        fig.colorbar(im, ax=ax, shrink=0.8)
    return _finish(fig, ax, own)


@torch.no_grad()
def attention_maps(model, idx: torch.Tensor) -> list[torch.Tensor]:
    """The attention weights of every layer of a GPT for token ids ``idx`` (B, T): a list of (B, H, T, T).

    Each attention layer's input is captured with a forward hook during one forward pass; the weights
    are then recomputed from it exactly as ``explicit_causal_attention`` does (without dropout).
    """
    captured = []
    hooks = [b.attn.register_forward_pre_hook(lambda m, args: captured.append((m, args[0]))) for b in model.blocks]
    was = model.training
    model.eval()
    try:
        model(idx)
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    maps = []
    for attn, x in captured:
        B, T, C = x.shape
        H, D = attn.n_head, attn.head_dim
        q = attn.q_proj(x).view(B, T, H, D).transpose(1, 2)
        k = attn.k_proj(x).view(B, T, H, D).transpose(1, 2)
        scores = (q @ k.transpose(-2, -1) / math.sqrt(D)).masked_fill(attn.causal_mask[:T, :T], float("-inf"))
        maps.append(torch.softmax(scores, dim=-1))
    return maps


def plot_attention_heads(maps: list[torch.Tensor], labels, batch_index: int = 0):
    """A grid of heatmaps: one row per layer, one column per head (``maps`` from :func:`attention_maps`)."""
    import matplotlib.pyplot as plt  # here, not at the top: matplotlib is slow to import, and only the plots need it

    L, H = len(maps), maps[0].shape[1]
    T = maps[0].shape[-1]
    size = max(2.2, 0.16 * T)
    fig, axes = plt.subplots(L, H, figsize=(size * H + 1, size * L + 0.5), squeeze=False)
    ticks = [repr(l)[1:-1] for l in labels]
    for layer in range(L):
        for head in range(H):
            ax = axes[layer][head]
            ax.imshow(maps[layer][batch_index, head].float().cpu().numpy(), cmap="Blues", vmin=0, vmax=1)
            ax.set_title(f"layer {layer}, head {head}", fontsize=9)
            ax.set_xticks(range(T), ticks if layer == L - 1 else [], rotation=90, fontsize=7)
            ax.set_yticks(range(T), ticks if head == 0 else [], fontsize=7)
    fig.tight_layout()
    plt.close(fig)
    return fig


# ---------------------------------------------------------------------------------------------
# Training and sampling


def moving_average(values, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` values (shorter at the start)."""
    v = np.asarray(values, dtype=float)
    if window <= 1 or len(v) == 0:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    out = np.empty_like(v)
    for i in range(len(v)):
        lo = max(0, i + 1 - window)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


def plot_loss_curves(history: dict, smooth: int = 25, baselines: dict[str, float] | None = None, title: str | None = None):
    """Training loss (raw and smoothed) and held-out loss against steps, and the learning-rate schedule below.

    ``history`` is what :func:`gpt.train.pretrain` returns; ``baselines`` adds labelled horizontal lines.
    """
    import matplotlib.pyplot as plt  # here, not at the top: matplotlib is slow to import, and only the plots need it

    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    steps = history["step"]
    ax.plot(steps, history["train_loss"], color="tab:blue", alpha=0.25, lw=0.8, label="training loss (each step)")
    ax.plot(steps, moving_average(history["train_loss"], smooth), color="tab:blue", lw=1.8, label=f"training loss (mean of last {smooth})")
    if history.get("val_loss"):
        ax.plot(history["val_step"], history["val_loss"], "o-", color="tab:orange", lw=1.8, label="held-out loss")
    for i, (name, value) in enumerate((baselines or {}).items()):
        ax.axhline(value, ls="--", lw=1, color=f"C{i + 2}", label=f"{name} ({value:.2f})")
    ax.set_ylabel("cross-entropy loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    ax_lr.plot(steps, history["lr"], color="tab:gray")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_next_token_probs(logits: torch.Tensor, enc, temperatures=(0.5, 1.0, 2.0), k: int = 12, top_k: int | None = None):
    """Bar charts of the ``k`` most likely next tokens for one position's (V,) ``logits`` at each temperature.

    With ``top_k``, tokens outside the ``top_k`` most likely get probability 0 (as in sampling with top-k).
    """
    import matplotlib.pyplot as plt  # here, not at the top: matplotlib is slow to import, and only the plots need it

    logits = torch.as_tensor(logits).detach().float().flatten()
    order = torch.argsort(logits, descending=True)[:k]
    labels = [repr(s)[1:-1].replace(" ", "␣") for s in token_strings(order.tolist(), enc)]  # ␣ = a space
    fig, axes = plt.subplots(1, len(temperatures), figsize=(3.6 * len(temperatures), 3.4), sharey=True, squeeze=False)
    panels = []
    for t in temperatures:
        scaled = logits / t if t > 0 else logits * 1e6
        if top_k is not None:
            kth = torch.topk(scaled, top_k).values[-1]
            scaled = scaled.masked_fill(scaled < kth, float("-inf"))
        panels.append((t, torch.softmax(scaled, dim=-1)[order].numpy()))
    xmax = min(1.0, 1.1 * max(float(p.max()) for _, p in panels))
    for ax, (t, shown) in zip(axes[0], panels):
        ax.barh(range(k), shown, color="tab:purple")
        ax.set_yticks(range(k), labels, fontsize=8)
        rest = 1.0 - float(shown.sum())
        ax.set_title(f"temperature {t:g}" + (f", top-k {top_k}" if top_k else "") + f"\nrest of vocabulary: {rest:.0%}", fontsize=9)
        ax.set_xlim(0, xmax)
        ax.set_xlabel("probability")
    axes[0][0].invert_yaxis()  # most likely token on top (the y axis is shared: invert it once)
    fig.tight_layout()
    plt.close(fig)
    return fig


def samples_table(models: dict, enc, prompts, max_new_tokens: int, seed: int = 0, **generate_kwargs):
    """The continuation (generated text only) of each prompt (rows) by each model (columns), as a DataFrame.

    ``generate_kwargs`` go to :meth:`gpt.model.GPT.generate` (``temperature``, ``top_k``, ``top_p``).
    Every model and prompt starts from the same random seed, so a difference comes from the model.
    """

    table = {}
    for name, model in models.items():
        device = next(model.parameters()).device
        column = {}
        for prompt in prompts:
            g = torch.Generator(device=device).manual_seed(seed)
            idx = torch.tensor([enc.encode(prompt)], device=device)
            out = model.generate(idx, max_new_tokens, generator=g, eos_id=enc.eot_token, **generate_kwargs)
            column[prompt] = enc.decode(out[0, idx.size(1) :].tolist())
        table[name] = column
    df = pd.DataFrame(table)
    df.index.name = "prompt"
    return df


# ---------------------------------------------------------------------------------------------
# Fine-tuning (notebooks 05 and 06, the experiment command)


def plot_confusion_matrix(confusion, ax=None, title: str = "", labels=("ham", "spam")):
    """Draw a 2×2 confusion matrix (rows: true class, columns: predicted) with counts in the cells."""
    import matplotlib.pyplot as plt  # here, not at the top: matplotlib is slow to import, and only the plots need it

    cm = np.asarray(confusion)
    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 3))
    ax.imshow(cm, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), [f"pred {l}" for l in labels])
    ax.set_yticks(range(len(labels)), [f"true {l}" for l in labels])
    if title:
        ax.set_title(title)
    return ax


def plot_history(history: dict, axes=None, label: str = ""):
    """Loss and accuracy per epoch, train and validation (two side-by-side axes)."""
    import matplotlib.pyplot as plt  # here, not at the top: matplotlib is slow to import, and only the plots need it
    from matplotlib.ticker import MaxNLocator  # here, not at the top: matplotlib is slow to import, and only the plots need it

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    ep = history["epoch"]
    prefix = f"{label} " if label else ""
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.plot(ep, history[f"train_{key}"], "o-", label=f"{prefix}train")
        ax.plot(ep, history[f"val_{key}"], "s--", label=f"{prefix}val")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    return axes
