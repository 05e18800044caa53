"""Files on disk: atomic writes and sha256 (:mod:`gpt.io.files`), model files (:mod:`gpt.io.weights`),
checkpoints that resume exactly (:mod:`gpt.io.checkpoint`), and Hugging Face GPT-2 weights (:mod:`gpt.io.hf`)."""
