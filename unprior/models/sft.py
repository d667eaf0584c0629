"""A small, reusable supervised fine-tuning loop for chat VLMs: the loss covers answer tokens only.

Rows are encoded once (``encode_rows``) into token ids with the prompt, image and padding positions masked out of the
labels, and pixel tensors normalised like the model's image processor. ``sft`` then runs a plain AdamW loop with a
linear warm-up and cosine decay. Used to train the world's base model; simple enough to read top to bottom.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from unprior.models.generate import chat_text
from unprior.numerics import cosine_lr

IGNORE = -100


@dataclass
class Encoded:
    """Token ids per row plus, where a row has an image, the index of its image in ``pixels``."""

    ids: list[torch.Tensor]
    """(T_i,) int64 per row: chat-templated prompt (image tokens expanded) + answer + EOS."""
    prompt_lens: list[int]
    """Number of prompt tokens per row (masked out of the loss)."""
    image_index: list[int]
    """Row -> index into ``pixels`` (-1: text-only row)."""
    pixels: torch.Tensor | None
    """(N, 3, H, W) float32 normalised pixel values, or None when no row has an image."""

    def __len__(self) -> int:
        return len(self.ids)


def normalise_pixels(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 ``(x/255 - mean)/std``: the image processor's rescale+normalise
    for images already at the model's size (checked against the processor in the tests)."""
    x = torch.from_numpy(images).float().div_(255.0).permute(0, 3, 1, 2)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return ((x - m) / s).contiguous()


def encode_rows(processor, prompts: Sequence[str], answers: Sequence[str], image_index: Sequence[int],
                images: np.ndarray | None) -> Encoded:
    """Tokenise (prompt, answer) rows with the processor's chat template, expanding the image token.

    Args:
        processor: a LLaVA-style processor (``tokenizer``, ``image_token``, ``num_image_tokens``-compatible).
        prompts: user texts, without image tokens.
        answers: assistant texts.
        image_index: per row, an index into ``images`` or -1 for a text-only row.
        images: (N, H, W, 3) uint8 array of the rows' images, or None.
    """
    tok = processor.tokenizer
    image_token = processor.image_token
    n_image_tokens = _image_seq_len(processor)

    prompt_texts = [
        chat_text(tok, p, i >= 0).replace(image_token, image_token * n_image_tokens)
        for p, i in zip(prompts, image_index, strict=True)
    ]
    prompt_ids = tok(prompt_texts, add_special_tokens=False)["input_ids"]
    answer_ids = tok([a + tok.eos_token for a in answers], add_special_tokens=False)["input_ids"]
    ids = [torch.tensor(p + a, dtype=torch.long) for p, a in zip(prompt_ids, answer_ids, strict=True)]
    pixels = None
    if images is not None:
        ip = processor.image_processor
        pixels = normalise_pixels(images, ip.image_mean, ip.image_std)
    return Encoded(ids, [len(p) for p in prompt_ids], list(image_index), pixels)


def _image_seq_len(processor) -> int:
    ip = processor.image_processor
    side = ip.crop_size["height"] if getattr(ip, "crop_size", None) else ip.size["shortest_edge"]
    n = (side // processor.patch_size) ** 2 + processor.num_additional_image_tokens
    return n - (1 if processor.vision_feature_select_strategy == "default" else 0)


def collate(enc: Encoded, rows: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch with labels masked outside the answers; pixel values for rows with images."""
    seqs = [enc.ids[r] for r in rows]
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for b, (r, s) in enumerate(zip(rows, seqs, strict=True)):
        input_ids[b, : len(s)] = s
        attention[b, : len(s)] = 1
        labels[b, enc.prompt_lens[r] : len(s)] = s[enc.prompt_lens[r] :]
    batch = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
    img = [enc.image_index[r] for r in rows]
    if any(i >= 0 for i in img):
        if not all(i >= 0 for i in img):
            raise ValueError("a batch mixes rows with and without images; batch them separately")
        assert enc.pixels is not None
        batch["pixel_values"] = enc.pixels[img]
    return batch


def answer_nll(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token NLL over answer tokens (labels != IGNORE)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False).logits[:, :-1]
    target = batch["labels"][:, 1:]
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target.reshape(-1), ignore_index=IGNORE)


def sft(model: torch.nn.Module, enc: Encoded, *, steps: int, batch_size: int, lr: float, warmup: int, seed: int,
        pad_id: int, on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """Train ``model`` on random batches of ``enc`` for ``steps`` AdamW steps; return the loss per step."""
    if steps == 0:
        return []
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, steps, warmup, lr)
        rows = torch.randint(len(enc), (batch_size,), generator=gen).tolist()
        loss = answer_nll(model, collate(enc, rows, pad_id))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"SFT loss became {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
    model.eval()
    return losses
