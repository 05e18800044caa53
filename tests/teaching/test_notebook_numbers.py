"""Numbers typed into a notebook's prose must come from the notebook itself.

A number in a markdown cell (outside code spans and formulas) passes when an output of the notebook or
a code cell shows it (exactly, or rounded: "2.6 million" for 2,613,120, "4.1 %" for 0.0406), or when it
is structural: a small count (below 10), a year, an exercise or section id. Everything else is a number
typed by hand, which goes stale when the runs change: print it from a variable in a code cell and phrase
the markdown without it. ALLOWED lists the exceptions, each with where the number comes from.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w])")
ALLOWED: dict[str, dict[str, str]] = {  # notebook stem -> {number as typed: where it comes from}
    '01_tokenization': {
        '22': "the number of pretraining books (gpt.data's book list)",
    },
    '03_gpt_model': {
        '22': "the number of pretraining books (gpt.data's book list)",
    },
    '04_pretraining': {
        '398': 'quoted from a committed run or results file named in the same cell; no cell prints it yet',
        '9.8': 'quoted from a committed run or results file named in the same cell; no cell prints it yet',
        '0.39': 'quoted from a committed run or results file named in the same cell; no cell prints it yet',
        '51': 'quoted from a committed run or results file named in the same cell; no cell prints it yet',
        '86': 'quoted from a committed run or results file named in the same cell; no cell prints it yet',
        '320': 'quoted from a committed run or results file named in the same cell; no cell prints it yet',
        '2.3': 'quoted from a committed run or results file named in the same cell; no cell prints it yet',
        '1.55': 'quoted from a committed run or results file named in the same cell; no cell prints it yet',
    },
    '05_spam_classification': {
        '5,572': 'the rows a default CSV reader returns for the SMS collection (a fact about the raw file)',
        '819': 'the ham messages gpt.sms adds to the natural test split',
        '6.5': 'quoted from a committed run or results file named in the same cell; no cell prints it yet',
        '2.4': 'quoted from a committed run or results file named in the same cell; no cell prints it yet',
        '4,306': 'quoted from a committed run or results file named in the same cell; no cell prints it yet',
        '2.02': 'quoted from a committed run or results file named in the same cell; no cell prints it yet',
    },
    '06_lora': {
        '2.8': 'quoted from a committed run or results file named in the same cell; no cell prints it yet',
    },
    '07_improving_lora': {
        '6,912': 'quoted from a committed run or results file named in the same cell; no cell prints it yet',
        '0.33': 'quoted from a committed run or results file named in the same cell; no cell prints it yet',
        '6.5': 'quoted from a committed run or results file named in the same cell; no cell prints it yet',
        '5.3': 'quoted from a committed run or results file named in the same cell; no cell prints it yet',
        '2.8': 'quoted from a committed run or results file named in the same cell; no cell prints it yet',
        '22': 'quoted from a committed run or results file named in the same cell; no cell prints it yet',
        '97': 'quoted from a committed run or results file named in the same cell; no cell prints it yet',
        '149': 'quoted from a committed run or results file named in the same cell; no cell prints it yet',
    },
    '08_lora_gpt2': {
        '0.33': 'one message of the 300-message balanced test split, in points',
    },
}


def notebooks() -> list[Path]:
    folder = ROOT / "notebooks" / "solutions"
    folder = folder if any(folder.glob("0*.ipynb")) else ROOT / "notebooks"
    return sorted(folder.glob("0*_*.ipynb"))


def _text(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _outputs(cell: dict) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append("".join(out.get("text", "")))
        for kind, value in out.get("data", {}).items():
            if kind.startswith("text/"):
                parts.append("".join(value) if isinstance(value, list) else value)
    return "\n".join(parts)


def _values(text: str) -> set[float]:
    return {float((m[1] + (m[2] or "")).replace(",", "")) for m in NUMBER.finditer(text)}


def _prose(markdown: str) -> str:
    """The markdown's running text: without code (fenced, inline), formulas, links' targets, headings of exercises."""
    text = re.sub(r"```.*?```", " ", markdown, flags=re.S)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"\$\$.*?\$\$|\$[^$]*\$", " ", text, flags=re.S)
    text = re.sub(r"\]\([^)]*\)|https?://\S+|\[!\[.*?\]\(.*?\)\]", " ", text)
    text = re.sub(r"^#+ .*$", " ", text, flags=re.M)  # headings: chapter and exercise ids
    text = re.sub(r"\b(?:notebooks?|sections?|Exercises?|exercises?|chapters?)\s+\d+(?:\.\d+)?(?:\s*(?:–|-|and|to)\s*\d+(?:\.\d+)?)?", " ", text)
    text = re.sub(r"\b\d{2}\.\d\b", " ", text)  # exercise ids such as 06.2
    return text


@functools.lru_cache(maxsize=1)
def _structural() -> frozenset[float]:
    """The sizes of the package's model presets (widths, contexts, vocabularies, parameter counts): hyperparameters."""
    from gpt.model import PRESETS, GPT, GPTConfig, count_parameters
    import torch
    values = set()
    for name in PRESETS:
        cfg = GPTConfig.from_preset(name)
        values |= {float(v) for v in cfg.to_dict().values() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        with torch.device("meta"):
            values.add(float(count_parameters(GPT(cfg))))
    return frozenset(values)


def _shown(value: float, decimals: int, known: set[float]) -> bool:
    zeros = len(str(int(value))) - len(str(int(value)).rstrip("0")) if decimals == 0 and value else 0
    for k in known:
        if zeros and round(k, -zeros) == value:  # "about 20,000" for 20,479
            return True
    for k in known:
        for scaled in (k, k / 1e3, k / 1e6, k / 1e9, k * 100, k / 1024, k / 1024**2):
            if round(scaled, decimals) == value or (decimals == 0 and abs(scaled - value) < 0.5 + 1e-9):
                return True
    return False


def typed_numbers(path: Path) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    known = set(_structural())
    for cell in cells:
        if cell["cell_type"] == "code":
            known |= _values(_text(cell)) | _values(_outputs(cell))
    allowed = ALLOWED.get(path.stem, {})
    found = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "markdown":
            continue
        for m in NUMBER.finditer(_prose(_text(cell))):
            typed = m[1] + (m[2] or "")
            value = float(typed.replace(",", ""))
            decimals = len(m[2]) - 1 if m[2] else 0
            structural = (decimals == 0 and value < 10) or (decimals == 0 and 1400 <= value <= 2100)
            if structural or typed in allowed or _shown(value, decimals, known):
                continue
            found.append(f"{path.name} cell {i}: {typed!r} in “…{_text(cell)[max(0, _text(cell).find(typed) - 50):_text(cell).find(typed) + 30]!s}…”")
    return found


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.stem)
def test_prose_numbers_come_from_the_notebook(path):
    found = typed_numbers(path)
    assert not found, ("numbers typed into the prose that no output or code cell of the notebook shows (print them from a "
                       "variable and phrase the markdown without them, or add them to ALLOWED with their source):\n" + "\n".join(found))
