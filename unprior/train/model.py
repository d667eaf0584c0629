"""The policy: the starting model with LoRA on its language model, or fully trainable with the vision side frozen."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from unprior.forward.prefix import enable_activation_checkpointing
from unprior.train.config import TrainConfig


def language_model_prefix(model: nn.Module) -> str:
    """Module path of the language decoder in a transformers VLM (``model.language_model``, ``model.text_model``)."""
    decoder = model.get_decoder()
    return next(name for name, module in model.named_modules() if module is decoder)


def lora_targets(model: nn.Module) -> list[str]:
    """Every ``nn.Linear`` of the language decoder: no vision tower, projector or LM head (BPO's LoRA placement)."""
    prefix = language_model_prefix(model) + "."
    linear = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    return [name for name in linear if name.startswith(prefix)]


def freeze_vision_side(model: nn.Module) -> int:
    """Freeze every parameter outside the language decoder and the LM head; return how many tensors were frozen."""
    prefix = language_model_prefix(model) + "."
    head = {id(p) for p in model.get_output_embeddings().parameters()}
    frozen = 0
    for name, param in model.named_parameters():
        if not name.startswith(prefix) and id(param) not in head:
            param.requires_grad_(False)
            frozen += 1
    return frozen


def build_policy(model: nn.Module, cfg: TrainConfig, log: Callable[[str], object]) -> nn.Module:
    """Wrap ``model`` for training as ``cfg`` says (LoRA or full, vision frozen, checkpointing); train mode."""
    torch.manual_seed(cfg.seed)  # LoRA's A matrices are drawn here
    if cfg.lora.enabled:
        lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                          target_modules=lora_targets(model), bias="none")
        model = get_peft_model(model, lora)
    elif not cfg.train_vision:
        freeze_vision_side(model)
    if cfg.activation_checkpointing:
        enable_activation_checkpointing(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log(f"policy: {'LoRA r=' + str(cfg.lora.r) if cfg.lora.enabled else 'full fine-tuning'}, "
        f"{trainable:,} of {total:,} parameters trainable")
    return model.train()


def optimizer_groups(params: Iterable[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict]:
    """AdamW groups: decay on matrices, none on biases and norm weights (1-D tensors)."""
    decay, plain = [], []
    for _, param in params:
        if param.requires_grad:
            (decay if param.ndim >= 2 else plain).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]
