"""Missing days from CoinMarketCap's ``/v2/cryptocurrency/ohlcv/historical`` (httpx).

Configuration: inside Airflow the connection ``cmc_api`` (API key in the password; the host,
with or without scheme, overrides the API root; extra ``{"base_url": ...}`` wins); outside
Airflow (or when the connection is not defined) env ``CMC_API_KEY`` and ``CMC_API_BASE_URL``
(default ``https://pro-api.coinmarketcap.com``; paths are appended). No key: no API step.

For every asset to fetch (the active assets with data, or the requested ids) the missing
days are those after its last source day up to the last day that closed before the run's
as-of (``as_of.date() - 1``). Assets with the same first missing day share requests of up
to :data:`BATCH` ids. HTTP 429 and 5xx (and connection errors) are retried with exponential
backoff, waiting ``Retry-After`` when the server sends it; 401/403 raise
:class:`ApiAuthError` at once; other errors, ids absent from the response and unparsable
quotes are reported while everything that came is loaded.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from ta_lab2.loader import LineProblem, ParsedFile, ProblemReport

if TYPE_CHECKING:
    import httpx

    from ta_lab2.ingest import IngestResult

log = logging.getLogger(__name__)
CONN_ID = "cmc_api"
DEFAULT_BASE_URL = "https://pro-api.coinmarketcap.com"
PATH = "/v2/cryptocurrency/ohlcv/historical"
BATCH = 100


class ApiError(RuntimeError):
    """The API failed for one request (after retries where they apply)."""


class ApiAuthError(ApiError):
    """401/403: the key is missing, wrong or not entitled; retrying cannot help."""


@dataclass(frozen=True)
class ApiConfig:
    base_url: str
    api_key: str = ""

    def __repr__(self) -> str:  # never log the key
        return f"ApiConfig(base_url={self.base_url!r})"


def _from_connection() -> ApiConfig | None:
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(CONN_ID)
    except Exception as exc:
        if type(exc).__name__ != "AirflowNotFoundException":
            raise
        return None
    base = (conn.extra_dejson or {}).get("base_url") or ""
    if not base and conn.host:
        scheme = "" if "://" in conn.host else ("http://" if conn.conn_type == "http" else "https://")
        base = f"{scheme}{conn.host}{f':{conn.port}' if conn.port else ''}"
    return ApiConfig((base or os.environ.get("CMC_API_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
                     conn.password or "")


def api_config(*, airflow: bool = False) -> ApiConfig | None:
    """The API settings, or None when no key is configured anywhere."""
    if airflow:
        cfg = _from_connection()
        if cfg is not None:
            return cfg
    key = os.environ.get("CMC_API_KEY")
    if not key:
        return None
    return ApiConfig((os.environ.get("CMC_API_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"), key)


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


def _error_message(resp: httpx.Response) -> str:
    try:
        status = resp.json().get("status") or {}
        return str(status.get("error_message") or resp.reason_phrase)
    except ValueError:
        return resp.text[:200] or resp.reason_phrase


class CmcClient:
    """One API root and key; :meth:`ohlcv` does the retries."""

    def __init__(self, cfg: ApiConfig, *, attempts: int = 5, backoff_s: float = 1.0, max_wait_s: float = 120.0,
                 timeout_s: float = 30.0, sleep: Callable[[float], None] = time.sleep) -> None:
        import httpx

        self.cfg, self.attempts, self.backoff_s, self.max_wait_s, self.sleep = cfg, attempts, backoff_s, max_wait_s, sleep
        self.http = httpx.Client(base_url=cfg.base_url, timeout=timeout_s,
                                 headers={"X-CMC_PRO_API_KEY": cfg.api_key, "Accept": "application/json"})

    def close(self) -> None:
        self.http.close()

    def ohlcv(self, ids: list[int], start: date, end: date) -> dict[str, Any]:
        """``data`` of one request for ``ids`` and the daily candles from ``start`` to ``end``."""
        import httpx

        params: dict[str, str | int] = {"id": ",".join(map(str, ids)), "time_start": start.isoformat(), "time_end": end.isoformat(),
                  "interval": "daily", "time_period": "daily", "count": (end - start).days + 1}
        for attempt in range(1, self.attempts + 1):
            try:
                resp = self.http.get(PATH, params=params)
            except httpx.TransportError as exc:
                why, wait = f"{type(exc).__name__}: {exc}", None
            else:
                if resp.status_code in (401, 403):
                    raise ApiAuthError(
                        f"CoinMarketCap API refused the key (HTTP {resp.status_code}: {_error_message(resp)}): "
                        f"set the password of Airflow connection {CONN_ID!r} or CMC_API_KEY")
                if resp.status_code == 200:
                    data = resp.json().get("data")
                    return data if isinstance(data, dict) else {}
                if resp.status_code != 429 and resp.status_code < 500:
                    raise ApiError(f"HTTP {resp.status_code} for ids {params['id']}: {_error_message(resp)}")
                why, wait = f"HTTP {resp.status_code}: {_error_message(resp)}", _retry_after(resp)
            if attempt == self.attempts:
                raise ApiError(f"ids {params['id']}: gave up after {attempt} attempts ({why})")
            delay = min(self.max_wait_s, wait if wait is not None else self.backoff_s * 2 ** (attempt - 1))
            log.warning("CoinMarketCap API: %s; retry %d/%d in %.1fs", why, attempt, self.attempts - 1, delay)
            self.sleep(delay)
        raise AssertionError("unreachable")


def _instant(value: Any) -> datetime:
    t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def quotes_to_rows(asset_id: int, name: str, quotes: list[Any], source: str, first: date,
                   last: date) -> ParsedFile:
    """Source rows for the quotes whose day is in ``[first, last]``; bad quotes are problems."""
    out = ParsedFile(source, "api")
    for n, q in enumerate(quotes, start=1):
        try:
            usd = q["quote"]["USD"]
            t_open = _instant(q["time_open"])
            if not first <= t_open.date() <= last:
                continue
            times = [t_open, _instant(q["time_close"]),
                     *(_instant(q[k]) if q.get(k) else None for k in ("time_high", "time_low"))]
            stamp = _instant(usd.get("timestamp") or q["time_close"])
            values = [None if usd.get(k) is None else float(usd[k])
                      for k in ("open", "high", "low", "close", "volume", "market_cap")]
        except (KeyError, TypeError, ValueError) as exc:
            out.problems.append(LineProblem(source, n, f"quote {n}: {type(exc).__name__}: {exc}",
                                            json.dumps(q, default=str)[:2000]))
            continue
        out.rows.append((asset_id, name, *times, stamp, *values, None, source))
        out.lines.append((n, json.dumps(q, default=str)[:2000]))
    return out


def plan(cursor: list[tuple[int, str, datetime | None]], as_of: datetime) -> dict[date, list[int]]:
    """first missing day -> ids, for the assets whose data ends before ``as_of``'s last closed day."""
    last_closed = as_of.astimezone(UTC).date() - timedelta(days=1)
    groups: dict[date, list[int]] = defaultdict(list)
    for asset, _name, last_ts in cursor:
        if last_ts is None:
            continue
        first = last_ts.astimezone(UTC).date() + timedelta(days=1)
        if first <= last_closed:
            groups[first].append(asset)
    return dict(groups)


def fetch_missing(url: str, cfg: ApiConfig, result: IngestResult, *, as_of: datetime, ids: list[int] | None,
                  dry_run: bool, client: CmcClient | None = None) -> None:
    from ta_lab2.store import db, source, sqlfiles

    with db.connect(url) as conn:
        cursor = [(r[0], r[1], r[2]) for r in conn.execute(sqlfiles.load("queries/ingest_api_cursor"),
                                                            {"ids": ids}).fetchall()]
    names = {a: n for a, n, _ in cursor}
    no_data = [a for a, _, t in cursor if t is None]
    if no_data and ids is not None:
        result.notes.append(f"API: ids {no_data} have no candles yet: load an export first (the API "
                            "fills days after the last one)")
    groups = plan(cursor, as_of)
    last = as_of.astimezone(UTC).date() - timedelta(days=1)
    result.api_assets = sum(len(v) for v in groups.values())
    if dry_run:
        result.notes.append("API would fetch " + "; ".join(f"{first}..{last} for ids {v}" for first, v in
                                                           sorted(groups.items())) if groups else "API: nothing missing")
        return
    client = client or CmcClient(cfg)
    try:
        for first, group in sorted(groups.items()):
            for k in range(0, len(group), BATCH):
                batch = group[k:k + BATCH]
                try:
                    data = client.ohlcv(batch, first - timedelta(days=1), last)
                except ApiAuthError:
                    raise
                except ApiError as exc:
                    result.errors.append(f"API error: {exc}")
                    continue
                for asset in batch:
                    entry = data.get(str(asset)) or data.get(asset)  # type: ignore[call-overload]
                    if isinstance(entry, list):  # the API answers a list per id for symbol queries
                        entry = entry[0] if entry else None
                    if not entry or not entry.get("quotes"):
                        result.notes.append(f"API: no quotes for id {asset} ({first}..{last})")
                        continue
                    src = f"cmc_api:{PATH}?id={asset}&time_start={first}&time_end={last}"
                    parsed = quotes_to_rows(asset, names[asset], entry["quotes"], src, first, last)
                    parsed.symbols[asset] = ("", names[asset])
                    report = ProblemReport(lambda text: log.warning("CoinMarketCap API: %s", text))
                    with db.transaction(url) as conn:  # the same path as a file: rejects, duplicates, audit
                        counts = source.upsert_parsed(conn, parsed, load_id=result.load_id, on_problem=report)
                    report.finish()
                    log.info("CoinMarketCap API: %s", counts.line(src))
                    result.add_counts(counts)
                    result.days_fetched += len(parsed.rows)
    finally:
        client.close()
