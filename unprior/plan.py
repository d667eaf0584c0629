"""The memory plan: what a ``train`` or ``score`` run will need per device, before any weight is loaded.

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
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

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
    """The frozen vision tower keeps nothing for backward; its largest moment is one layer's MLP over every
    tower token of the row's tiles (input, hidden, output)."""
    tokens = row.image * model.vision_tokens_per_image_token
    return activation_dtype_bytes(model, run) * tokens * (2 * model.vision_hidden + 2 * model.vision_intermediate)


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
    return TrainPlan(
        weights=weight_bytes(model, run),
        gradients=gradient_bytes(model, run),
        optimizer=optimizer_bytes(model, run),
        per_row=activation_bytes(model, row, run),
        head=head_transient_bytes(model.text, row, run.batch),
        vision=vision_transient_bytes(model, row, run),
        batch=run.batch,
    )


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
    """``plan=true`` on ``unprior train`` / ``unprior score``: print the memory plan instead of running."""

    device_memory: str = ""
    """Memory of one device (``80GiB``, ``80GB``, ``24GiB``); given, the plan also prints the largest batch that
    fits."""
    devices: int = 1
    """Devices (processes) of the accelerate setup."""
    setup: Setup = "single"
    """single (one device), ddp (replicated, gradients all-reduced), fsdp2 or zero3 (weights, gradients and optimizer
    state sharded over ``devices``)."""
    rows: int = 512
    """Rows of the pairs file measured for the longest row (evenly spaced; all when the file has fewer)."""

    def validate(self) -> None:
        from unprior.config import check_choice, check_range

        check_range(self, "devices", 1, 1_000_000)
        check_range(self, "rows", 1, 100_000_000)
        check_choice(self, "setup", SETUPS)
        if self.device_memory:
            try:
                parse_bytes(self.device_memory)
            except ValueError as e:
                from unprior.config import fail

                fail("device_memory", str(e))


def dtype_name(dtype: object) -> str:
    """``torch.bfloat16`` / ``"bfloat16"`` / None -> ``"bfloat16"`` (None: float32)."""
    return str(dtype or "float32").removeprefix("torch.")


def _vision_dims(config) -> tuple[int, int, int]:
    """(hidden, intermediate, tower tokens per image token) of a VLM config's vision side."""
    vision = getattr(config, "vision_config", None)
    if vision is None:
        return 0, 0, 1
    hidden = getattr(vision, "embed_dim", None) or vision.hidden_size  # Qwen2-VL: embed_dim is the tower width
    intermediate = getattr(vision, "intermediate_size", None) or int(hidden * getattr(vision, "mlp_ratio", 4))
    merge = getattr(vision, "spatial_merge_size", None) or getattr(config, "scale_factor", None) or 1
    return hidden, intermediate, int(merge) ** 2


def shape_of(model, config) -> ModelShape:
    """Counts and dimensions of a (meta-device) transformers VLM."""
    from torch import nn

    from unprior.train.model import lora_targets

    decoder, head = model.get_decoder(), model.get_output_embeddings()
    language = {id(p): p.numel() for module in (decoder, head) for p in module.parameters()}
    modules = dict(model.named_modules())
    lora = sum(m.in_features + m.out_features for name in lora_targets(model)
               if isinstance(m := modules[name], nn.Linear))
    text = config.get_text_config()
    vision_hidden, vision_intermediate, merge = _vision_dims(config)
    return ModelShape(
        text=TextShape(text.hidden_size, text.intermediate_size, text.num_hidden_layers, text.num_attention_heads,
                       getattr(text, "num_key_value_heads", None) or text.num_attention_heads, text.vocab_size),
        params=sum(p.numel() for p in model.parameters()),
        language=sum(language.values()),
        layer=sum(p.numel() for p in decoder.layers[0].parameters()),
        lora_per_rank=lora,
        dtype=dtype_name(getattr(config, "dtype", None)),
        vision_tokens_per_image_token=merge,
        vision_hidden=vision_hidden,
        vision_intermediate=vision_intermediate,
    )


def model_shape(path: str, *, trust_remote_code: bool = False, dtype: str | None = None) -> ModelShape:
    """The shape of the model in ``path`` from its config alone: the model is built on the meta device (no weights
    are read or allocated). ``dtype`` overrides the config's (``unprior score`` loads in its own dtype)."""
    import dataclasses

    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from unprior.models.families import require_model_dir

    require_model_dir(path)
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config, trust_remote_code=trust_remote_code)
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
    from unprior.formats.pairs import read_pairs
    from unprior.forward.batch import RowEncoder
    from unprior.models.families import load_processor

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


# --- The report ---


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


def run_plan(command: str, cfg, settings: PlanConfig, log=print) -> int:
    """Print the plan of ``unprior train`` / ``unprior score`` with config ``cfg``; nothing is loaded or written."""
    memory = parse_bytes(settings.device_memory) if settings.device_memory else None
    if command == "train":
        from unprior.pairs.run import resolve_pairs

        model = model_shape(cfg.model)
        kinds = tuple(cfg.objective.kinds)
        row, rows = longest_row(resolve_pairs(cfg.pairs, log), cfg.model, max_length=cfg.max_length, kinds=kinds,
                                rows=settings.rows, image_root=cfg.image_root)
        precision = "bf16" if cfg.dtype == "bfloat16" else "fp32"
        run = RunShape(precision, cfg.lora.r if cfg.lora.enabled else 0, cfg.activation_checkpointing,
                       settings.setup, settings.devices, cfg.batch_size)
        lines = train_plan_lines(model, row, run, rows, memory)
    else:
        model = model_shape(cfg.model, trust_remote_code=cfg.trust_remote_code, dtype=cfg.dtype)
        row, rows = longest_row(cfg.pairs, cfg.model, max_length=cfg.max_length, kinds=None, rows=settings.rows,
                                image_root=cfg.image_root, trust_remote_code=cfg.trust_remote_code)
        run = RunShape(precision="bf16" if cfg.dtype == "bfloat16" else "fp32", lora_rank=0, batch=cfg.batch_size)
        lines = score_plan_lines(model, row, run, rows, memory)
    log("\n".join(lines))
    return 0
