"""A byte-level BPE tokenizer trained locally (no hub), with a chat template that handles text and image parts.

The template renders ``{"type": "image"}`` parts as the model's image token (``<image>`` for LLaVA); the processor
then expands it to the number of vision tokens. Content may be a plain string or a list of parts, as TRL's
``prepare_multimodal_messages`` and ``apply_chat_template`` produce.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS = "<pad>", "<s>", "<|end|>"
ROLE_TOKENS = ("<|user|>", "<|assistant|>", "<|system|>")

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|' + message['role'] + '|>\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- '" + "IMAGE_TOKEN" + "' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}"
)


def chat_template(image_token: str) -> str:
    """The house chat template with ``image_token`` standing for each image part."""
    return CHAT_TEMPLATE.replace("IMAGE_TOKEN", image_token)


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 400, image_tokens: tuple[str, ...] = ("<image>",),
                    image_part: str | None = None) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``corpus`` and wrap it as a left-padding ``PreTrainedTokenizerFast``.

    ``<|end|>`` is the EOS token, so generation stops at the end of a turn. The chat template renders an image part
    as ``image_part`` (default: the first of ``image_tokens``; Qwen2-VL needs
    ``<|vision_start|><|image_pad|><|vision_end|>``, as its processor expands it).
    """
    special = [PAD, BOS, EOS, *ROLE_TOKENS, *image_tokens]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(corpus), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                      additional_special_tokens=[*ROLE_TOKENS, *image_tokens], padding_side="left",
                                      clean_up_tokenization_spaces=False)
    wrapped.chat_template = chat_template(image_tokens[0] if image_part is None else image_part)
    return wrapped
