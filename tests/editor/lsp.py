"""A minimal Language Server Protocol client over stdio, for the editor tests.

It starts the real yaml-language-server (``tools/editor``, installed by ``./dev setup``
with ``npm ci``), speaks JSON-RPC 2.0 with ``Content-Length`` framing, answers the few
requests the server sends to its client, and collects ``publishDiagnostics``.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "editor"
SERVER = TOOLS / "node_modules" / "yaml-language-server" / "bin" / "yaml-language-server"


class LspError(RuntimeError):
    """The server answered a request with an error, died, or did not answer in time."""


def server_command() -> list[str] | None:
    """How to start the pinned server, or None when node or the install is missing."""
    node = shutil.which("node")
    if node is None or not SERVER.is_file():
        return None
    return [node, str(SERVER), "--stdio"]


class Client:
    """One server process; requests are synchronous, notifications are queued."""

    def __init__(self, command: list[str], root: Path) -> None:
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.root = root
        self._next_id = 0
        self._answers: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.diagnostics: dict[str, list[dict[str, Any]]] = {}
        self._published = threading.Condition()
        self._versions: dict[str, int] = {}
        self.settings: dict[str, Any] = {}
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    # -- transport ---------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.proc.stdin is not None
        with self._lock:
            self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self.proc.stdin.flush()

    def _read_message(self) -> dict[str, Any] | None:
        stream = self.proc.stdout
        assert stream is not None
        length = 0
        while True:
            line = stream.readline()
            if not line:
                return None
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("ascii").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        message: dict[str, Any] = json.loads(stream.read(length))
        return message

    def _read_loop(self) -> None:
        while (message := self._read_message()) is not None:
            if "id" in message and "method" in message:  # a request from the server
                self._answer_server(message)
            elif "id" in message:
                answers = self._answers.get(message["id"])
                if answers is not None:
                    answers.put(message)
            elif message.get("method") == "textDocument/publishDiagnostics":
                params = message["params"]
                with self._published:
                    self.diagnostics[params["uri"]] = params["diagnostics"]
                    self._published.notify_all()

    def _answer_server(self, message: dict[str, Any]) -> None:
        result: Any = None
        if message["method"] == "workspace/configuration":
            # Since 1.x the server pulls its settings (as Neovim's lspconfig answers
            # from its ``settings`` table): one value per requested section.
            result = [self.settings.get(item.get("section", ""))
                      for item in message["params"]["items"]]
        self._send({"id": message["id"], "result": result})

    # -- requests and notifications ----------------------------------------------
    def request(self, method: str, params: Any, timeout: float = 30.0) -> Any:
        """Send a request and wait for its result (LspError on an error answer)."""
        with self._lock:
            self._next_id += 1
            ident = self._next_id
        answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self._answers[ident] = answers
        self._send({"id": ident, "method": method, "params": params})
        try:
            answer = answers.get(timeout=timeout)
        except queue.Empty:
            raise LspError(f"{method}: no answer in {timeout}s") from None
        finally:
            del self._answers[ident]
        if "error" in answer:
            raise LspError(f"{method}: {answer['error']}")
        return answer.get("result")

    def notify(self, method: str, params: Any) -> None:
        """Send a notification (no answer)."""
        self._send({"method": method, "params": params})

    def initialize(self, settings: dict[str, Any]) -> None:
        """The handshake; ``settings`` ({"yaml": {...}}) answer the server's pulls."""
        self.settings = settings
        uri = self.root.as_uri()
        self.request(
            "initialize",
            {
                "processId": None,
                "rootUri": uri,
                "workspaceFolders": [{"uri": uri, "name": self.root.name}],
                "capabilities": {
                    "textDocument": {
                        "hover": {"contentFormat": ["markdown", "plaintext"]},
                        "completion": {"completionItem": {"snippetSupport": False}},
                        "publishDiagnostics": {},
                    },
                    "workspace": {"configuration": True, "workspaceFolders": True,
                                  "didChangeConfiguration": {"dynamicRegistration": False}},
                },
            },
        )
        self.notify("initialized", {})
        self.notify("workspace/didChangeConfiguration", {"settings": settings})

    def diagnose(self, path: Path, text: str | None = None, timeout: float = 30.0
                 ) -> list[dict[str, Any]]:
        """Open (or change) a document and return the diagnostics the server publishes."""
        uri = path.as_uri()
        content = path.read_text() if text is None else text
        with self._published:
            self.diagnostics.pop(uri, None)
        version = self._versions.get(uri, 0) + 1
        self._versions[uri] = version
        if version == 1:
            self.notify("textDocument/didOpen", {"textDocument": {
                "uri": uri, "languageId": "yaml", "version": version, "text": content}})
        else:
            self.notify("textDocument/didChange", {
                "textDocument": {"uri": uri, "version": version},
                "contentChanges": [{"text": content}]})
        deadline = time.monotonic() + timeout
        with self._published:
            while uri not in self.diagnostics:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise LspError(f"no diagnostics for {path} in {timeout}s")
                self._published.wait(left)
            return self.diagnostics[uri]

    def close(self) -> None:
        """Shut the server down politely, then make sure it is gone."""
        try:
            self.request("shutdown", None, timeout=5)
            self.notify("exit", None)
            self.proc.wait(timeout=5)
        except (LspError, OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
