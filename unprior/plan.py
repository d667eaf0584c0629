"""The memory plan: what a ``train``, ``score`` or ``pairs`` run will need per device, before any weight is loaded.

Every term is a small pure function of the model's shape (read from its config on the meta device), the longest row
of the pairs file (image tokens, prompt, responses) and the run's settings; docs/train.md ("Memory plan") shows the
arithmetic for LLaVA-1.5-7B and Qwen2-VL-7B. The activation terms count the tensors autograd keeps for backward in
the shared-prefix forward (docs/score.md; unprior/forward/prefix.py), which tests/test_plan.py checks against
``torch.autograd.graph.saved_tensors_hooks`` on tiny models, and the whole plan against measured peaks
(bench/plan_check.py).

Terms (bytes, per device):

- weights: parameters × bytes of the loaded dtype (``config.json``'s dtype); sharded over N devices by FSDP2 and
  ZeRO-3, which add one decoder layer gathered whole.
- gradients: trainable parameters × their bytes (LoRA: the adapter, kept in fp32 by PEFT); DDP adds its bucket
  copy of the same size; sharded by FSDP2 / ZeRO-3.
- optimizer: AdamW's two states per trainable parameter in the parameter's dtype; sharded by FSDP2 / ZeRO-3.
- activations: per row, what the prompt's forward (once) and the K+1 continuations keep for backward; with
  activation checkpointing only each layer's input, plus one layer recomputed at a time.
- reference cache: on disk, two float64 values per response (``unprior score``'s logp_sum and logp_mean).

``unprior pairs``: the generator's weights and the largest ``generate`` call of the hf backend, as it batches the
dataset's rows (docs/pairs.md, "Memory plan for pairs").
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Literal

import torch
from PIL import Image
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

from unprior.config import check_choice, check_range, fail
from unprior.formats.pairs import read_pairs
from unprior.forward.batch import RowEncoder
from unprior.models.backends.hf import resolve_device, resolve_dtype
from unprior.models.families import load_processor, require_model_dir
from unprior.models.generate import RowShape as PromptShape
from unprior.models.generate import batch_cost, budget_batches, chat_text, row_shapes
from unprior.pairs.config import NEEDS
from unprior.pairs.loaders import load_samples
from unprior.pairs.merge import resolve_pairs
from unprior.pairs.run import open_images, refuse_empty, resolve_max_new_tokens
from unprior.pairs.shards import shard_of
from unprior.pairs.strategies import STRATEGIES, StrategyContext
from unprior.train.model import lora_targets

Setup = Literal["single", "ddp", "fsdp2", "zero3"]
SETUPS: tuple[str, ...] = ("single", "ddp", "fsdp2", "zero3")
DTYPE_BYTES = {"float32": 4, "fp32": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2}
GiB = 1 << 30

# Floats autograd keeps per token and decoder layer in the shared-prefix forward of a Llama/Qwen2 layer (sdpa), as
# counted with saved-tensor hooks (tests/test_plan.py) in transformers 5.23. Full fine-tuning: both RMSNorms' input
# and output (4 H), the q/k/v and down-projection inputs (2 H), the rotated query and the attention output (2 H),
# the rotated key and the value (2 H_kv), gate, up, their product's factors and the down input (4 I). LoRA (frozen
# base): the same plus each adapted linear's dropped-out input (6 H + I) and each adapter's rank-r output (7 r), less
# nothing (a frozen linear keeps no input, but its LoRA branch does).
FULL_PER_TOKEN = {"hidden": 8, "kv": 2, "intermediate": 4, "rank": 0}
LORA_PER_TOKEN = {"hidden": 16, "kv": 2, "intermediate": 5, "rank": 7}


@dataclass(frozen=True)
class TextShape:
    """The language decoder's dimensions (``config.text_config``)."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_width(self) -> int:
        """Width of one layer's keys (or values) per token: ``kv_heads × head_dim``."""
        return self.kv_heads * self.head_dim


@dataclass(frozen=True)
class ModelShape:
    """Parameter counts by part, and the decoder's dimensions."""

    text: TextShape
    params: int
    """Every parameter (a tied head counted once)."""
    language: int
    """Parameters of the language decoder and the LM head (what full fine-tuning trains)."""
    layer: int
    """Parameters of one decoder layer (what FSDP2 / ZeRO-3 gather at a time)."""
    lora_per_rank: int
    """Sum of ``in + out`` over the decoder's linear layers: LoRA rank r adds ``r ×`` this many parameters."""
    dtype: str
    """The dtype the weights load in (config.json's ``dtype``; float32 when absent)."""
    vision_tokens_per_image_token: int = 1
    """Vision-tower tokens behind one image token of the prompt (pixel shuffle / patch merge: 4 or 16)."""
    vision_hidden: int = 0
    vision_intermediate: int = 0
    vision_heads: int = 0
    vision_block: int = 0
    """Patches one attention of the vision tower spans: a tile (``(image_size / patch_size)²``); 0: a whole image."""
    vision_eager: bool = False
    """The tower's attention is eager (materialises its scores) rather than sdpa (transformers' default)."""


@dataclass(frozen=True)
class RowShape:
    """The longest row of a pairs file, as the model sees it."""

    prompt: int
    """Prompt tokens, image tokens included."""
    image: int
    """Image tokens in the prompt."""
    responses: int
    """Responses scored against the prompt: the chosen answer and K negatives."""
    response: int
    """Tokens of the longest response."""


@dataclass(frozen=True)
class RunShape:
    """How the run is set up."""

    precision: str = "fp32"
    """fp32 or bf16 (autocast: activations in bf16, weights as loaded)."""
    lora_rank: int = 32
    """0: full fine-tuning (vision side frozen)."""
    checkpointing: bool = False
    setup: Setup = "single"
    devices: int = 1
    batch: int = 1
    """Rows per device per micro-step."""


def parse_bytes(text: str) -> int:
    """``"80GiB"``, ``"80GB"``, ``"24 GiB"``, ``"512MiB"``, ``"1e9"`` -> bytes (GB is 10⁹, GiB is 2³⁰)."""
    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([KMGT]i?B?|B)?\s*", text)
    if not match:
        raise ValueError(f"not a memory size: {text!r} (write e.g. 80GiB, 80GB or 512MiB)")
    value, unit = float(match.group(1)), (match.group(2) or "B").upper().rstrip("B") or "B"
    scale = {"B": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "KI": 1 << 10, "MI": 1 << 20, "GI": 1 << 30,
             "TI": 1 << 40}[unit]
    return int(value * scale)


def human(n: float) -> str:
    """Bytes as GiB (or MiB below 1 GiB), one decimal."""
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / (1 << 20):.1f} MiB"


def trainable_params(model: ModelShape, run: RunShape) -> int:
    """LoRA: ``r × Σ(in + out)`` over the decoder's linears; full: the decoder and the LM head."""
    return run.lora_rank * model.lora_per_rank if run.lora_rank else model.language


def trainable_bytes(model: ModelShape, run: RunShape) -> int:
    """Bytes per trainable parameter: PEFT keeps LoRA adapters in fp32; full fine-tuning trains the loaded dtype."""
    return 4 if run.lora_rank else DTYPE_BYTES[model.dtype]


def sharded(total: int, run: RunShape) -> int:
    """What one device holds of ``total`` under FSDP2 / ZeRO-3 (1/N), or all of it (one device, DDP)."""
    return math.ceil(total / run.devices) if run.setup in ("fsdp2", "zero3") else total


def weight_bytes(model: ModelShape, run: RunShape) -> int:
    """The weights on one device; FSDP2 / ZeRO-3 also hold one whole layer while it computes."""
    size = DTYPE_BYTES[model.dtype]
    own = sharded(model.params * size, run)
    if run.lora_rank:
        own += run.lora_rank * model.lora_per_rank * 4  # the fp32 adapter
    gathered = model.layer * size if run.setup in ("fsdp2", "zero3") and run.devices > 1 else 0
    return own + gathered


def gradient_bytes(model: ModelShape, run: RunShape) -> int:
    """One gradient per trainable parameter; DDP keeps a second copy in its all-reduce buckets."""
    grads = trainable_params(model, run) * trainable_bytes(model, run)
    if run.setup == "ddp" and run.devices > 1:
        return 2 * grads
    return sharded(grads, run)


def optimizer_bytes(model: ModelShape, run: RunShape) -> int:
    """AdamW's two moments per trainable parameter, in the parameter's dtype."""
    return sharded(2 * trainable_params(model, run) * trainable_bytes(model, run), run)


def activation_dtype_bytes(model: ModelShape, run: RunShape) -> int:
    """bf16 autocast computes in bf16; otherwise activations have the weights' dtype."""
    return 2 if run.precision == "bf16" else DTYPE_BYTES[model.dtype]


def per_token_layer_floats(text: TextShape, lora_rank: int) -> int:
    """Values autograd keeps per token and decoder layer (see :data:`FULL_PER_TOKEN` / :data:`LORA_PER_TOKEN`)."""
    c = LORA_PER_TOKEN if lora_rank else FULL_PER_TOKEN
    return (c["hidden"] * text.hidden + c["kv"] * text.kv_width + c["intermediate"] * text.intermediate
            + c["rank"] * lora_rank)


def continuation_kv_floats(text: TextShape, row: RowShape) -> int:
    """Per decoder layer: each response's attention keeps ``[prefix; response]`` keys and values, expanded to every
    query head (transformers repeats grouped keys when a mask is given), ``2 × (P + R) × H`` per response."""
    return row.responses * 2 * (row.prompt + row.response + 1) * text.hidden


def prefix_copy_floats(text: TextShape, row: RowShape) -> int:
    """Per decoder layer, while the forward runs: each response's copy of its prompt's keys and values."""
    return row.responses * 2 * row.prompt * text.kv_width


def forward_floats(text: TextShape, row: RowShape, lora_rank: int) -> int:
    """Once per forward: the final norm's input and output per token (2 H) and the continuations' attention mask.
    Under LoRA the embeddings need no gradient, so the first layer's norm, dropout and projection inputs keep
    nothing (5 H less)."""
    hidden = -3 if lora_rank else 2
    return hidden * row_tokens(row) * text.hidden + row.responses * (row.response + 1) * (row.prompt + row.response)


def row_tokens(row: RowShape) -> int:
    """Tokens one row puts through the decoder: the prompt once, then every response after its last token."""
    return row.prompt - 1 + row.responses * (row.response + 1)


def head_bytes(text: TextShape, row: RowShape, run: RunShape) -> int:
    """The tiled LM head (unprior/forward/logps.py): a frozen head keeps ``∂logp/∂h`` (fp32, one hidden vector per
    response token); a trainable one keeps the hidden states. Never a vocabulary-sized tensor per token."""
    tokens = row.responses * row.response
    return tokens * text.hidden * 4


def activation_bytes(model: ModelShape, row: RowShape, run: RunShape) -> int:
    """What one row keeps for backward at the end of its forward (the step's peak), in bytes."""
    text, size = model.text, activation_dtype_bytes(model, run)
    if run.checkpointing:  # each layer's input, the prompt's keys and values, one layer recomputed
        kept = text.layers * (row_tokens(row) * text.hidden + 2 * (row.prompt - 1) * text.kv_width)
        one_layer = row_tokens(row) * per_token_layer_floats(text, run.lora_rank) + continuation_kv_floats(text, row)
        return size * (kept + one_layer + forward_floats(text, row, run.lora_rank)) + head_bytes(text, row, run)
    per_layer = (row_tokens(row) * per_token_layer_floats(text, run.lora_rank) + continuation_kv_floats(text, row)
                 + prefix_copy_floats(text, row))
    return size * (text.layers * per_layer + forward_floats(text, row, run.lora_rank)) + head_bytes(text, row, run)


def vision_transient_bytes(model: ModelShape, row: RowShape, run: RunShape) -> int:
    """The frozen vision tower keeps nothing for backward; its largest moment is the one generation has
    (:func:`tower_floats`, measured) over every tower token of the row's tiles."""
    tokens = row.image * model.vision_tokens_per_image_token
    return activation_dtype_bytes(model, run) * tokens * tower_floats(model, model.vision_block or tokens)


def reference_cache_bytes(rows: int, responses_per_row: int) -> int:
    """On disk: logp_sum and logp_mean (float64) per response, plus a row index and count per response."""
    return rows * responses_per_row * 2 * 8 + rows * 16


HEAD_TILE_ELEMENTS = 1 << 24
"""Logits elements per tile of the LM head (unprior/forward/logps.py's ``HEAD_CHUNK_ELEMENTS``; a test keeps them
equal)."""


def head_transient_bytes(text: TextShape, row: RowShape, batch: int) -> int:
    """The LM head's working tiles at the end of the forward: fp32 logits and their log-softmax, ``rows × V`` each,
    rows = the batch's response tokens, at most one tile's worth."""
    rows = min(batch * row.responses * row.response, max(1, HEAD_TILE_ELEMENTS // text.vocab))
    return 2 * rows * text.vocab * 4


@dataclass(frozen=True)
class TrainPlan:
    """Bytes per device for one configuration; ``per_row`` grows with the batch.

    The step's peak is the larger of two moments: the end of the forward (every row's activations and the head's
    tiles; gradients are not allocated yet, the optimizer's ``zero_grad`` freed them) and the backward, where each
    layer's gradients appear as its activations are released (charged as all gradients with half the activations).
    """

    weights: int
    gradients: int
    optimizer: int
    per_row: int
    head: int
    vision: int
    batch: int

    @property
    def fixed(self) -> int:
        return self.weights + self.gradients + self.optimizer

    def peak_at(self, batch: int) -> int:
        activations = batch * self.per_row
        moment = max(activations + self.head, self.gradients + activations // 2, self.vision)
        return self.weights + self.optimizer + moment

    @property
    def peak(self) -> int:
        return self.peak_at(self.batch)

    def largest_batch(self, device_memory: int) -> int:
        """Most rows per device whose peak fits ``device_memory`` (0: not even one)."""
        base = self.weights + self.optimizer
        forward = largest_batch(device_memory, base + self.head, self.per_row)
        backward = largest_batch(device_memory, base + self.gradients, max(1, self.per_row // 2))
        fits = min(forward, backward)
        return fits if fits and self.peak_at(fits) <= device_memory else 0


def largest_batch(device_memory: int, fixed: int, per_row: int) -> int:
    """``floor((memory − fixed) / per_row)``, at least 0."""
    return max(0, (device_memory - fixed) // max(1, per_row))


def train_plan(model: ModelShape, row: RowShape, run: RunShape) -> TrainPlan:
    """Every term of one training step on one device."""
    return TrainPlan(weights=weight_bytes(model, run), gradients=gradient_bytes(model, run),
                     optimizer=optimizer_bytes(model, run), per_row=activation_bytes(model, row, run),
                     head=head_transient_bytes(model.text, row, run.batch),
                     vision=vision_transient_bytes(model, row, run), batch=run.batch)


def score_row_bytes(model: ModelShape, row: RowShape, run: RunShape) -> int:
    """Inference (``unprior score``, no gradients): the prompt's keys and values for every layer, each response's
    copy of them, and one layer's working set over the row's tokens."""
    text, size = model.text, activation_dtype_bytes(model, run)
    cache = text.layers * (2 * (row.prompt - 1) * text.kv_width + prefix_copy_floats(text, row))
    layer = row_tokens(row) * (2 * text.hidden + 2 * text.intermediate) + continuation_kv_floats(text, row)
    return size * (cache + layer) + row.responses * row.response * text.hidden * 4


# --- Reading the inputs: the model's shape on the meta device, the longest row through the model's processor ---


@dataclass
class PlanConfig:
    """``plan=true`` on ``unprior train`` / ``score`` / ``pairs``: print the memory plan instead of running."""

    device_memory: str = ""
    """Memory of one device (``80GiB``, ``80GB``, ``24GiB``); given, the plan also prints the largest batch that
    fits (``pairs``: the largest ``generator.max_batch_tokens``)."""
    devices: int = 1
    """Devices (processes) of the accelerate setup."""
    setup: Setup = "single"
    """single (one device), ddp (replicated, gradients all-reduced), fsdp2 or zero3 (weights, gradients and optimizer
    state sharded over ``devices``)."""
    rows: int = 512
    """Rows of the pairs file measured for the longest row (evenly spaced; all when the file has fewer); ``pairs``:
    samples of the shard planned, in whole parts (evenly spaced)."""

    def validate(self) -> None:
        check_range(self, "devices", 1, 1_000_000)
        check_range(self, "rows", 1, 100_000_000)
        check_choice(self, "setup", SETUPS)
        if self.device_memory:
            try:
                parse_bytes(self.device_memory)
            except ValueError as e:
                fail("device_memory", str(e))


def dtype_name(dtype: object) -> str:
    """``torch.bfloat16`` / ``"bfloat16"`` / None -> ``"bfloat16"`` (None: float32)."""
    return str(dtype or "float32").removeprefix("torch.")


def _vision_dims(config) -> dict[str, object]:
    """The vision side's :class:`ModelShape` fields of a VLM config (none for a text-only model)."""
    vision = getattr(config, "vision_config", None)
    if vision is None:
        return {}
    hidden = getattr(vision, "embed_dim", None) or vision.hidden_size  # Qwen2-VL: embed_dim is the tower width
    intermediate = getattr(vision, "intermediate_size", None) or int(hidden * getattr(vision, "mlp_ratio", 4))
    merge = getattr(vision, "spatial_merge_size", None) or getattr(config, "scale_factor", None) or 1
    size, patch = getattr(vision, "image_size", 0), getattr(vision, "patch_size", 0)
    heads = getattr(vision, "num_heads", None) or getattr(vision, "num_attention_heads", 0)
    return {"vision_hidden": hidden, "vision_intermediate": intermediate,
            "vision_tokens_per_image_token": int(merge) ** 2, "vision_heads": heads,
            "vision_block": (size // patch) ** 2 if size and patch else 0,
            "vision_eager": getattr(vision, "_attn_implementation", None) == "eager"}


def shape_of(model, config) -> ModelShape:
    """Counts and dimensions of a (meta-device) transformers VLM."""
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    language = {id(p): p.numel() for module in (decoder, head) for p in module.parameters()}
    modules = dict(model.named_modules())
    lora = sum(m.in_features + m.out_features for name in lora_targets(model)
               if isinstance(m := modules[name], nn.Linear))
    text = config.get_text_config()
    return ModelShape(
        text=TextShape(text.hidden_size, text.intermediate_size, text.num_hidden_layers, text.num_attention_heads,
                       getattr(text, "num_key_value_heads", None) or text.num_attention_heads, text.vocab_size),
        params=sum(p.numel() for p in model.parameters()),
        language=sum(language.values()),
        layer=sum(p.numel() for p in decoder.layers[0].parameters()),
        lora_per_rank=lora,
        dtype=dtype_name(getattr(config, "dtype", None)),
        **_vision_dims(config),  # type: ignore[arg-type]
    )


def meta_model(path: str, *, trust_remote_code: bool = False, text_ok: bool = False) -> tuple[object, object, bool]:
    """(model, config, is a VLM) for ``path``, built on the meta device from its config: no weight is read or
    allocated. ``text_ok``: like the hf backend's loader, a checkpoint that is not image-text-to-text is built as a
    causal LM (the error injector's LLM)."""
    require_model_dir(path)
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        try:
            return AutoModelForImageTextToText.from_config(config, trust_remote_code=trust_remote_code), config, True
        except ValueError:  # not an image-text-to-text architecture
            if not text_ok:
                raise
            return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code), config, False


def model_shape(path: str, *, trust_remote_code: bool = False, dtype: str | None = None) -> ModelShape:
    """The shape of the model in ``path`` from its config alone (:func:`meta_model`). ``dtype`` overrides the
    config's (``unprior score`` loads in its own dtype)."""
    model, config, _ = meta_model(path, trust_remote_code=trust_remote_code)
    shape = shape_of(model, config)
    return dataclasses.replace(shape, dtype=dtype) if dtype else shape


def _spaced(n: int, limit: int) -> list[int]:
    """``limit`` evenly spaced positions of ``range(n)`` (all of them when ``n <= limit``)."""
    if n <= limit:
        return list(range(n))
    return sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)}) if limit > 1 else [0]


def longest_row(path: str, model: str, *, max_length: int, kinds: tuple[str, ...] | None, rows: int = 512,
                image_root: str = "", trust_remote_code: bool = False) -> tuple[RowShape, int]:
    """The padded shape a batch of this pairs file reaches (each dimension's maximum over the measured rows), and
    the file's row count. ``kinds``: the responses are the chosen answer and the first negative of each kind (train);
    None: every negative (score)."""
    processor = load_processor(model, trust_remote_code=trust_remote_code)
    encoder = RowEncoder(processor, max_length)
    image_id = _image_token_id(processor)
    pairs = read_pairs(path, image_root=image_root or None)
    shapes = [_row_shape(encoder, pairs[i], i, image_id, kinds) for i in _spaced(len(pairs), rows)]
    shapes = [s for s in shapes if s is not None]
    if not shapes:
        raise ValueError(f"{path}: no usable row to plan from")
    return RowShape(*(max(getattr(s, f) for s in shapes) for f in ("prompt", "image", "responses", "response"))), \
        len(pairs)


def _image_token_id(processor) -> int:
    token = getattr(processor, "image_token", None) or "<image>"
    return int(processor.tokenizer.convert_tokens_to_ids(token))


def _row_shape(encoder, row, index: int, image_id: int, kinds: tuple[str, ...] | None) -> RowShape | None:
    encoded, _ = encoder.encode([(index, row)])
    if encoded is None:
        return None
    length = int(encoded.prompt_lens[0])
    ids = encoded.prompt["input_ids"][0, :length]
    responses = encoded.responses[0]
    if kinds is not None:  # the chosen answer and the first negative of each objective kind
        first = {}
        for j, negative in enumerate(row.negatives):
            if negative.kind in kinds:
                first.setdefault(negative.kind, j + 1)
        responses = [responses[0], *(responses[j] for j in first.values())]
    return RowShape(prompt=length, image=int((ids == image_id).sum()), responses=len(responses),
                    response=max(len(r) for r in responses))


def plan_lines(title: str, terms: list[tuple[str, int, str]], peak: int, fits: int | None,
               device_memory: int | None) -> list[str]:
    """The printed plan: one line per term, the peak, and the largest batch that fits ``device_memory``."""
    lines = [title, *(f"  {name:<24} {human(size):>11}   {note}" for name, size, note in terms),
             f"  {'peak per device':<24} {human(peak):>11}"]
    if device_memory and fits is not None:
        verdict = f"largest batch that fits {human(device_memory)}: {fits} row(s) per device"
        lines.append("  " + (verdict if fits else verdict + " (does not fit: try LoRA, bf16, checkpointing, "
                                                            "fsdp2/zero3 on more devices)"))
    return lines


def train_plan_lines(model: ModelShape, row: RowShape, run: RunShape, rows: int, device_memory: int | None
                     ) -> list[str]:
    plan = train_plan(model, row, run)
    mode = f"LoRA r={run.lora_rank}" if run.lora_rank else "full fine-tuning"
    trainable = trainable_params(model, run)
    terms = [
        ("weights", plan.weights, f"{model.params:,} parameters in {model.dtype}"
         + (f", sharded over {run.devices}" if run.setup in ("fsdp2", "zero3") else "")),
        ("gradients", plan.gradients, f"{trainable:,} trainable ({mode})"
         + (", + DDP buckets" if run.setup == "ddp" and run.devices > 1 else "")),
        ("optimizer (AdamW)", plan.optimizer, "2 states per trainable parameter"),
        ("activations", run.batch * plan.per_row, f"{human(plan.per_row)} per row × {run.batch}; "
         f"{'checkpointed, ' if run.checkpointing else ''}{run.precision}"),
        ("LM head tiles", plan.head, "fp32 logits tiles, end of the forward"),
        ("vision tower (transient)", plan.vision, "frozen; counted only if above the activations"),
        ("reference cache (disk)", reference_cache_bytes(rows, row.responses), f"{rows:,} rows"),
    ]
    title = (f"memory plan: train, {run.setup} on {run.devices} device(s); longest row: {row.prompt} prompt tokens "
             f"({row.image} image), {row.responses} responses of up to {row.response} tokens")
    fits = plan.largest_batch(device_memory) if device_memory else None
    return plan_lines(title, terms, plan.peak, fits, device_memory)


def score_plan_lines(model: ModelShape, row: RowShape, run: RunShape, rows: int, device_memory: int | None
                     ) -> list[str]:
    weights = sharded(model.params * DTYPE_BYTES[model.dtype], run)
    per_row = score_row_bytes(model, row, run)
    vision = vision_transient_bytes(model, row, run)
    terms = [
        ("weights", weights, f"{model.params:,} parameters in {model.dtype}"),
        ("prompt caches + layer", run.batch * per_row, f"{human(per_row)} per row × {run.batch}"),
        ("vision tower (transient)", vision, "counted only if above the rest"),
        ("reference cache (disk)", reference_cache_bytes(rows, row.responses), f"{rows:,} rows"),
    ]
    title = (f"memory plan: score, one device; longest row: {row.prompt} prompt tokens ({row.image} image), "
             f"{row.responses} responses of up to {row.response} tokens")
    fits = largest_batch(device_memory, weights, per_row) if device_memory else None
    return plan_lines(title, terms, weights + max(run.batch * per_row, vision), fits, device_memory)


# --- unprior pairs: the hf backend's generate calls (docs/pairs.md, "Memory plan for pairs") ---

CPU_PROCESS_BYTES = int(0.38 * GiB)
"""What a CPU process of ``unprior pairs`` holds besides its tensors (Python, torch, transformers, the tokenizer):
the RSS of a process holding SmolVLM-256M, 1.34 GiB, less its 0.96 GiB of weights (docs/pairs.md, "Where the memory
went")."""


@dataclass(frozen=True)
class Request:
    """One strategy's prompts of one part, with images or without (the hf backend batches the two apart)."""

    strategy: str
    role: str
    """generator or injector: whose model answers."""
    shapes: tuple[PromptShape, ...]
    pixels: tuple[int, ...]
    """Bytes of each prompt's image tensors (the processor's output, floats in the model's dtype)."""
    beams: int
    new_tokens: int
    weakened: bool = False
    """Image weakening on the pixel tensor: the batch's pixels are noised into a copy."""


@dataclass(frozen=True)
class CallShape:
    """One ``generate`` call of the hf backend."""

    strategy: str
    role: str
    rows: int
    beams: int
    prompt: int
    """The longest prompt (every row is padded to it), image tokens included."""
    new_tokens: int
    image: int
    """Image tokens of all rows."""
    pixels: int
    """Bytes of the call's image tensors: rows × the largest row's (padded, as Idefics3 pads tiles)."""
    weakened: bool = False

    @property
    def sequences(self) -> int:
        """Rows × beams: transformers expands the prompts before the prefill."""
        return self.rows * self.beams


def request_calls(request: Request, batch_size: int, budget: int, merge: int) -> list[CallShape]:
    """The calls the hf backend makes for ``request``: consecutive prompts, at most ``batch_size``, within ``budget``
    positions (0: none), grouped by :func:`unprior.models.generate.budget_batches` itself."""
    batches = budget_batches(request.shapes, batch_size=batch_size, max_batch_tokens=budget,
                             num_beams=request.beams, max_new_tokens=request.new_tokens, merge=merge)
    shapes, pixels = request.shapes, request.pixels
    return [CallShape(request.strategy, request.role, len(b), request.beams, max(shapes[i].prompt for i in b),
                      request.new_tokens, sum(shapes[i].image for i in b), len(b) * max(pixels[i] for i in b),
                      request.weakened) for b in batches]


def tower_floats(model: ModelShape, block: int) -> int:
    """Values per vision-tower token at the tower's largest moment, measured under sdpa (docs/pairs.md): a layer's
    input, its residual and normed copy, and the embeddings kept through the pass (4 H), beside the MLP's hidden layer
    before and after the activation (2 I). Eager attention also materialises its scores, twice while they are scaled
    (2 × heads × ``block`` per token, beside 6 H)."""
    hidden, mlp = model.vision_hidden, 4 * model.vision_hidden + 2 * model.vision_intermediate
    return max(mlp, 6 * hidden + 2 * model.vision_heads * block) if model.vision_eager else mlp


def tower_bytes(model: ModelShape, call: CallShape) -> int:
    """The vision tower's transient over every image of the call: image tokens × merge factor tower tokens."""
    tokens = call.image * model.vision_tokens_per_image_token
    block = model.vision_block or tokens // max(1, call.rows)
    return tokens * tower_floats(model, block) * DTYPE_BYTES[model.dtype]


def kv_cache_bytes(text: TextShape, sequences: int, length: int, size: int) -> int:
    """Keys and values of every decoder layer: sequences × length × layers × 2 × kv_heads × head_dim × bytes."""
    return sequences * length * text.layers * 2 * text.kv_width * size


def prefill_bytes(text: TextShape, sequences: int, prompt: int, size: int) -> int:
    """One decoder layer's working set over the prompts, measured (docs/pairs.md): its input, residual, normed copy
    and the embeddings (4 H) beside the MLP's gate, up and product (3 I), per token of every sequence."""
    return sequences * prompt * (4 * text.hidden + 3 * text.intermediate) * size


def logits_bytes(text: TextShape, sequences: int) -> int:
    """The last position's logits only (transformers computes no other): their fp32 copy, log-softmax and the beam
    scores, four ``sequences × V`` fp32 tensors at most."""
    return 4 * sequences * text.vocab * 4


def call_moments(model: ModelShape, call: CallShape) -> dict[str, int]:
    """Bytes alive at each moment of one call (its peak is the largest): the batch's image tensors live through the
    call; noising them holds a second copy, and the vision tower its own working copy (Idefics3 copies the tiles)."""
    size, text, seqs = DTYPE_BYTES[model.dtype], model.text, call.sequences
    logits = logits_bytes(text, seqs)
    return {
        "noising": 2 * call.pixels if call.weakened else 0,
        "vision tower": 2 * call.pixels + tower_bytes(model, call) if call.image else 0,
        "prefill": call.pixels + kv_cache_bytes(text, seqs, call.prompt, size)
        + prefill_bytes(text, seqs, call.prompt, size) + logits,
        "decoding": call.pixels + kv_cache_bytes(text, seqs, call.prompt + call.new_tokens, size) + logits,
    }


def call_peak(model: ModelShape, call: CallShape) -> int:
    return max(call_moments(model, call).values())


@dataclass(frozen=True)
class PairsInputs:
    """What the pairs plan is computed from: the models on the meta device, the planned parts' requests, batching."""

    models: dict[str, ModelShape]
    """By role (generator, injector): the models the hf backend loads in this process."""
    requests: tuple[Request, ...]
    batching: dict[str, tuple[int, int]]
    """By role: (``batch_size``, ``max_batch_tokens``)."""
    host: int
    """On a CPU: the process itself (:data:`CPU_PROCESS_BYTES`) and the largest part's decoded images; else 0."""
    device: str
    samples: int
    planned: int


def pairs_calls(inputs: PairsInputs, budget: int | None = None) -> list[CallShape]:
    """Every call of the planned parts; ``budget`` replaces the generator's ``max_batch_tokens``."""
    calls = []
    for request in inputs.requests:
        batch_size, tokens = inputs.batching[request.role]
        if budget is not None and request.role == "generator":
            tokens = budget
        calls += request_calls(request, batch_size, tokens, inputs.models[request.role].vision_tokens_per_image_token)
    return calls


def pairs_peak(inputs: PairsInputs, calls: list[CallShape]) -> tuple[int, CallShape | None]:
    """The process's peak: the weights, the host part, and the largest call; and that call."""
    fixed = inputs.host + sum(m.params * DTYPE_BYTES[m.dtype] for m in inputs.models.values())
    worst = max(calls, key=lambda c: call_peak(inputs.models[c.role], c), default=None)
    return fixed + (call_peak(inputs.models[worst.role], worst) if worst else 0), worst


def largest_budget(inputs: PairsInputs, memory: int) -> int | None:
    """The largest ``generator.max_batch_tokens`` whose peak fits ``memory``, by bisection (calls grow with the
    budget). 0: no budget is needed (``batch_size`` binds first); None: not even one row per call fits."""
    def fits(budget: int) -> bool:
        return pairs_peak(inputs, pairs_calls(inputs, budget))[0] <= memory

    generator = [r for r in inputs.requests if r.role == "generator"]
    if fits(0) or not generator:
        return 0 if fits(0) else None
    if not fits(1):
        return None
    merge = inputs.models["generator"].vision_tokens_per_image_token
    low, high = 1, max(batch_cost(r.shapes, num_beams=r.beams, max_new_tokens=r.new_tokens, merge=merge)
                       for r in generator)  # at ``high`` every request is one call: the same as no budget
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


class _Recorder:
    """A stand-in hf backend: records what a strategy asks it to generate and answers nothing."""

    name, pixel_noise = "hf", True

    def __init__(self) -> None:
        self.asked: list[tuple[list, object]] = []

    def info(self) -> dict[str, str]:
        return {}

    def generate(self, prompts, decoding, *, seed: int = 0, on_batch=None) -> list[str]:
        self.asked.append((list(prompts), decoding))
        return [""] * len(prompts)

    def close(self) -> None:
        pass


def _image_bytes(processor, size: tuple[int, int], float_bytes: int, cache: dict) -> int:
    """Bytes of the processor's image tensors for one image of ``size`` (floats in the model's dtype), from a blank
    image of that size: the output depends on the size alone (unprior.models.generate.row_shapes)."""
    if size not in cache:
        enc = processor(images=[Image.new("RGB", size)], text=[chat_text(processor, "", True)], return_tensors="pt")
        cache[size] = sum(v.numel() * (float_bytes if v.is_floating_point() else v.element_size())
                          for k, v in enc.items() if k not in ("input_ids", "attention_mask"))
    return cache[size]


def _requests(strategy: str, role: str, prompts: list, decoding, reader: tuple) -> list[Request]:
    """The :class:`Request` of ``prompts`` with images and the one without (``reader``: the role's processor, image
    token id, float bytes and size cache)."""
    processor, image_token_id, float_bytes, cache = reader
    out = []
    for group in ([p for p in prompts if p.image is not None], [p for p in prompts if p.image is None]):
        if group:
            pixels = [_image_bytes(processor, p.image.size, float_bytes, cache) if p.image else 0 for p in group]
            out.append(Request(strategy, role, tuple(row_shapes(processor, group, image_token_id)), tuple(pixels),
                               decoding.num_beams, decoding.budget, any(p.noise_step for p in group)))
    return out


def _part_requests(cfg, samples: list, images: list, readers: dict[str, tuple]) -> list[Request]:
    """What every planned strategy asks of an hf backend for one part, recorded by running the strategy itself."""
    recorders = {role: _Recorder() for role in readers}
    ctx = StrategyContext(generator=recorders.get("generator"), injector=recorders.get("injector"), seed=cfg.seed)
    out = []
    for name in cfg.strategies:
        role = NEEDS.get(name)
        if role in recorders:
            STRATEGIES[name].run(samples, images, getattr(cfg, name), ctx)
            out += [r for prompts, decoding in recorders[role].asked
                    for r in _requests(name, role, prompts, decoding, readers[role])]
            recorders[role].asked.clear()
    return out


def _reader(backend) -> tuple[ModelShape, tuple]:
    """The role's model shape in the dtype the hf backend loads, and what its prompts are measured with."""
    model, config, vlm = meta_model(backend.model, trust_remote_code=backend.trust_remote_code, text_ok=True)
    dtype = dtype_name(resolve_dtype(backend.dtype, resolve_device(backend.device)))
    load = load_processor if vlm else AutoTokenizer.from_pretrained
    processor = load(backend.model, trust_remote_code=backend.trust_remote_code)
    image_token_id = getattr(config, "image_token_id", None) or getattr(config, "image_token_index", None)
    return dataclasses.replace(shape_of(model, config), dtype=dtype), (processor, image_token_id, DTYPE_BYTES[dtype],
                                                                      {})


def pairs_inputs(cfg, rows: int) -> PairsInputs:
    """Read what :func:`pairs_plan_lines` needs for ``unprior pairs`` with config ``cfg``: the hf models on the meta
    device, and the requests of whole parts of this shard (evenly spaced, ``rows`` samples or more), from the
    source's rows through the same loader, strategies and processor as the run. Nothing is loaded or written."""
    roles = [role for role in ("generator", "injector") if getattr(cfg, role).backend == "hf"
             and any(NEEDS.get(s) == role for s in cfg.strategies)]
    models, readers = {}, {}
    for role in roles:
        models[role], readers[role] = _reader(getattr(cfg, role))
    samples, report = load_samples(cfg.source, cfg.load)
    refuse_empty(report)
    resolve_max_new_tokens(cfg, samples)
    mine = [s for s in samples if shard_of(s.id, cfg.num_shards) == cfg.shard_index]
    parts = [mine[i: i + cfg.part_size] for i in range(0, len(mine), cfg.part_size)]
    requests, decoded, planned = [], 0, 0
    for k in _spaced(len(parts), math.ceil(rows / cfg.part_size)):
        kept, images, _ = open_images(parts[k], [], cfg.load.max_pixels)
        decoded, planned = max(decoded, sum(3 * im.width * im.height for im in images if im)), planned + len(kept)
        requests += _part_requests(cfg, kept, images, readers)
    cpu = resolve_device(cfg.generator.device).type == "cpu"
    return PairsInputs(models, tuple(requests), {r: (getattr(cfg, r).batch_size, getattr(cfg, r).max_batch_tokens)
                                                 for r in roles}, CPU_PROCESS_BYTES + decoded if cpu else 0,
                       str(resolve_device(cfg.generator.device)), len(mine), planned)


def _call_note(call: CallShape) -> str:
    beams = f" × {call.beams} beams" if call.beams > 1 else ""
    image = f", {call.image:,} image tokens" if call.image else ", no image"
    return f"{call.rows} row(s){beams}, prompt {call.prompt:,} + {call.new_tokens} new tokens{image}"


def _strategy_terms(cfg, inputs: PairsInputs, calls: list[CallShape]) -> list[tuple[str, int, str]]:
    """One line per strategy: its largest call's peak above the weights, or why it needs no memory here."""
    terms = []
    for name in cfg.strategies:
        mine = [c for c in calls if c.strategy == name]
        role = NEEDS.get(name)
        if mine:
            worst = max(mine, key=lambda c: call_peak(inputs.models[c.role], c))
            terms.append((name, call_peak(inputs.models[worst.role], worst),
                          f"{len(mine)} call(s), the largest: {_call_note(worst)}"))
        elif role and role not in inputs.models:
            terms.append((name, 0, f"the {getattr(cfg, role).backend} backend: not in this process"))
        else:
            terms.append((name, 0, "generates nothing" if not role else "no prompts in the planned parts"))
    return terms


def _call_terms(model: ModelShape, call: CallShape) -> list[tuple[str, int, str]]:
    """The largest call, its parts, and which moment is its peak."""
    size, seqs = DTYPE_BYTES[model.dtype], call.sequences
    moments = call_moments(model, call)
    tokens = call.image * model.vision_tokens_per_image_token
    vision = [("  vision tower", tower_bytes(model, call), f"transient over {tokens:,} tower tokens"),
              ("  image tensors", call.pixels, "× 2 while noised and in the tower")] if call.image else []
    return [
        ("largest call", max(moments.values()), f"{call.strategy}, {_call_note(call)}; its peak: the "
                                                f"{max(moments, key=moments.__getitem__)}"),
        *vision,
        ("  KV cache", kv_cache_bytes(model.text, seqs, call.prompt + call.new_tokens, size),
         f"{seqs} sequence(s) × {call.prompt + call.new_tokens:,} tokens"),
        ("  prefill layer", prefill_bytes(model.text, seqs, call.prompt, size), "one decoder layer's working set"),
        ("  logits", logits_bytes(model.text, seqs), "the last position only"),
    ]


def pairs_plan_lines(cfg, inputs: PairsInputs, device_memory: int | None) -> list[str]:
    calls = pairs_calls(inputs)
    peak, worst = pairs_peak(inputs, calls)
    terms = [(f"weights ({role})", m.params * DTYPE_BYTES[m.dtype], f"{m.params:,} parameters in {m.dtype}")
             for role, m in inputs.models.items()]
    if inputs.host:
        terms.append(("process and images (CPU)", inputs.host, "Python, torch, tokenizer (docs/pairs.md) and a "
                                                               "part's decoded images"))
    terms += _strategy_terms(cfg, inputs, calls)
    if worst:
        terms += _call_terms(inputs.models[worst.role], worst)
    auto = ", no GPU here: generator.device=cuda plans one" if cfg.generator.device == "auto" and inputs.host else ""
    title = (f"memory plan: pairs, hf backend on {inputs.device} (generator.device={cfg.generator.device}{auto}); "
             f"{inputs.planned} of {inputs.samples} samples of shard {cfg.shard_index}/{cfg.num_shards}, "
             f"{len(calls)} generate call(s)")
    return [*plan_lines(title, terms, peak, None, None), *_budget_lines(cfg, inputs, peak, device_memory)]


def _budget_lines(cfg, inputs: PairsInputs, peak: int, memory: int | None) -> list[str]:
    if not memory:
        return []
    if "generator" not in inputs.models:
        return [f"  {'fits' if peak <= memory else 'does not fit'} {human(memory)}"]
    budget = largest_budget(inputs, memory)
    if budget is None:
        return [f"  does not fit {human(memory)}, not even one row per call (a smaller dtype, another device)"]
    if budget == 0:
        return [f"  fits {human(memory)} without a budget: generator.max_batch_tokens=0 ({cfg.generator.batch_size} "
                "rows per call, generator.batch_size)"]
    calls = [c for c in pairs_calls(inputs, budget) if c.role == "generator"]
    rows = max(c.rows for c in [c for c in calls if c.image] or calls)
    return [f"  largest generator.max_batch_tokens that fits {human(memory)}: {budget:,} (up to {rows} row(s) per "
            f"call{' with images' if any(c.image for c in calls) else ''}; now {cfg.generator.max_batch_tokens:,})"]


def run_plan(command: str, cfg, settings: PlanConfig, log=print) -> int:
    """Print the plan of ``unprior train`` / ``score`` / ``pairs`` with config ``cfg``; nothing is loaded or
    written."""
    memory = parse_bytes(settings.device_memory) if settings.device_memory else None
    if command == "train":
        model = model_shape(cfg.model)
        kinds = tuple(cfg.objective.kinds)
        row, rows = longest_row(resolve_pairs(cfg.pairs, log), cfg.model, max_length=cfg.max_length, kinds=kinds,
                                rows=settings.rows, image_root=cfg.image_root)
        precision = "bf16" if cfg.dtype == "bfloat16" else "fp32"
        run = RunShape(precision, cfg.lora.r if cfg.lora.enabled else 0, cfg.activation_checkpointing,
                       settings.setup, settings.devices, cfg.batch_size)
        lines = train_plan_lines(model, row, run, rows, memory)
    elif command == "pairs":
        lines = pairs_plan_lines(cfg, pairs_inputs(cfg, settings.rows), memory)
    else:
        model = model_shape(cfg.model, trust_remote_code=cfg.trust_remote_code, dtype=cfg.dtype)
        row, rows = longest_row(cfg.pairs, cfg.model, max_length=cfg.max_length, kinds=None, rows=settings.rows,
                                image_root=cfg.image_root, trust_remote_code=cfg.trust_remote_code)
        run = RunShape(precision="bf16" if cfg.dtype == "bfloat16" else "fp32", lora_rank=0, batch=cfg.batch_size)
        lines = score_plan_lines(model, row, run, rows, memory)
    log("\n".join(lines))
    return 0
