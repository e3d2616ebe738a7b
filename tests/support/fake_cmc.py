"""A local fake of CoinMarketCap's ``GET /v2/cryptocurrency/ohlcv/historical`` (real HTTP).

It answers like the documented API: key in header ``X-CMC_PRO_API_KEY`` (missing -> 401
error_code 1002, unknown -> 401 error_code 1001), ``id=1,1027,…``, daily candles for every
day in ``(time_start, time_end]`` (time_start exclusive, time_end inclusive, only the date
part used) up to the last day the fake "knows" (``latest``), as
``{"status": {...}, "data": {"<id>": {"id", "name", "symbol", "quotes": [{"time_open",
"time_close", "time_high", "time_low", "quote": {"USD": {"open", "high", "low", "close",
"volume", "market_cap", "timestamp"}}}]}}}``. Candle values are a deterministic function of
(id, day) around a per-asset level, so a test can recompute them (:meth:`FakeCmc.candle`).

Failure controls: ``fail_next(n, status, retry_after)`` (429 with ``Retry-After``, 5xx, 401),
``omit`` (ids left out of the answer: a partial response), ``malformed`` ((id, day) pairs
whose quote lacks its ``quote`` block). Every request is recorded (``requests``).

In-process::

    with FakeCmc(keys={"k"}, latest=date(2026, 3, 29)) as cmc:
        os.environ["CMC_API_BASE_URL"] = cmc.url
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

PATH = "/v2/cryptocurrency/ohlcv/historical"


@dataclass(frozen=True)
class Request:
    path: str
    params: dict[str, str]
    key: str | None
    status: int

    @property
    def ids(self) -> list[int]:
        return [int(x) for x in self.params.get("id", "").split(",") if x]


@dataclass
class FakeCmc:
    keys: set[str] = field(default_factory=lambda: {"test-key"})
    latest: date = date(2026, 3, 29)
    names: dict[int, tuple[str, str]] = field(default_factory=dict)  # id -> (name, symbol)
    levels: dict[int, float] = field(default_factory=dict)  # id -> price level (default 10 + id % 97)
    omit: set[int] = field(default_factory=set)
    malformed: set[tuple[int, date]] = field(default_factory=set)
    requests: list[Request] = field(default_factory=list)
    _failures: list[tuple[int, float | None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeCmc:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                         name="fake-cmc").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeCmc:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- controls -------------------------------------------------------------------------------
    def fail_next(self, n: int = 1, status: int = 500, retry_after: float | None = None) -> None:
        with self._lock:
            self._failures += [(status, retry_after)] * n

    def candle(self, asset: int, day: date) -> dict[str, Any]:
        """The quote the fake serves for (asset, day): deterministic, OHLC-consistent, within
        a few percent of the asset's level."""
        level = self.levels.get(asset, 10.0 + asset % 97)
        o = level * (1 + 0.005 * (day.toordinal() % 7 - 3))
        c = o * (1.01 if day.toordinal() % 2 else 0.99)
        t0 = datetime(day.year, day.month, day.day, tzinfo=UTC)
        iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"  # noqa: E731
        return {"time_open": iso(t0), "time_close": iso(t0 + timedelta(days=1, milliseconds=-1)),
                "time_high": iso(t0 + timedelta(hours=15)), "time_low": iso(t0 + timedelta(hours=4)),
                "quote": {"USD": {"open": o, "high": max(o, c) * 1.02, "low": min(o, c) * 0.98, "close": c,
                                  "volume": 1000.0 * asset + day.day, "market_cap": c * 1e6,
                                  "timestamp": iso(t0 + timedelta(days=1, milliseconds=-1))}}}

    # -- the API --------------------------------------------------------------------------------
    def answer(self, path: str, params: dict[str, str], key: str | None) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            status, retry_after = failure
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            return status, headers, _status(1008 if status == 429 else 500, "fake failure (fail_next)")
        if path != PATH:
            return 404, {}, _status(404, f"no such endpoint {path}")
        if not key:
            return 401, {}, _status(1002, "API key missing.")
        if key not in self.keys:
            return 401, {}, _status(1001, "This API Key is invalid.")
        try:
            ids = [int(x) for x in params["id"].split(",")]
            start = date.fromisoformat(params["time_start"][:10])
            end = date.fromisoformat(params["time_end"][:10])
        except (KeyError, ValueError):
            return 400, {}, _status(400, 'Invalid value for "id", "time_start" or "time_end"')
        if params.get("interval", "daily") != "daily" or params.get("time_period", "daily") != "daily":
            return 400, {}, _status(400, "only daily is faked")
        days = [start + timedelta(days=k) for k in range(1, (min(end, self.latest) - start).days + 1)]
        data: dict[str, Any] = {}
        for a in ids:
            if a in self.omit:
                continue
            name, symbol = self.names.get(a, (f"Coin {a}", f"C{a}"))
            quotes = [self.candle(a, d) for d in days]
            for q, d in zip(quotes, days, strict=True):
                if (a, d) in self.malformed:
                    del q["quote"]
            data[str(a)] = {"id": a, "name": name, "symbol": symbol, "is_active": 1, "quotes": quotes}
        return 200, {}, {"status": {"error_code": 0, "error_message": None, "credit_count": 1}, "data": data}


def _status(code: int, message: str) -> dict[str, Any]:
    return {"status": {"timestamp": datetime.now(UTC).isoformat(), "error_code": code, "error_message": message,
                       "elapsed": 0, "credit_count": 0}}


def _handler(fake: FakeCmc) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            params = dict(parse_qsl(url.query))
            key = self.headers.get("X-CMC_PRO_API_KEY")
            status, headers, body = fake.answer(url.path, params, key)
            with fake._lock:
                fake.requests.append(Request(url.path, params, key, status))
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

    return Handler
