"""Generation backends behind one interface: hf, vllm (import-guarded, checked with a stand-in), openai."""

from __future__ import annotations

import socket
import sys
import time
import types
from pathlib import Path
from types import SimpleNamespace

import httpx2 as httpx
import openai
import pytest
from PIL import Image

from unprior.models.backends import Backend, BackendConfig, Decoding, make_backend, model_revision
from unprior.models.backends.openai import BackendError, OpenAIBackend
from unprior.models.generate import Prompt

GREEDY = Decoding(max_new_tokens=4)


def test_hf_backend_from_config(tiny_model: Path) -> None:
    backend = make_backend(BackendConfig(backend="hf", model=str(tiny_model), batch_size=2))
    assert isinstance(backend, Backend) and backend.pixel_noise
    image = Image.new("RGB", (32, 32), (200, 30, 30))
    seen: list[int] = []
    prompts = [Prompt("What color?", image), Prompt(""), Prompt("Hi", image)]
    out = backend.generate(prompts, GREEDY, on_batch=seen.append)
    assert len(out) == 3 and sum(seen) == 3
    info = backend.info()
    assert info["backend"] == "hf" and info["generator"] == str(tiny_model)
    assert info["revision"].startswith("local-") and info["revision"] == model_revision(str(tiny_model))


def test_model_revision_changes_with_the_weights(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"a" * 100)
    first = model_revision(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"b" * 100)
    assert model_revision(str(tmp_path)) != first
    assert model_revision("org/not-a-local-dir") == "unknown"


# ------------------------------------------------------------------------------------------------------ vllm


def test_vllm_backend_is_import_guarded(monkeypatch) -> None:
    from unprior.models.backends.vllm import VLLMBackend

    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match="pip install vllm"):
        VLLMBackend("some/model")


def _fake_vllm(calls: list) -> types.ModuleType:
    """A stand-in for the vllm package with the calls the backend makes (no GPU, no vLLM here)."""
    vllm = types.ModuleType("vllm")
    sampling = types.ModuleType("vllm.sampling_params")

    class SamplingParams(SimpleNamespace):
        pass

    class BeamSearchParams(SimpleNamespace):
        pass

    class LLM:
        def get_tokenizer(self):
            return SimpleNamespace(decode=lambda ids, skip_special_tokens: "-".join(map(str, ids)))

        def generate(self, inputs, params, use_tqdm=False):
            calls.append(("generate", inputs, params))
            return [SimpleNamespace(outputs=[SimpleNamespace(text=f" answer {i} ")]) for i in range(len(inputs))]

        def beam_search(self, inputs, params):
            calls.append(("beam", inputs, params))
            seq = SimpleNamespace(tokens=[1, 2, 3, 40, 41], logprobs=[{}, {}])  # prompt 1 2 3, generated 40 41
            return [SimpleNamespace(sequences=[seq]) for _ in inputs]

    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    sampling.BeamSearchParams = BeamSearchParams
    return vllm, sampling


def test_vllm_backend_builds_multimodal_inputs(monkeypatch, tiny_model: Path) -> None:
    from unprior.models.backends.vllm import VLLMBackend
    from unprior.models.families import load_processor

    calls: list = []
    vllm, sampling = _fake_vllm(calls)
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)
    backend = VLLMBackend(str(tiny_model), llm=vllm.LLM(), processor=load_processor(tiny_model), batch_size=2)
    image = Image.new("RGB", (32, 32))
    prompts = [Prompt("What color?", image), Prompt("No image here"), Prompt("", image)]
    out = backend.generate(prompts, Decoding(max_new_tokens=7, do_sample=True, temperature=0.2), seed=5)
    assert out == ["answer 0", "answer 1", "answer 0"]
    (_, first, params), _ = calls
    assert first[0]["multi_modal_data"] == {"image": image} and first[0]["prompt"].count("<image>") == 1
    assert "multi_modal_data" not in first[1] and "<image>" not in first[1]["prompt"]
    assert (params.max_tokens, params.temperature, params.seed) == (7, 0.2, 5)
    calls.clear()
    assert backend.generate(prompts[:1], Decoding(num_beams=3)) == ["40-41"]  # only the generated tokens
    assert calls[0][0] == "beam" and calls[0][2].beam_width == 3
    with pytest.raises(ValueError, match="pixel tensors"):
        backend.generate([Prompt("x", image, noise_step=900)], GREEDY)


# ---------------------------------------------------------------------------------------------------- openai


def _fake_client(script: list) -> tuple[SimpleNamespace, list]:
    calls: list = []

    def create(**kw):
        calls.append(kw)
        item = script.pop(0)
        if isinstance(item, Exception):
            raise item
        return SimpleNamespace(model="served-model", choices=[SimpleNamespace(message=SimpleNamespace(content=item))])

    return SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=create))), calls


REQ = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")


def _status(cls, code: int) -> Exception:
    return cls(f"status {code}", response=httpx.Response(code, request=REQ), body=None)


def test_openai_retries_transient_failures_with_backoff() -> None:
    client, calls = _fake_client(
        [openai.APIConnectionError(request=REQ), _status(openai.InternalServerError, 503),
         _status(openai.RateLimitError, 429), "  Rewritten.  "]
    )  # fmt: skip
    sleeps: list[float] = []
    backend = OpenAIBackend("http://x/v1", "m", client=client, sleep=sleeps.append, backoff_s=1.0, concurrency=1)
    image = Image.new("RGB", (8, 8))
    assert backend.generate([Prompt("Fix this.", image, system="sys")], Decoding(do_sample=True, temperature=0.8)) == [
        "Rewritten."
    ]
    assert sleeps == [1.0, 2.0, 4.0] and backend.requests == 4
    sent = calls[-1]
    assert sent["messages"][0] == {"role": "system", "content": "sys"}
    parts = sent["messages"][1]["content"]
    assert parts[0]["image_url"]["url"].startswith("data:image/png;base64,") and parts[1]["text"] == "Fix this."
    assert sent["temperature"] == 0.8 and "seed" in sent
    assert backend.info()["revision"] == "served-model"


def test_openai_stops_on_client_errors_and_after_max_retries(monkeypatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-secret")
    client, _ = _fake_client([_status(openai.AuthenticationError, 401)])
    backend = OpenAIBackend("http://x/v1", "m", api_key_env="MY_KEY", client=client, sleep=lambda s: None)
    with pytest.raises(BackendError, match=r"HTTP 401.*\$MY_KEY") as err:
        backend.generate([Prompt("q")], GREEDY)
    assert "sk-secret" not in str(err.value)
    client, _ = _fake_client([_status(openai.InternalServerError, 500)] * 3)
    backend = OpenAIBackend("http://x/v1", "m", client=client, sleep=lambda s: None, max_retries=2)
    with pytest.raises(BackendError, match="still failing after 3 tries"):
        backend.generate([Prompt("q")], GREEDY)


def test_openai_request_timeout_is_retried_then_reported() -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        backend = OpenAIBackend(url, "m", timeout_s=0.3, max_retries=1, sleep=lambda s: None)
        start = time.perf_counter()
        with pytest.raises(BackendError, match="APITimeoutError"):
            backend.generate([Prompt("q")], GREEDY)
        assert backend.requests == 2 and time.perf_counter() - start < 5


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # closed when the block ends: nothing listens


def test_openai_connection_refused_fails_fast_naming_the_url() -> None:
    """The issue's case: 10 prompts against a closed port with the default retries waited 246 s."""
    url = _closed_port_url()
    backend = OpenAIBackend(url, "m", timeout_s=2)  # default max_retries=6, backoff_s=2, concurrency=8
    start = time.perf_counter()
    with pytest.raises(BackendError, match=rf"^{url} \(m\): connection refused \(2 tries\): is the server "):
        backend.generate([Prompt(f"q{i}") for i in range(10)], GREEDY)
    seconds = time.perf_counter() - start
    assert seconds < 5 and backend.requests <= 2 * 8, (seconds, backend.requests)
    with pytest.raises(BackendError, match="connection refused"):  # the endpoint is known to be down: no new tries
        backend.generate([Prompt("again")], GREEDY)


def test_openai_redacts_a_key_the_server_echoes(monkeypatch, caplog) -> None:
    from eval.fake_openai import FakeOpenAI

    key = "sk-0123456789abcdefghijSECRET"
    monkeypatch.setenv("INJECTOR_KEY", key)
    with FakeOpenAI(lambda p: "ok", fail_with=[503, 401], echo_key=True) as server:
        backend = OpenAIBackend(server.base_url, "m", api_key_env="INJECTOR_KEY", sleep=lambda s: None)
        with pytest.raises(BackendError, match=r"HTTP 401.*\[redacted\].*\$INJECTOR_KEY") as err:
            backend.generate([Prompt("q")], GREEDY)
    for text in (str(err.value), caplog.text):
        assert key not in text and key[:10] not in text and key[-8:] not in text


def test_openai_backend_against_transformers_serve(served_llm) -> None:
    url, model = served_llm
    backend = make_backend(BackendConfig(backend="openai", base_url=url, model=model, concurrency=2))
    seen: list[int] = []
    out = backend.generate([Prompt("Rewrite: a red apple."), Prompt("Say no.")], Decoding(max_new_tokens=5),
                           on_batch=seen.append)  # fmt: skip
    assert len(out) == 2 and all(isinstance(t, str) for t in out) and seen == [1, 1]
    assert backend.info()["revision"].startswith(model)  # the served model name, e.g. "<path>@main"


def test_hf_backend_runs_a_text_llm_for_the_injector(tmp_path: Path) -> None:
    from .tiny import build_tiny_text_llm

    model = build_tiny_text_llm(tmp_path / "llm")
    backend = make_backend(BackendConfig(backend="hf", model=str(model)))
    assert type(backend.model).__name__ == "LlamaForCausalLM"
    out = backend.generate([Prompt("Rewrite: a red apple.", system="Be brief."), Prompt("x")], GREEDY)
    assert len(out) == 2
