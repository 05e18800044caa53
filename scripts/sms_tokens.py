"""How does the course tokenizer cut SMS text, compared with the books it was trained on?

The course BPE (4,096 tokens) learned its merges from 19th-century novels. This script measures, on the
SMS train split (spam and ham separately) and on held-out book text (the last 5 % of every book, as in
pretraining), with the course BPE and with GPT-2's 50,257-token BPE for comparison:

* characters per token (more = the text is cut into fewer, longer pieces);
* the share of tokens that are a single character, the share that are digits, and the share that are
  pieces of a multi-byte character cut apart (e.g. "£" as two byte tokens);
* how the most frequent words of the spam training messages are cut.

    GPT_DATA_MIRROR=../shared/data python scripts/sms_tokens.py     # writes results/sms_tokens/summary.md and .json
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpt.data import load_pretraining_texts  # noqa: E402
from gpt.io.files import atomic_write_text  # noqa: E402
from gpt.sms import load_splits  # noqa: E402
from gpt.tokenizer import course_tokenizer, gpt2_tokenizer  # noqa: E402


def stats(texts: list[str], enc) -> dict:
    n_chars = n_tokens = single = digits = cut_bytes = 0
    for t in texts:
        ids = enc.encode_ordinary(t)
        n_chars += len(t)
        n_tokens += len(ids)
        for i in ids:
            b = enc.decode_single_token_bytes(i)
            try:
                s = b.decode("utf-8")
            except UnicodeDecodeError:
                cut_bytes += 1
                continue
            single += len(s.strip()) == 1
            digits += s.strip().isdigit()
    return {"characters": n_chars, "tokens": n_tokens, "chars_per_token": n_chars / n_tokens,
            "single_character_share": single / n_tokens, "digit_share": digits / n_tokens, "cut_byte_share": cut_bytes / n_tokens}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "results" / "sms_tokens"))
    p.add_argument("--words", type=int, default=20, help="how many frequent spam words to show")
    args = p.parse_args(argv)
    train = load_splits()["train"]
    books = load_pretraining_texts()
    tails = [text[int(0.95 * len(text)):] for text in books.values()]  # the held-out 5 % of every book
    corpora = {"SMS train, spam": train[train["label"] == "spam"]["text"].tolist(),
               "SMS train, ham": train[train["label"] == "ham"]["text"].tolist(),
               "books, held-out 5 %": tails}
    encoders = {"course BPE (4,096)": course_tokenizer(), "GPT-2 BPE (50,257)": gpt2_tokenizer()}
    rows = [{"text": name, "tokenizer": ename, **stats(texts, enc)} for name, texts in corpora.items() for ename, enc in encoders.items()]
    words = collections.Counter(w for t in corpora["SMS train, spam"] for w in re.findall(r"[A-Za-z£$0-9']+", t.lower()) if len(w) > 1)
    course = encoders["course BPE (4,096)"]
    cuts = []
    for w, n in words.most_common(args.words):
        ids = course.encode_ordinary(" " + w)
        cuts.append({"word": w, "count": n, "pieces": [course.decode_single_token_bytes(i).decode("utf-8", "replace") for i in ids]})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "summary.json", json.dumps({"command": "python scripts/sms_tokens.py", "rows": rows, "spam_words": cuts}, indent=1) + "\n")
    lines = ["# How the tokenizers cut SMS text and book text", "",
             "Command: `GPT_DATA_MIRROR=../shared/data python scripts/sms_tokens.py`. Single-character tokens and digit",
             "tokens are counted after stripping spaces; a cut byte is a token that is part of a multi-byte character.", "",
             "| text | tokenizer | characters | tokens | characters per token | single-character tokens | digit tokens | cut bytes |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['text']} | {r['tokenizer']} | {r['characters']:,} | {r['tokens']:,} | {r['chars_per_token']:.2f} | "
                     f"{100 * r['single_character_share']:.1f} % | {100 * r['digit_share']:.1f} % | {100 * r['cut_byte_share']:.2f} % |")
    lines += ["", f"The {args.words} most frequent words of the spam training messages, as the course BPE cuts them (with a leading space):", "",
              "| word | count | pieces |", "|---|---:|---|"]
    for c in cuts:
        lines.append(f"| {c['word']} | {c['count']} | {' · '.join(repr(x)[1:-1] for x in c['pieces'])} |")
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
