"""Generation for ``unprior eval run``: a :data:`~unprior.eval.registry.GenerateFn` from an ``EvalConfig``, over
the backends of :mod:`unprior.models.backends` (the ones ``unprior pairs`` uses).

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
from unprior.formats.pairs import ImageProblem, open_image
from unprior.io import InputError, read_json
from unprior.models.backends import Backend, Decoding


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
    import torch  # here and below: an eval whose answers are all cached loads no torch

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


class EvalGenerator:
    """``cfg.backend`` (:mod:`unprior.models.backends`, the backends ``unprior pairs`` uses) as a
    :data:`GenerateFn` with ``cfg``'s decoding bound; the model loads on the first call.

    ``hf`` loads with :func:`load_eval_model` (adapter merged); ``vllm`` serves the adapter as a LoRA request and
    has no beam search here.
    """

    def __init__(self, cfg: EvalConfig) -> None:
        if cfg.backend == "vllm" and cfg.num_beams > 1:
            raise BackendError("backend=vllm supports greedy and sampled decoding only; use backend=hf for "
                               "num_beams > 1")
        self.cfg = cfg
        self.backend: Backend | None = None

    @property
    def model(self) -> Any:
        """The loaded transformers model (hf), or None before the first call."""
        return getattr(self.backend, "model", None)

    def load(self) -> Backend:
        if self.backend is None:
            cfg = self.cfg
            model = base_model(cfg.model, cfg.adapter)
            if cfg.backend == "hf":
                from unprior.models.backends.hf import HFBackend

                net, processor = load_eval_model(model, cfg.adapter)
                self.backend = HFBackend(net, processor, batch_size=cfg.batch_size,
                                         max_batch_tokens=cfg.max_batch_tokens, name_or_path=model)
            else:
                from unprior.models.backends.vllm import VLLMBackend

                try:
                    self.backend = VLLMBackend(model, batch_size=cfg.batch_size, adapter=cfg.adapter,
                                               engine_args={"seed": cfg.seed})
                except ImportError:
                    raise BackendError("backend=vllm needs the vllm package (pip install vllm, on a CUDA machine); "
                                       "or use backend=hf") from None
        return self.backend

    def __call__(self, requests: list[Request]) -> list[str]:
        from unprior.models.generate import Prompt  # imports torch: only when there is something to generate

        backend, cfg = self.load(), self.cfg
        prompts = [Prompt(r.prompt, load_image(r.image)) for r in requests]
        decoding = Decoding(max_new_tokens=max(r.max_new_tokens for r in requests), do_sample=cfg.do_sample,
                            temperature=cfg.temperature, top_p=cfg.top_p, num_beams=cfg.num_beams)
        return backend.generate(prompts, decoding, seed=cfg.seed)


def make_generate_fn(cfg: EvalConfig) -> GenerateFn:
    """The ``cfg.backend`` generator with ``cfg``'s decoding bound; it loads the model on its first batch."""
    return EvalGenerator(cfg)


def model_info(adapter: str, backend: str) -> dict[str, Any]:
    """Facts about the model recorded in ``results.json`` (known without loading it)."""
    if not adapter:
        return {}
    return {"adapter_base": adapter_base(adapter), "adapter_merged": backend == "hf"}


def run_eval_command(cfg: EvalConfig) -> int:
    """``unprior eval run``: answer (resuming), score and write ``results.json`` in ``cfg.out``."""
    run_eval(cfg, make_generate_fn(cfg), model_info=model_info(cfg.adapter, cfg.backend))
    return 0
