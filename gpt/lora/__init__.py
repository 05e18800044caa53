"""LoRA for the course GPT: the layer (:mod:`gpt.lora.layer`), PEFT's variants in a few lines each
(:mod:`gpt.lora.variants`), and adapter files (:mod:`gpt.lora.adapters`).

``from gpt.lora import apply_lora`` keeps working: this face hands on the public names of all three.
"""

from .layer import *  # noqa: F401,F403
from .variants import *  # noqa: F401,F403
from .adapters import *  # noqa: F401,F403
