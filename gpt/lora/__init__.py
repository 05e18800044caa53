"""LoRA for the course GPT: the layer (:mod:`gpt.lora.layer`) and PEFT's variants in a few lines each
(:mod:`gpt.lora.variants`). Adapter files (saving, reading, loading onto a base) are I/O: :mod:`gpt.io.adapters`.

``from gpt.lora import apply_lora`` keeps working: this face hands on the public names of both.
"""

from ..deprecated import moved_names as _moved_names
from .layer import *  # noqa: F401,F403
from .variants import *  # noqa: F401,F403

# For one release, ``from gpt.lora import save_adapter`` (and the other adapter names) still works, with a
# DeprecationWarning. gpt.io.adapters is imported lazily, on first use: it imports gpt.lora.layer, so importing
# it here would make gpt.lora import gpt.io.
__getattr__ = _moved_names(__name__)
