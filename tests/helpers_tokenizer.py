"""Texts shared by the tokenizer tests (tests/test_tokenizer.py, tests/io/test_tokenizer_files.py)."""

# A small deterministic corpus: enough distinct pairs for a few hundred merges.
CORPUS = [
    "It was the best of times, it was the worst of times, it was the age of wisdom, "
    "it was the age of foolishness, it was the epoch of belief, it was the epoch of incredulity.",
    "Call me Ishmael. Some years ago - never mind how long precisely - having little or no money "
    "in my purse, and nothing particular to interest me on shore, I thought I would sail about.",
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife. However little known the feelings or views of such a man may be.",
    "Happy families are all alike; every unhappy family is unhappy in its own way. 1234567890 + 42 = 1234567932!",
]

ROUND_TRIP = [
    "",
    "Hello, world",
    "naïve café, crème brûlée, Ærøskøbing, Straße",
    "It costs £5 — or €6, or ¥700.",
    "emoji: 😀🎉👍🏽 and a family 👨‍👩‍👧‍👦",
    "中文字符 日本語のテキスト 한국어",
    "tabs\tand\t\ttabs,   three spaces,\n\n\nnewlines\r\nCRLF   ",
    "   leading and trailing whitespace   ",
    "\x00\x01 control bytes \x7f",
    "mixed: Ünïcödé 123 ١٢٣ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
]
