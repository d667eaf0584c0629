"""A tiny OpenAI-compatible chat server on 127.0.0.1 for judge tests: scripted failures, then canned answers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAI:
    """Serves ``POST /v1/chat/completions``.

    Args:
        reply: Maps the user message to the assistant's answer (a recorded or fabricated judge transcript).
        fail_with: HTTP statuses returned, in order, for the first requests (e.g. ``[500]`` to force one retry).
        echo_key: The failures' messages quote the request's ``Authorization`` header, as careless servers do.
    """

    def __init__(self, reply: Callable[[str], str], fail_with: list[int] | None = None,
                 echo_key: bool = False) -> None:
        self.reply = reply
        self.fail_with = list(fail_with or [])
        self.echo_key = echo_key
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                if not self.path.endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                elif fake.fail_with:
                    status = fake.fail_with.pop(0)
                    echo = f" (got {self.headers.get('Authorization')!r})" if fake.echo_key else ""
                    self._send(status, {"error": {"message": f"scripted failure {status}{echo}", "type": "test"}})
                else:
                    text = fake.reply(body["messages"][-1]["content"])
                    self._send(200, {
                        "id": f"chatcmpl-{len(fake.requests)}", "object": "chat.completion", "created": 0,
                        "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": text}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    })

        return Handler
