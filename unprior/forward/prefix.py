"""Score many responses per image: the shared-prefix forward, the naive concatenated forward, and which families can
use which.

**Shared prefix** (docs/score.md, "The shared-prefix forward"). Each row's image and prompt go through the model
once; the vision tower runs once per row, not once per response. The prompt minus its last token is encoded with a
cache that records every layer's keys and values. Each response then continues from its row's cached keys and values
as one row of a second forward, whose input starts with the prompt's last token, so every response token (the first
one included) is predicted by the continuation. Positions count on from the prompt: ``P − 1 + t`` for 1-D RoPE
families; for M-RoPE (Qwen2-VL, Qwen2.5-VL) the text position after the image, ``P − 1 + t + rope_delta`` on all
three axes. Autograd flows through the cached keys and values into the prompt's forward, so gradients are exact.

**Naive** (what TRL does). Every response is concatenated with its own copy of the prompt and image. Used for
families not in :data:`PREFIX_SUPPORT`, and as the reference the shared prefix is tested against.

The shared prefix calls the model's parts directly: the multimodal base model (vision tower, projector, language
model) for the prompt, then the language decoder for the continuations, and the LM head only at the positions that
predict a response token, so neither pass materialises ``(tokens, vocabulary)`` logits for prompt or padding
positions, and in row chunks that are recomputed in backward instead of kept
(:func:`unprior.forward.logps.head_logps`). The naive path runs the whole model and keeps logits from the shortest
prompt's end on, and takes the log-softmax only at response positions (:func:`unprior.forward.logps.token_logps`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from peft import PeftModel
from torch import Tensor, nn
from transformers.cache_utils import Cache, DynamicLayer
from transformers.modeling_layers import GradientCheckpointingLayer

from unprior.forward.batch import PER_TOKEN_KEYS
from unprior.forward.logps import head_logps, sequence_logps
from unprior.losses import SeqLogps

Positions = Literal["1d", "mrope"]
Method = Literal["auto", "prefix", "naive"]

PREFIX_SUPPORT: dict[str, Positions] = {
    "llava": "1d",
    "idefics3": "1d",
    "smolvlm": "1d",
    "qwen2_vl": "mrope",
    "qwen2_5_vl": "mrope",
}
"""``config.model_type`` -> position scheme of the shared-prefix continuation. Each entry is checked against the naive
forward (losses and gradients) in tests/forward/test_prefix.py, except ``smolvlm`` (the Idefics3 architecture under
another name). Families with bidirectional image attention (``token_type_ids``: Gemma 3, PaliGemma) or sliding-window
caches are not listed and use the naive path."""


class _RecordingLayer(DynamicLayer):
    """Keeps the prompt's keys and values of one layer. Replacing instead of appending makes a replay of the forward
    (activation checkpointing recomputes it during backward) harmless."""

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.keys, self.values = key_states, value_states
        return key_states, value_states


class _PrefixLayer(DynamicLayer):
    """Read-only prefix of one layer: attention sees ``[prefix; new]`` and nothing is stored, so a checkpointed layer
    can be replayed."""

    def __init__(self, keys: Tensor, values: Tensor) -> None:
        super().__init__()
        self.lazy_initialization(keys, values)
        self.keys, self.values = keys, values

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
        return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)


def base_model(model: nn.Module) -> nn.Module:
    """The transformers model under a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if isinstance(model, PeftModel) else model


def prefix_positions(model: nn.Module) -> Positions | None:
    """The shared-prefix position scheme of ``model``'s family, or None when it is not supported."""
    return PREFIX_SUPPORT.get(base_model(model).config.model_type)


def enable_activation_checkpointing(model: nn.Module) -> None:
    """Non-reentrant activation checkpointing of every transformers layer, kept compatible with the prefix caches.

    transformers drops ``past_key_values`` inside checkpointed layers unless the layer says it only reads the cache;
    :class:`_RecordingLayer` and :class:`_PrefixLayer` are safe to replay, so the layers may keep it.
    """
    hf = base_model(model)
    hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    for module in hf.modules():
        if isinstance(module, GradientCheckpointingLayer):
            module._can_checkpoint_with_cache = True


class ResponseScorer(nn.Module):
    """``forward(batch) -> (sum, count)``: summed log-probs and token counts of every response in a batch.

    Wrap this module (not the transformers model) with accelerate/DDP/FSDP: one ``forward`` call then covers the
    prompt and continuation passes.

    Args:
        model: A transformers image-text-to-text model, optionally PEFT-wrapped.
        method: ``prefix`` (shared prefix; refused for unsupported families), ``naive``, or ``auto`` (prefix where
            supported, else naive with one log line).
        log: Where the fallback line goes.
    """

    def __init__(self, model: nn.Module, method: Method = "auto", log: Callable[[str], object] = print) -> None:
        super().__init__()
        self.model = model
        self.positions = prefix_positions(model)
        model_type = base_model(model).config.model_type
        if method == "prefix" and self.positions is None:
            raise ValueError(f"shared prefix is not supported for model type {model_type!r}; use method naive/auto")
        if method == "auto":
            method = "prefix" if self.positions is not None else "naive"
            if method == "naive":
                log(f"shared prefix: not supported for model type {model_type!r} yet; using the naive forward "
                    "(prompt and image repeated for every response)")
        self.method: Literal["prefix", "naive"] = method

    @property
    def repeat_prompts(self) -> bool:
        """Whether batches must repeat each prompt per response (collate with ``repeat_prompts=True``)."""
        return self.method == "naive"

    def forward(self, prompt: dict[str, Tensor], prompt_lens: Tensor, response_ids: Tensor, response_mask: Tensor,
                row_of: Tensor) -> tuple[Tensor, Tensor]:
        """Score a :class:`unprior.forward.batch.ResponseBatch` (pass ``**batch.inputs()``).

        Returns:
            ``(sum, count)``, each ``(N,)``: summed response log-probs and response token counts.
        """
        if self.method == "prefix":
            logps = self._prefix(prompt, prompt_lens, response_ids, response_mask, row_of)
        else:
            logps = self._naive(prompt, prompt_lens, response_ids, response_mask)
        return logps.sum, logps.count

    def _prefix(
        self, prompt: dict[str, Tensor], lens: Tensor, ids: Tensor, mask: Tensor, row_of: Tensor
    ) -> SeqLogps:
        hf = base_model(self.model)
        rows = torch.arange(len(lens), device=lens.device)
        last_token = prompt["input_ids"][rows, lens - 1]
        # Prompt minus its last token: that token starts each continuation, so it predicts the first response token.
        prefix = {k: v[:, :-1] if k in PER_TOKEN_KEYS else v for k, v in prompt.items()}
        prefix_mask = prompt["attention_mask"].clone()
        prefix_mask[rows, lens - 1] = 0
        prefix["attention_mask"] = prefix_mask[:, :-1]
        recorded = Cache(layer_class_to_replicate=_RecordingLayer)
        hf.model(**prefix, past_key_values=recorded, use_cache=True)  # vision tower + prompt, no LM head

        start = self._last_prompt_position(prompt, lens)
        width = ids.shape[1] + 1
        inputs = torch.cat([last_token[row_of, None], ids], dim=1)
        attention = torch.cat([prefix["attention_mask"][row_of], torch.ones_like(inputs[:, :1]), mask.long()], 1)
        positions = start[row_of, None] + torch.arange(width, device=ids.device)
        if self.positions == "mrope":
            positions = positions.unsqueeze(0).expand(3, -1, -1)
        cache = Cache(layers=[_PrefixLayer(layer.keys[row_of], layer.values[row_of]) for layer in recorded.layers])
        hidden = hf.get_decoder()(
            input_ids=inputs, attention_mask=attention, position_ids=positions, past_key_values=cache, use_cache=False
        ).last_hidden_state
        # hidden[:, t] predicts response token t; the LM head runs only where a response token is predicted.
        scored = torch.cat([mask, torch.zeros_like(mask[:, :1])], 1)
        per_token = head_logps(hf.get_output_embeddings(), hidden[scored], ids[mask])
        sums = torch.zeros(len(ids), dtype=per_token.dtype, device=ids.device).index_add(
            0, torch.nonzero(mask)[:, 0], per_token
        )
        return SeqLogps(sum=sums, count=mask.sum(1).to(sums.dtype))

    def _last_prompt_position(self, prompt: dict[str, Tensor], lens: Tensor) -> Tensor:
        """``(B,)`` position id of each prompt's last token (a text token)."""
        if self.positions == "1d":
            return lens - 1
        rope = base_model(self.model).model.get_rope_index
        extra = {k: v for k, v in prompt.items() if k in ("image_grid_thw", "mm_token_type_ids")}
        _, deltas = rope(prompt["input_ids"], attention_mask=prompt["attention_mask"], **extra)
        return lens - 1 + deltas.view(-1).to(lens.device)

    def _naive(self, prompt: dict[str, Tensor], lens: Tensor, ids: Tensor, mask: Tensor) -> SeqLogps:
        n, width = ids.shape
        resp_lens = mask.sum(1)
        total = int((lens + resp_lens).max())
        inputs = {k: v for k, v in prompt.items() if k not in PER_TOKEN_KEYS}
        for key in PER_TOKEN_KEYS:
            if key in prompt:
                inputs[key] = self._append_responses(prompt[key], lens, ids, mask, total, key)
        # Only positions from the shortest prompt's last token on can predict a response token.
        keep = total - int(lens.min()) + 1
        offset = total - keep
        logits = self.model(**inputs, use_cache=False, logits_to_keep=keep).logits
        targets = torch.zeros(n, keep, dtype=torch.long, device=ids.device)
        scored = torch.zeros(n, keep, dtype=torch.bool, device=ids.device)
        cols = (lens - 1 - offset)[:, None] + torch.arange(width, device=ids.device)
        rows = torch.arange(n, device=ids.device)[:, None].expand_as(cols)
        targets[rows[mask], cols[mask]] = ids[mask]
        scored[rows[mask], cols[mask]] = True
        return sequence_logps(logits, targets, scored)

    @staticmethod
    def _append_responses(
        values: Tensor, lens: Tensor, ids: Tensor, mask: Tensor, total: int, key: str
    ) -> Tensor:
        """Per-token prompt values followed by each row's response (ids, ones for the mask, zeros otherwise)."""
        out = torch.zeros(values.shape[0], total, dtype=values.dtype, device=values.device)
        out[:, : values.shape[1]] = values * (torch.arange(values.shape[1], device=values.device) < lens[:, None])
        cols = lens[:, None] + torch.arange(ids.shape[1], device=ids.device)
        fill = {"input_ids": ids, "attention_mask": mask.to(values.dtype)}.get(key, torch.zeros_like(ids))
        rows = torch.arange(values.shape[0], device=values.device)[:, None].expand_as(cols)
        out[rows[mask], cols[mask]] = fill[mask].to(values.dtype)
        return out
