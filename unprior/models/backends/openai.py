"""The ``openai`` backend: any OpenAI-compatible chat endpoint (vLLM, SGLang, ``transformers serve``, OpenAI).

It is the default home of BPO's text-LLM error injector (docs/papers.md, BPO step 3): each prompt is one chat
request, ``concurrency`` of them in flight. Images, when a prompt has one, go as a base64 PNG ``image_url`` part, so
a multimodal server can also act as the generator (image weakening then noises the PIL image).

Resilience: the key is read from the environment variable ``api_key_env`` (never logged); each request has a
timeout; transient failures (timeouts, dropped connections, HTTP 408/409/429/5xx) are retried with exponential
backoff (``backoff_s``, doubling, capped at 60 s) up to ``max_retries`` times; any other HTTP error stops the run
with the status and the server's message (an auth error hints at the key variable). A refused connection (nothing
listens at ``base_url``) is not worth minutes of backoff: it is tried :data:`CONNECT_TRIES` times, half a second
apart, then the run stops with one line naming the URL, and the other requests in flight stop with it. Every
message from a server passes :func:`unprior.guards.redact` first, so a server that echoes the key never gets it
printed (docs/pairs.md, "Endpoints"). The eval judge (:mod:`unprior.eval.judge`) uses the same client
(:func:`openai_client`) and retry policy (:func:`call_with_retries`).
"""

from __future__ import annotations

import base64
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from unprior.guards import redact
from unprior.models.backends import BackendConfig, Decoding
from unprior.models.generate import Prompt, chat_messages

log = logging.getLogger(__name__)
RETRY_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
CONNECT_TRIES = 2
"""Tries of a request whose connection is refused before the endpoint is declared down."""
CONNECT_RETRY_S = 0.5
"""Pause between those tries (a server that is just starting gets one more chance)."""
T = TypeVar("T")


class BackendError(RuntimeError):
    """The endpoint refused a request, or kept failing after every retry."""


def image_part(image: Any) -> dict[str, Any]:
    """An OpenAI ``image_url`` content part holding the image as a base64 PNG data URL."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return {"type": "image_url", "image_url": {"url": url}}


def openai_client(base_url: str, api_key_env: str, timeout_s: float) -> Any:
    """An ``openai.OpenAI`` client with the key from ``$api_key_env`` ("EMPTY" when unset, for local servers) and
    no retries of its own (:func:`call_with_retries` does them)."""
    from openai import OpenAI  # imported here: only endpoint runs need the client

    return OpenAI(base_url=base_url, api_key=os.environ.get(api_key_env) or "EMPTY", timeout=timeout_s, max_retries=0)


def classify_error(error: Exception, secret: str | None = None) -> tuple[bool, str]:
    """(transient?, a short description) for an exception from the openai client, with ``secret`` redacted."""
    import openai  # an optional package (the openai extra)

    if isinstance(error, openai.APIStatusError):
        detail = str(getattr(error, "message", "")) or type(error).__name__
        return error.status_code in RETRY_STATUS, redact(f"HTTP {error.status_code}: {detail[:300]}", secret)
    if isinstance(error, openai.APIConnectionError):  # includes APITimeoutError
        return True, type(error).__name__
    return False, redact(f"{type(error).__name__}: {error}", secret)


def connection_refused(error: BaseException) -> bool:
    """Whether ``error`` (or an exception it was raised from) is a refused TCP connection."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError) or "connection refused" in str(current).lower():
            return True
        current = current.__cause__ or current.__context__
    return False


def call_with_retries(request: Callable[[], T], *, where: str, key_env: str, max_retries: int, backoff_s: float,
                      sleep: Callable[[float], None], error: type[Exception],
                      count: Callable[[], None] = lambda: None) -> T:
    """``request()``, retried as the module docstring says; failures raise ``error`` with one line naming ``where``.

    Args:
        request: One chat request.
        where: The endpoint as the messages name it (``http://host:8000/v1 (model)``).
        key_env: The variable holding the API key: its value is redacted from every message, and an auth error
            hints at it.
        max_retries: Retries of a transient failure.
        backoff_s: First retry delay (doubles, capped at 60 s).
        sleep: Backoff sleeper (tests pass a no-op).
        error: Exception class raised on failure.
        count: Called before each try (request counters).
    """
    delay, refused = backoff_s, 0
    for attempt in range(max_retries + 1):
        count()
        try:
            return request()
        except Exception as e:
            transient, what = classify_error(e, os.environ.get(key_env))
            if connection_refused(e):
                refused += 1
                if refused >= min(CONNECT_TRIES, max_retries + 1):
                    raise error(f"{where}: connection refused ({refused} tries): is the server running at this "
                                "base_url?") from None
                sleep(CONNECT_RETRY_S)
                continue
            if not transient:
                hint = f" (is ${key_env} set?)" if "HTTP 401" in what else ""
                raise error(f"{where}: {what}{hint}") from None
            if attempt == max_retries:
                raise error(f"{where}: still failing after {attempt + 1} tries: {what}") from None
            log.warning("%s: request failed (%s); retry %d/%d in %.1f s", where, what, attempt + 1, max_retries,
                        delay)
            sleep(delay)
            delay = min(delay * 2, 60.0)
    raise AssertionError("unreachable")


class OpenAIBackend:
    """Chat completions against an OpenAI-compatible endpoint.

    Args:
        base_url: The endpoint's /v1 URL.
        model: Model name the server serves.
        api_key_env: Environment variable holding the key ("EMPTY" when unset, for local servers).
        timeout_s: Per-request timeout.
        max_retries: Retries of a transient failure.
        backoff_s: First retry delay (doubles, capped at 60 s).
        concurrency: Requests in flight.
        client: An ``openai.OpenAI``-like client (built from the above when None).
        sleep: Backoff sleeper (tests pass a no-op).
    """

    name = "openai"
    pixel_noise = False

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 120.0,
                 max_retries: int = 6, backoff_s: float = 2.0, concurrency: int = 8, client: Any = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url, self.model = base_url, model
        self.api_key_env = api_key_env
        self.timeout_s, self.max_retries, self.backoff_s = timeout_s, max_retries, backoff_s
        self.concurrency = concurrency
        self._client = client
        self._sleep = sleep
        self._lock = threading.Lock()
        self.requests = 0
        """HTTP requests sent (retries included)."""
        self.served_model = ""
        """The model name the server reported in its last answer."""
        self._warned_beams = False
        self._down: str | None = None
        """Set when the endpoint refused connections: every later request fails at once with this message."""

    @classmethod
    def from_config(cls, cfg: BackendConfig) -> OpenAIBackend:
        return cls(cfg.base_url, cfg.model, api_key_env=cfg.api_key_env, timeout_s=cfg.timeout_s,
                   max_retries=cfg.max_retries, backoff_s=cfg.backoff_s, concurrency=cfg.concurrency)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = openai_client(self.base_url, self.api_key_env, self.timeout_s)
        return self._client

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "generator": self.model,
            "revision": self.served_model or "unknown",
            "endpoint": self.base_url,
        }

    def _request(self, p: Prompt, decoding: Decoding, seed: int) -> str:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": chat_messages(p.text, None if p.image is None else image_part(p.image), p.system),
            "max_tokens": decoding.budget,
            "temperature": decoding.temperature if decoding.do_sample else 0.0,
        }
        if decoding.do_sample:
            kwargs.update(top_p=decoding.top_p, seed=seed)
        if self._down is not None:
            raise BackendError(self._down)

        def request() -> str:
            resp = self.client.chat.completions.create(**kwargs)
            self.served_model = resp.model or self.served_model
            return (resp.choices[0].message.content or "").strip()

        def count() -> None:
            with self._lock:
                self.requests += 1

        try:
            return call_with_retries(request, where=f"{self.base_url} ({self.model})", key_env=self.api_key_env,
                                     max_retries=self.max_retries, backoff_s=self.backoff_s, sleep=self._sleep,
                                     error=BackendError, count=count)
        except BackendError as e:
            if "connection refused" in str(e):
                self._down = str(e)
            raise

    def generate(self, prompts: Sequence[Prompt], decoding: Decoding, *, seed: int = 0,
                 on_batch: Callable[[int], None] | None = None) -> list[str]:
        if decoding.num_beams > 1 and not self._warned_beams:
            log.warning("the openai backend has no beam search; num_beams=%d is ignored", decoding.num_beams)
            self._warned_beams = True
        if any(p.noise_step for p in prompts):
            raise ValueError("the openai backend cannot noise pixel tensors; use image-space noise")

        def one(p: Prompt) -> str:
            text = self._request(p, decoding, seed)
            if on_batch is not None:
                on_batch(1)
            return text

        if self.concurrency == 1 or len(prompts) <= 1:
            return [one(p) for p in prompts]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(one, prompts))

    def close(self) -> None:
        if self._client is not None and hasattr(self._client, "close"):
            self._client.close()
        self._client = None
