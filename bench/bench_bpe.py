"""How big should the course vocabulary be? Trains the course BPE on the full Gutenberg corpus at
several vocabulary sizes and measures, for each:

* the time ``gpt.tokenizer.train_bpe`` takes on the whole corpus (what ``python -m gpt train-tokenizer`` runs);
* compression, in characters per token, on held-out text: the last 5 % of every book (which the
  BPE did see while training, as the course's own tokenizer does), and on two texts it never saw:
  Edith Wharton's *The Verdict* and the SMS messages of the fine-tuning task;
* training speed of the course model with that vocabulary (tokens/s, a short timed run of the
  course's training loop, batch 16 × context 256);
* characters per second = tokens/s × characters/token: how much *text* the model learns from per
  second, which is what decides the vocabulary on a CPU.

GPT-2's tokenizer (50,257 tokens) is measured the same way for comparison.

    python bench/bench_bpe.py                       # the real run (~10 minutes on 2 cores)
    python bench/bench_bpe.py --books pg35,pg84 --vocab-sizes 300,500 --steps 2 --warmup 1 \\
        --batch-size 2 --context 32 --out /tmp/bench  # smoke test

Needs the data (GPT_DATA_MIRROR or the cache in data/). Writes bench/results/bpe.md and .json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BUSY, OtherLoad, run_info, time_training_when_quiet, write_results  # noqa: E402

from gpt.data import load_pretraining_texts, load_the_verdict  # noqa: E402
from gpt.io.downloads import PRETRAIN_BOOKS  # noqa: E402
from gpt.io.sms_files import load_sms_spam  # noqa: E402
from gpt.model import GPTConfig  # noqa: E402
from gpt.io.tokenizer_files import tokenizer_fingerprint  # noqa: E402
from gpt.tokenizer import course_tokenizer, gpt2_tokenizer, train_bpe  # noqa: E402


def chars_per_token(enc, text: str) -> float:
    return len(text) / len(enc.encode_ordinary(text))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vocab-sizes", default="2048,4096,8192")
    p.add_argument("--books", default="", help="comma-separated registry names (default: all 22 books)")
    p.add_argument("--heldout-fraction", type=float, default=0.05)
    p.add_argument("--steps", type=int, default=10, help="timed training steps per vocabulary")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--out", default=None, help="results folder (default bench/results)")
    p.add_argument("--render-only", metavar="JSON", help="rewrite the .md from an existing results .json (no measuring)")
    args = p.parse_args(argv)
    if args.render_only:
        import json

        doc = json.loads(Path(args.render_only).read_text())
        rows = doc.pop("rows")
        return finish(doc, rows, args.out or Path(args.render_only).parent)
    sizes = [int(v) for v in args.vocab_sizes.split(",")]
    books = args.books.split(",") if args.books else PRETRAIN_BOOKS

    info = run_info()
    with OtherLoad() as load:
        texts = load_pretraining_texts(books)
        corpus = list(texts.values())
        heldout = "".join(t[int(len(t) * (1 - args.heldout_fraction)) :] for t in corpus)
        unseen = {"verdict": load_the_verdict(), "sms": "\n".join(load_sms_spam()["text"])}
        print(f"corpus: {len(books)} books, {sum(map(len, corpus)):,} characters; held-out {len(heldout):,}", flush=True)

        def measure(label, enc, vocab_size, train_seconds):
            r = {
                "label": label,
                "vocab_size": vocab_size,
                "bpe_train_seconds": train_seconds,
                "chars_per_token_heldout": chars_per_token(enc, heldout),
                "chars_per_token_verdict": chars_per_token(enc, unseen["verdict"]),
                "chars_per_token_sms": chars_per_token(enc, unseen["sms"]),
                "fingerprint": tokenizer_fingerprint(enc),
            }
            config = GPTConfig.from_preset("course", vocab_size=vocab_size, context_length=args.context)
            t = time_training_when_quiet(config, args.steps, args.warmup, args.batch_size, args.precision)
            r["train_precision"] = t["precision"]
            r["train_step_seconds_median"] = t["step_seconds_median"]
            r["train_tokens_per_second"] = t["tokens_per_second"]
            r["train_chars_per_second"] = t["tokens_per_second"] * r["chars_per_token_heldout"]
            r["train_other_load_cores"] = t["other_load_cores"]
            print(
                f"{label:22s} BPE {train_seconds if train_seconds is not None else float('nan'):7.1f} s  "
                f"{r['chars_per_token_heldout']:.2f} chars/token  {r['train_tokens_per_second']:7.0f} tokens/s  "
                f"{r['train_chars_per_second']:8.0f} chars/s",
                flush=True,
            )
            return r

        rows = []
        shipped = tokenizer_fingerprint(course_tokenizer())
        for v in sizes:
            with OtherLoad() as bpe_load:
                t0 = time.perf_counter()
                enc = train_bpe(corpus, v, name=f"course-bpe-{v}")
                seconds = time.perf_counter() - t0
            r = measure(f"course BPE {v}", enc, v, seconds)
            r["bpe_other_load_cores"] = bpe_load.cores
            r["same_as_shipped_course_tokenizer"] = r["fingerprint"] == shipped if v == 4096 else None
            rows.append(r)
        rows.append(measure("GPT-2 (for comparison)", gpt2_tokenizer(), 50257, None))
        rows[-1]["same_as_shipped_course_tokenizer"] = None
    info["other_load_cores_whole_run"] = load.cores  # includes the pauses between retries
    info["other_load_cores"] = max(
        max(r["train_other_load_cores"] for r in rows), max(r.get("bpe_other_load_cores", 0.0) for r in rows)
    )
    info["books"] = books
    info["corpus_characters"] = sum(map(len, corpus))
    info["heldout_characters"] = len(heldout)
    info["shipped_course_tokenizer_fingerprint"] = shipped

    info["settings"] = {k: getattr(args, k) for k in ("heldout_fraction", "batch_size", "context", "precision", "warmup", "steps")}
    return finish(info, rows, args.out)


def finish(info: dict, rows: list[dict], out) -> int:
    body = render(info, rows)
    md, js = write_results("bpe", info, rows, body, out)
    print(f"wrote {md} and {js}")
    if info["other_load_cores"] > BUSY:
        print(f"warning: other processes used {info['other_load_cores']:.2f} cores during a measurement; the numbers are not valid", file=sys.stderr)
    return 0


def render(info: dict, rows: list[dict]) -> str:
    st = info["settings"]
    table = [
        "| tokenizer | vocabulary | BPE training time | chars/token: held-out books | chars/token: The Verdict (unseen) | chars/token: SMS (unseen) | training tokens/s | training chars/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        bpe_t = f"{r['bpe_train_seconds']:.1f} s" if r["bpe_train_seconds"] is not None else "(pretrained)"
        table.append(
            f"| {r['label']} | {r['vocab_size']:,} | {bpe_t} | {r['chars_per_token_heldout']:.2f} | "
            f"{r['chars_per_token_verdict']:.2f} | {r['chars_per_token_sms']:.2f} | {r['train_tokens_per_second']:,.0f} | "
            f"{r['train_chars_per_second']:,.0f} |"
        )
    ranked = sorted(rows, key=lambda r: r["train_chars_per_second"], reverse=True)
    best = ranked[0]
    close = [r["label"] for r in ranked[1:] if r["train_chars_per_second"] >= 0.9 * best["train_chars_per_second"]]
    verdict = f"Highest training chars/s: **{best['label']}**"
    if close:
        verdict += (
            f", within 10 % of {', '.join(close)}: step times on this machine vary by 10–30 %, "
            "so these are a tie; the larger vocabulary also fits more text into the 256-token context"
        )
    verdict += "."
    r4096 = next((r for r in rows if r["vocab_size"] == 4096), None)
    same = ""
    if r4096 is not None:
        same = (
            "\nThe 4,096-token vocabulary trained here is "
            + ("**identical** to" if r4096["same_as_shipped_course_tokenizer"] else "**not identical** to")
            + f" the shipped `gpt/assets/course_bpe_4096.json` (fingerprint `{r4096['fingerprint']}` vs `{info['shipped_course_tokenizer_fingerprint']}`)."
        )
    body = f"""# Vocabulary size: BPE training time, compression and training speed

{{header}}
Corpus: {len(info['books'])} Gutenberg books, {info['corpus_characters']:,} characters after stripping the
Project Gutenberg header and footer. "Held-out books" is the last {st['heldout_fraction']:.0%} of every book
({info['heldout_characters']:,} characters); the BPE is trained on the whole corpus, as `python -m gpt train-tokenizer`
does, so it has seen that text. *The Verdict* and the 5,574 SMS messages are not in the corpus.
Training speed: the `course` model (4 layers, width 192) with the given vocabulary, batch
{st['batch_size']} × context {st['context']}, {st['precision']} precision (here: {rows[0]['train_precision']}),
{st['warmup']} warmup + {st['steps']} timed steps of `gpt.train.pretrain`, median step time.
Training chars/s = training tokens/s × chars/token on the held-out books. A training measurement is
repeated (up to 4 tries) when other processes used more than {BUSY} cores during it; the BPE
training time is measured once (its other-load figure is in the JSON).

{chr(10).join(table)}

{verdict}{same}
"""
    return body


if __name__ == "__main__":
    raise SystemExit(main())
