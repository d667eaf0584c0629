"""An LLM judge behind any OpenAI-compatible chat endpoint, with a persistent cache and retries.

Every answer is appended to a JSONL cache keyed by ``sha256(judge model, prompt)`` as soon as it arrives, so a re-run
(or a run resumed after a kill) never asks again for a finished item and costs nothing. Transient failures
(timeouts, dropped connections, HTTP 408/409/429/5xx) are retried with exponential backoff; other HTTP errors stop
the run with the status and the server's message; a refused connection fails after two quick tries, naming the
URL (the same client and policy as the pairs injector: :mod:`unprior.models.backends.openai`). The API key
is read from the environment variable named in the config and is never logged or written, nor is any echo of it
in a server's message.

Used by MMHal-Bench; any benchmark that needs a judge can take a :class:`JudgeConfig` in its options.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from unprior.config import Renamed, check_range, fail
from unprior.eval.common import append_jsonl, read_resumable_jsonl

log = logging.getLogger(__name__)


@dataclass
class JudgeConfig:
    RENAMED: ClassVar[dict[str, Renamed]] = {"max_tokens": Renamed("max_new_tokens")}  # read until unprior 0.2

    base_url: str = "http://localhost:8000/v1"
    """OpenAI-compatible endpoint (an OpenAI-style /v1 URL: a hosted API, vLLM, llama.cpp server, ...)."""
    model: str = "gpt-4-1106-preview"
    """Judge model name sent to the endpoint (RLAIF-V's MMHal protocol uses gpt-4-1106-preview)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding the API key (unset: the placeholder "EMPTY", for local servers)."""
    timeout_s: float = 120.0
    """Per-request timeout in seconds."""
    max_retries: int = 6
    """Retries of a transient failure before giving up."""
    backoff_s: float = 2.0
    """First retry delay; it doubles on each retry, capped at 60 s."""
    temperature: float = 0.0
    """Judge sampling temperature (0 in the references)."""
    max_new_tokens: int = 1024
    """Maximum judge answer length in tokens (sent as the endpoint's ``max_tokens``)."""

    def validate(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            fail("base_url", f"expected an http(s) URL, got {self.base_url!r}")
        if not self.model:
            fail("model", "set the judge model name")
        check_range(self, "timeout_s", 0.001)
        check_range(self, "max_retries", 0)
        check_range(self, "backoff_s", 0)
        check_range(self, "temperature", 0)
        check_range(self, "max_new_tokens", 1)


class JudgeError(RuntimeError):
    """The judge endpoint refused a request (non-transient) or kept failing after all retries."""


def cache_key(model: str, prompt: str) -> str:
    return hashlib.sha256(json.dumps([model, prompt], ensure_ascii=False).encode()).hexdigest()


class Judge:
    """Ask a judge model, once per distinct (model, prompt), with retries.

    Args:
        cfg: Endpoint, model and retry settings.
        cache_path: JSONL cache (created if missing); rows ``{key, model, response_model, answer}``.
        client: An ``openai.OpenAI``-like client; built from ``cfg`` when None (tests pass their own or a server).
        sleep: Called with the backoff delay in seconds (tests pass a no-op).
    """

    def __init__(self, cfg: JudgeConfig, cache_path: str | Path, client: Any = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.cfg = cfg
        self.cache_path = Path(cache_path)
        self.cache = {row["key"]: row for row in read_resumable_jsonl(self.cache_path) if "key" in row}
        self._client = client
        self._sleep = sleep
        self.requests = 0
        """HTTP requests sent by this instance (retries included)."""

    @property
    def client(self) -> Any:
        if self._client is None:
            from unprior.models.backends.openai import openai_client  # torch: not when benchmarks are listed

            self._client = openai_client(self.cfg.base_url, self.cfg.api_key_env, self.cfg.timeout_s)
        return self._client

    def cached(self, prompt: str) -> dict[str, Any] | None:
        return self.cache.get(cache_key(self.cfg.model, prompt))

    def ask(self, prompt: str) -> str:
        """The judge's answer to ``prompt`` (a single user message), from the cache when it has one."""
        key = cache_key(self.cfg.model, prompt)
        if key in self.cache:
            return self.cache[key]["answer"]
        answer, response_model = self._call(prompt)
        if response_model and not response_model.startswith(self.cfg.model):
            log.warning("judge answered as model %r, asked for %r", response_model, self.cfg.model)
        row = {"key": key, "model": self.cfg.model, "response_model": response_model, "answer": answer}
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.cache_path, "a", encoding="utf-8") as f:
            append_jsonl(f, [row])
        self.cache[key] = row
        return answer

    def _call(self, prompt: str) -> tuple[str, str]:
        from unprior.models.backends.openai import call_with_retries  # one retry policy; torch, as above

        def request() -> tuple[str, str]:
            resp = self.client.chat.completions.create(
                model=self.cfg.model, messages=[{"role": "user", "content": prompt}],
                temperature=self.cfg.temperature, max_tokens=self.cfg.max_new_tokens)
            return resp.choices[0].message.content or "", resp.model or ""

        def count() -> None:
            self.requests += 1

        return call_with_retries(request, where=f"judge {self.cfg.base_url} ({self.cfg.model})",
                                 key_env=self.cfg.api_key_env, max_retries=self.cfg.max_retries,
                                 backoff_s=self.cfg.backoff_s, sleep=self._sleep, error=JudgeError, count=count)
