"""The ``vllm`` backend: vLLM's offline engine with ``multi_modal_data`` (optional: ``pip install vllm``, GPU).

Prompts are rendered with the model's own chat template (through its transformers processor or tokenizer, the same
text the ``hf`` backend builds) and passed as ``{"prompt": text, "multi_modal_data": {"image": PIL}}``, batched by
handing vLLM the whole list. Sampling and greedy decoding go through ``LLM.generate`` with
``SamplingParams``; beam search (NaPO's 3 beams) through ``LLM.beam_search``. A LoRA ``adapter`` (``unprior eval
run``) is served as a ``LoRARequest``, not merged.

vLLM preprocesses images itself, so noise cannot be added to the processor's pixel tensor: image weakening noises
the PIL image instead (``space: image``), which matches tensor-space noise up to clipping and resizing
(``unprior.perturb.diffusion_noise_image``).

The import is guarded: this module imports without vLLM, and :class:`VLLMBackend` raises an ImportError that says
what to install.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from unprior.io import read_json
from unprior.models.backends import BackendConfig, Decoding, model_revision
from unprior.models.families import load_processor
from unprior.models.generate import Prompt, chat_text


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise ImportError(
            "the vllm backend needs the vllm package (GPU machines): pip install vllm. "
            "Or use generator.backend=hf, or serve the model with `vllm serve` and use backend=openai."
        ) from e
    return vllm


class VLLMBackend:
    """Offline vLLM generation.

    Args:
        model: Local path or hub id.
        dtype: vLLM dtype string ("auto", "bfloat16", ...).
        trust_remote_code: Passed to vLLM and the processor.
        batch_size: Prompts handed to one ``LLM.generate`` call (vLLM schedules them itself; this bounds memory
            for images and the progress-bar granularity).
        engine_args: Extra ``vllm.LLM`` keyword arguments.
        adapter: A PEFT LoRA adapter directory trained on ``model``, applied to every request.
        llm: An already built engine (tests pass a stand-in).
        processor: What renders the chat template (default: loaded from ``model``).
    """

    name = "vllm"
    pixel_noise = False

    def __init__(self, model: str, *, dtype: str = "auto", trust_remote_code: bool = False, batch_size: int = 256,
                 engine_args: dict[str, Any] | None = None, adapter: str = "", llm: Any = None, processor: Any = None
                 ) -> None:
        self.vllm = import_vllm()
        self.model_name = model
        self.batch_size = batch_size
        args = dict(engine_args or {})  # e.g. limit_mm_per_prompt, max_model_len, tensor_parallel_size
        self.lora: dict[str, Any] = {}
        if adapter:
            from vllm.lora.request import LoRARequest

            rank = int(read_json(Path(adapter) / "adapter_config.json").get("r", 16))
            args.update(enable_lora=True, max_lora_rank=max(rank, 8))
            self.lora = {"lora_request": LoRARequest("adapter", 1, str(adapter))}
        if llm is None:
            llm = self.vllm.LLM(model=model, dtype=dtype, trust_remote_code=trust_remote_code, **args)
        self.llm = llm
        if processor is None:
            processor = _template_processor(model, trust_remote_code)
        self.processor = processor

    @classmethod
    def from_config(cls, cfg: BackendConfig) -> VLLMBackend:
        return cls(cfg.model, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code, batch_size=cfg.batch_size,
                   engine_args=cfg.engine_args)

    def info(self) -> dict[str, Any]:
        return {"backend": self.name, "generator": self.model_name, "revision": model_revision(self.model_name)}

    def _inputs(self, p: Prompt) -> dict[str, Any]:
        if p.noise_step:
            raise ValueError("the vllm backend cannot noise pixel tensors; use image-space noise")
        item: dict[str, Any] = {"prompt": chat_text(self.processor, p.text, p.image is not None, p.system)}
        if p.image is not None:
            item["multi_modal_data"] = {"image": p.image}
        return item

    def _beam_texts(self, inputs: list[dict[str, Any]], decoding: Decoding) -> list[str]:
        from vllm.sampling_params import BeamSearchParams

        params = BeamSearchParams(beam_width=decoding.num_beams, max_tokens=decoding.budget)
        tokenizer = self.llm.get_tokenizer()
        texts = []
        for out in self.llm.beam_search(inputs, params):
            best = out.sequences[0]
            # ``tokens`` include the prompt; one logprob entry is appended per generated token.
            generated = best.tokens[len(best.tokens) - len(best.logprobs) :]
            texts.append(tokenizer.decode(generated, skip_special_tokens=True))
        return texts

    def generate(self, prompts: Sequence[Prompt], decoding: Decoding, *, seed: int = 0,
                 on_batch: Callable[[int], None] | None = None) -> list[str]:
        out: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            inputs = [self._inputs(p) for p in prompts[start : start + self.batch_size]]
            if decoding.num_beams > 1 and not decoding.do_sample:
                texts = self._beam_texts(inputs, decoding)
            else:
                params = self.vllm.SamplingParams(n=1, max_tokens=decoding.budget,
                                                  temperature=decoding.temperature if decoding.do_sample else 0.0,
                                                  top_p=decoding.top_p if decoding.do_sample else 1.0,
                                                  top_k=(decoding.top_k or -1) if decoding.do_sample else -1, seed=seed
                                                  )
                results = self.llm.generate(inputs, params, use_tqdm=False, **self.lora)
                texts = [r.outputs[0].text for r in results]
            out += [t.strip() for t in texts]
            if on_batch is not None:
                on_batch(len(inputs))
        return out

    def close(self) -> None:
        self.llm = None


def _template_processor(model: str, trust_remote_code: bool) -> Any:
    """The processor (VLMs) or tokenizer (text LLMs) whose chat template renders the prompts."""
    try:
        return load_processor(model, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError, AttributeError):
        return AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
