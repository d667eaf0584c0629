"""Generation backends for ``unprior eval run``: a :data:`~unprior.eval.registry.GenerateFn` from an ``EvalConfig``.

- ``hf``: transformers, batched with left padding through :func:`unprior.models.generate.generate` (the path the
  world report and ``unprior pairs`` use). ``model`` is a base model or a full checkpoint; ``adapter`` is a LoRA
  adapter (PEFT) applied on top of it and merged into the weights, so generation runs at the base model's speed.
- ``vllm``: vLLM's offline ``LLM.generate``, with the adapter served as a ``LoRARequest``. vLLM is optional and
  imported only when this backend is used.

Decoding is bound from the config: greedy by default (``temperature: 0``), sampling with ``temperature`` /
``top_p`` / ``seed`` otherwise, beam search with ``num_beams`` (hf only). The model loads on the first batch, so a
run whose answers are all on disk (re-scoring) never loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from unprior.eval.config import EvalConfig
from unprior.eval.registry import GenerateFn, Request
from unprior.eval.runner import run_eval
from unprior.io import InputError, read_json
from unprior.pairs.schema import ImageProblem, open_image


class BackendError(RuntimeError):
    """A backend cannot run with these settings (missing package, missing model, unsupported decoding)."""


def adapter_base(adapter: str) -> str:
    """The base model named in a PEFT adapter's ``adapter_config.json``."""
    path = Path(adapter) / "adapter_config.json"
    if not path.is_file():
        raise BackendError(f"adapter {adapter}: no adapter_config.json (is it a PEFT LoRA adapter directory?)")
    base = read_json(path).get("base_model_name_or_path") or ""
    if not base:
        raise BackendError(f"{path} names no base model; set `model` to the base the adapter was trained on")
    return str(base)


def base_model(model: str, adapter: str = "") -> str:
    """The model to load: ``model``, or the adapter's own base model when only ``adapter`` is set."""
    if model:
        return model
    if adapter:
        return adapter_base(adapter)
    raise BackendError("set `model` (a base model or a full checkpoint) and optionally `adapter` (a LoRA adapter)")


def load_eval_model(model: str, adapter: str = "") -> tuple[Any, Any]:
    """``(model, processor)`` in eval mode; a LoRA ``adapter`` is applied with PEFT and merged into the weights.

    The model goes to the GPU when there is one (batches follow it there).

    Args:
        model: Base model or full checkpoint (local directory or cached hub name).
        adapter: Optional PEFT adapter directory trained on ``model``.
    """
    import torch

    from unprior.models.families import load_model

    net, processor = load_model(model)
    if adapter:
        from peft import PeftModel

        net = PeftModel.from_pretrained(net, adapter).merge_and_unload()
    if torch.cuda.is_available():
        net = net.to("cuda")
    return net.eval(), processor


def load_image(path: Path | None) -> Image.Image | None:
    """The item's image as RGB, size-checked before decoding (a bomb or a huge image stops the run naming it; the
    answers already written are kept)."""
    if path is None:
        return None
    try:
        return open_image(path)
    except ImageProblem as e:
        raise InputError(f"benchmark image {e.detail}; shrink it or drop its item from the benchmark data") from None


class HFGenerator:
    """``hf`` backend: one batched ``generate`` call per runner batch; the model loads on the first call."""

    def __init__(self, cfg: EvalConfig) -> None:
        self.cfg = cfg
        self.model: Any = None
        self.processor: Any = None

    def load(self) -> None:
        if self.model is None:
            cfg = self.cfg
            self.model, self.processor = load_eval_model(base_model(cfg.model, cfg.adapter), cfg.adapter)

    def __call__(self, requests: list[Request]) -> list[str]:
        from unprior.models.generate import Prompt, generate

        self.load()
        cfg = self.cfg
        prompts = [Prompt(r.prompt, load_image(r.image)) for r in requests]
        return generate(self.model, self.processor, prompts, batch_size=max(1, len(prompts)),
                        max_new_tokens=max(r.max_new_tokens for r in requests), do_sample=cfg.do_sample,
                        temperature=cfg.temperature, top_p=cfg.top_p, num_beams=cfg.num_beams, seed=cfg.seed)


class VLLMGenerator:
    """``vllm`` backend: offline ``vllm.LLM``; the adapter, if any, is served as a LoRA request (not merged)."""

    def __init__(self, cfg: EvalConfig) -> None:
        if cfg.num_beams > 1:
            raise BackendError("backend=vllm supports greedy and sampled decoding only; use backend=hf for "
                               "num_beams > 1")
        self.cfg = cfg
        self.llm: Any = None
        self.processor: Any = None
        self.lora: Any = None

    def load(self) -> None:
        if self.llm is not None:
            return
        try:
            import vllm
            from vllm.lora.request import LoRARequest
        except ImportError:
            raise BackendError("backend=vllm needs the vllm package (pip install vllm, on a CUDA machine); "
                               "or use backend=hf") from None
        from transformers import AutoProcessor

        model = base_model(self.cfg.model, self.cfg.adapter)
        self.processor = AutoProcessor.from_pretrained(model)
        lora: dict[str, Any] = {}
        if self.cfg.adapter:
            rank = int(read_json(Path(self.cfg.adapter) / "adapter_config.json").get("r", 16))
            lora = {"enable_lora": True, "max_lora_rank": max(rank, 8)}
            self.lora = LoRARequest("adapter", 1, str(self.cfg.adapter))
        self.llm = vllm.LLM(model=model, seed=self.cfg.seed, **lora)

    def __call__(self, requests: list[Request]) -> list[str]:
        from unprior.models.generate import chat_text

        self.load()
        import vllm

        cfg = self.cfg
        params = vllm.SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed,
                                     max_tokens=max(r.max_new_tokens for r in requests))
        inputs = []
        for r in requests:
            item: dict[str, Any] = {"prompt": chat_text(self.processor, r.prompt, r.image is not None)}
            if r.image is not None:
                item["multi_modal_data"] = {"image": load_image(r.image)}
            inputs.append(item)
        outputs = self.llm.generate(inputs, params, lora_request=self.lora, use_tqdm=False)
        return [o.outputs[0].text.strip() for o in outputs]


BACKENDS: dict[str, type] = {"hf": HFGenerator, "vllm": VLLMGenerator}


def make_generate_fn(cfg: EvalConfig) -> GenerateFn:
    """The ``cfg.backend`` generator with ``cfg``'s decoding bound; it loads the model on its first batch."""
    return BACKENDS[cfg.backend](cfg)


def model_info(adapter: str, backend: str) -> dict[str, Any]:
    """Facts about the model recorded in ``results.json`` (known without loading it)."""
    if not adapter:
        return {}
    return {"adapter_base": adapter_base(adapter), "adapter_merged": backend == "hf"}


def run_eval_command(cfg: EvalConfig) -> int:
    """``unprior eval run``: answer (resuming), score and write ``results.json`` in ``cfg.out``."""
    run_eval(cfg, make_generate_fn(cfg), model_info=model_info(cfg.adapter, cfg.backend))
    return 0
