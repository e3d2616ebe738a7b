"""A local fake of the Telegram Bot API, enough for python-telegram-bot 22 to send messages.

Speaks ``POST /bot<TOKEN>/getMe`` and ``POST /bot<TOKEN>/sendMessage`` (JSON, form or
query-string parameters), answers like Telegram (``{"ok": true, "result": <Message>}``),
records every delivered message and can be told to fail the next calls. Like the real API it
rejects HTML that Telegram would refuse (unsupported tags, unbalanced tags, a bare ``<``, ``>``
or ``&``) and texts longer than 4096 characters, so escaping and truncation bugs show up.

In-process (tests)::

    with FakeTelegram() as tg:
        bot = telegram.Bot("123:abc", base_url=tg.base_url)   # http://127.0.0.1:<port>/bot
        ...
        assert tg.messages[0].text == "hi"
        tg.fail_next(2, status=500)

From another process (e.g. an end-to-end test with a real Airflow scheduler)::

    python -m tests.support.fake_telegram --port 0 --record /tmp/tg.jsonl --port-file /tmp/tg.port

prints ``fake-telegram listening on http://127.0.0.1:<port>/bot`` once ready, appends one JSON
line per delivered message to ``--record`` (keys: token, chat_id, text, parse_mode, message_id,
date) and stops on SIGTERM/SIGINT. Control endpoints for other processes: ``GET /_fake/messages``,
``POST /_fake/fail_next`` (JSON ``{"n": 1, "status": 500}``) and ``POST /_fake/reset``.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MAX_TEXT_LENGTH = 4096  # Telegram's limit, in UTF-16 code units of the parsed text
BOT_USER = {"id": 4242, "is_bot": True, "first_name": "FakeBot", "username": "fake_ta_lab2_bot"}
_ALLOWED_TAGS = frozenset(
    "b strong i em u ins s strike del a code pre span tg-spoiler tg-emoji blockquote".split()
)
_BOT_PATH = re.compile(r"^/bot(?P<token>[^/]+)/(?P<method>[A-Za-z]+)/?$")
_BARE_AMPERSAND = re.compile(r"&(?!(?:[A-Za-z]+|#\d+|#x[0-9A-Fa-f]+);)")


@dataclass(frozen=True)
class RecordedMessage:
    """One message the fake accepted."""

    token: str
    chat_id: str
    text: str
    parse_mode: str | None
    message_id: int
    date: int


class _HtmlChecker(HTMLParser):
    """Telegram-style HTML check: allowed tags only, balanced, no bare ``<``/``>``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []
        self.text_parts: list[str] = []
        self.error: str | None = None

    def _fail(self, message: str) -> None:
        self.error = self.error or message

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _ALLOWED_TAGS:
            self._fail(f'Unsupported start tag "{tag}"')
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self._fail(f'Unmatched end tag "{tag}"')
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if "<" in data or ">" in data:
            self._fail("Unexpected bare '<' or '>'")
        self.text_parts.append(data)

    def handle_entityref(self, name: str) -> None:
        self.text_parts.append("x")

    def handle_charref(self, name: str) -> None:
        self.text_parts.append("x")


def check_html(text: str) -> str | None:
    """The error Telegram would give for ``text`` with ``parse_mode=HTML``, or None if valid."""
    if _BARE_AMPERSAND.search(text):
        return "Can't parse entities: bare '&' (not part of an entity)"
    checker = _HtmlChecker()
    checker.feed(text)
    checker.close()
    if checker.rawdata:  # an unterminated '<...' left in the buffer
        return "Can't parse entities: unterminated tag"
    if checker.error is None and checker.stack:
        checker.error = f'Unclosed start tag "{checker.stack[-1]}"'
    if checker.error:
        return f"Can't parse entities: {checker.error}"
    if utf16_len("".join(checker.text_parts)) > MAX_TEXT_LENGTH:
        return "message is too long"
    return None


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's limits."""
    return len(text.encode("utf-16-le")) // 2


class FakeTelegram:
    """The fake server: a ``ThreadingHTTPServer`` on 127.0.0.1 run in a daemon thread."""

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        token: str | None = None,
        record_path: str | Path | None = None,
    ) -> None:
        """``port=0`` picks a free port; ``token`` (optional) makes other tokens get 401."""
        self.host = host
        self.requested_port = port
        self.token = token
        self.record_path = Path(record_path) if record_path else None
        self._lock = threading.Condition()
        self._messages: list[RecordedMessage] = []
        self._calls: list[tuple[str, int]] = []
        self._fail_remaining = 0
        self._fail_status = 500
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def bind(self) -> ThreadingHTTPServer:
        """Bind the listening socket (idempotent); serving starts with start()/serve_forever()."""
        if self._server is None:
            self._server = ThreadingHTTPServer((self.host, self.requested_port), _make_handler(self))
            self._server.daemon_threads = True
        return self._server

    def start(self) -> FakeTelegram:
        """Bind and serve in a background thread; returns self."""
        if self._thread is not None:
            return self
        server = self.bind()
        self._thread = threading.Thread(
            target=server.serve_forever, name="fake-telegram", kwargs={"poll_interval": 0.05}
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._server is None:
            return
        if self._thread is not None:  # shutdown() would block forever if nothing is serving
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
        self._server = None
        self._thread = None

    def serve_forever(self) -> None:
        """Serve in the calling thread until shutdown() is called from another thread (the CLI)."""
        server = self.bind()
        try:
            server.serve_forever(poll_interval=0.1)
        finally:
            server.server_close()
            self._server = None

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- addresses ------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("fake Telegram server is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """For ``telegram.Bot(token, base_url=...)``: ``http://127.0.0.1:<port>/bot``."""
        return f"{self.url}/bot"

    # -- inspection and control -----------------------------------------------------------
    @property
    def messages(self) -> list[RecordedMessage]:
        """A copy of the delivered messages, oldest first."""
        with self._lock:
            return list(self._messages)

    @property
    def calls(self) -> list[tuple[str, int]]:
        """Every Bot API call received, as ``(method, http_status)``, failures included."""
        with self._lock:
            return list(self._calls)

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next ``n`` Bot API calls with ``status`` and ``{"ok": false, ...}``."""
        with self._lock:
            self._fail_remaining = n
            self._fail_status = status

    def reset(self) -> None:
        """Forget messages, calls and pending failures."""
        with self._lock:
            self._messages.clear()
            self._calls.clear()
            self._fail_remaining = 0

    def wait_for_messages(self, count: int = 1, timeout: float = 5.0) -> list[RecordedMessage]:
        """Block until at least ``count`` messages arrived (or ``timeout``); return them all."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._lock.wait(remaining)
            return list(self._messages)

    # -- request handling (called from handler threads) -----------------------------------
    def handle_bot_call(self, token: str, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The (status, JSON body) answer for one Bot API call."""
        with self._lock:
            status, body = self._answer(token, method, params)
            self._calls.append((method, status))
            return status, body

    def _answer(self, token: str, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self._fail_remaining > 0:
            self._fail_remaining -= 1
            return self._fail_status, _error(self._fail_status, "Internal Server Error (injected)")
        if self.token is not None and token != self.token:
            return 401, _error(401, "Unauthorized")
        if method == "getMe":
            return 200, {"ok": True, "result": dict(BOT_USER)}
        if method != "sendMessage":
            return 404, _error(404, "Not Found")
        chat_id, text = str(params.get("chat_id") or ""), str(params.get("text") or "")
        if not chat_id:
            return 400, _error(400, "Bad Request: chat not found")
        if not text:
            return 400, _error(400, "Bad Request: message text is empty")
        parse_mode = params.get("parse_mode")
        problem = check_html(text) if str(parse_mode).upper() == "HTML" else None
        if problem is None and parse_mode is None and utf16_len(text) > MAX_TEXT_LENGTH:
            problem = "message is too long"
        if problem:
            return 400, _error(400, f"Bad Request: {problem}")
        message = RecordedMessage(
            token=token,
            chat_id=chat_id,
            text=text,
            parse_mode=str(parse_mode) if parse_mode is not None else None,
            message_id=len(self._messages) + 1,
            date=int(time.time()),
        )
        self._messages.append(message)
        self._record(message)
        self._lock.notify_all()
        return 200, {"ok": True, "result": _message_dict(message)}

    def _record(self, message: RecordedMessage) -> None:
        if self.record_path is None:
            return
        with self.record_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(message)) + "\n")
            fh.flush()


def _error(code: int, description: str) -> dict[str, Any]:
    return {"ok": False, "error_code": code, "description": description}


def _message_dict(message: RecordedMessage) -> dict[str, Any]:
    """A Message as Telegram returns it (what ``telegram.Message.de_json`` needs)."""
    try:
        chat: dict[str, Any] = {"id": int(message.chat_id), "type": "private"}
    except ValueError:  # "@channel" style ids
        chat = {"id": -1001000000000, "type": "channel", "username": message.chat_id.lstrip("@")}
    if chat["id"] < 0:
        chat["type"] = "supergroup" if chat["type"] == "private" else chat["type"]
        chat.setdefault("title", "fake chat")
    return {
        "message_id": message.message_id,
        "date": message.date,
        "chat": chat,
        "from": dict(BOT_USER),
        "text": message.text,
    }


def _parse_params(handler: BaseHTTPRequestHandler, query: str) -> dict[str, Any]:
    """Query-string, JSON and form-encoded parameters merged (body wins)."""
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    length = int(handler.headers.get("Content-Length") or 0)
    raw = handler.rfile.read(length) if length else b""
    ctype = (handler.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if not raw:
        return params
    if ctype == "application/json":
        body = json.loads(raw.decode("utf-8"))
        if not isinstance(body, dict):
            raise ValueError("JSON body must be an object")
        params.update(body)
    elif ctype in ("application/x-www-form-urlencoded", ""):
        params.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    else:
        raise ValueError(f"unsupported Content-Type {ctype!r}")
    return params


def _make_handler(fake: FakeTelegram) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeTelegram/1.0"

        def log_message(self, format: str, *args: Any) -> None:
            """Silent: request lines contain the bot token."""

        def _reply(self, status: int, body: dict[str, Any] | list[Any]) -> None:
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _dispatch(self) -> None:
            parts = urlsplit(self.path)
            try:
                params = _parse_params(self, parts.query)
            except (ValueError, UnicodeDecodeError) as exc:
                self._reply(400, _error(400, f"Bad Request: {exc}"))
                return
            if parts.path.startswith("/_fake/"):
                self._control(parts.path, params)
                return
            match = _BOT_PATH.match(parts.path)
            if match is None:
                self._reply(404, _error(404, "Not Found"))
                return
            self._reply(*fake.handle_bot_call(match["token"], match["method"], params))

        def _control(self, path: str, params: dict[str, Any]) -> None:
            if path == "/_fake/messages":
                self._reply(200, [asdict(m) for m in fake.messages])
            elif path == "/_fake/fail_next":
                fake.fail_next(int(params.get("n", 1)), int(params.get("status", 500)))
                self._reply(200, {"ok": True})
            elif path == "/_fake/reset":
                fake.reset()
                self._reply(200, {"ok": True})
            else:
                self._reply(404, _error(404, "Not Found"))

        do_GET = _dispatch
        do_POST = _dispatch

    return Handler


def main(argv: list[str] | None = None) -> int:
    """CLI: serve until SIGTERM/SIGINT, appending each delivered message to ``--record``."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.fake_telegram", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = pick a free port (see --port-file)")
    parser.add_argument("--record", type=Path, help="append one JSON line per delivered message")
    parser.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    parser.add_argument("--token", help="accept only this bot token (others get 401)")
    parser.add_argument("--fail-first", type=int, default=0, help="answer the first N calls with 500")
    args = parser.parse_args(argv)

    fake = FakeTelegram(args.port, host=args.host, token=args.token, record_path=args.record)
    server = fake.bind()
    if args.fail_first:
        fake.fail_next(args.fail_first)
    if args.record:
        args.record.parent.mkdir(parents=True, exist_ok=True)
        args.record.touch()

    def _stop(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever() to return, so it must not run in this (the serving) thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if args.port_file:
        args.port_file.write_text(str(fake.port))
    print(f"fake-telegram listening on {fake.base_url}", flush=True)
    fake.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
