"""The CoinMarketCap API client against a real local HTTP server (tests/support/fake_cmc.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from ta_lab2.ingest.cmc_api import (
    ApiAuthError,
    ApiConfig,
    ApiError,
    CmcClient,
    api_config,
    plan,
    quotes_to_rows,
)
from tests.support.fake_cmc import FakeCmc


@pytest.fixture
def cmc() -> Iterator[FakeCmc]:
    with FakeCmc(keys={"good-key"}, latest=date(2026, 3, 29)) as fake:
        yield fake


def _client(cmc: FakeCmc, key: str = "good-key", **kw: object) -> tuple[CmcClient, list[float]]:
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        time.sleep(s)

    return CmcClient(ApiConfig(cmc.url, key), sleep=sleep, **kw), waits  # type: ignore[arg-type]


def test_a_batched_request_returns_the_documented_shape_with_time_start_exclusive(cmc: FakeCmc) -> None:
    client, _ = _client(cmc)
    data = client.ohlcv([1, 1027], date(2026, 3, 25), date(2026, 3, 28))
    assert set(data) == {"1", "1027"}
    days = [q["time_open"][:10] for q in data["1"]["quotes"]]
    assert days == ["2026-03-26", "2026-03-27", "2026-03-28"]
    assert data["1027"]["quotes"][0]["quote"]["USD"] == cmc.candle(1027, date(2026, 3, 26))["quote"]["USD"]
    (req,) = cmc.requests
    assert req.key == "good-key" and req.ids == [1, 1027]
    assert (req.params["time_start"], req.params["time_end"], req.params["interval"]) == (
        "2026-03-25", "2026-03-28", "daily")


def test_429_waits_for_retry_after_then_succeeds(cmc: FakeCmc) -> None:
    client, waits = _client(cmc, backoff_s=5.0)
    cmc.fail_next(1, status=429, retry_after=0.2)
    data = client.ohlcv([1], date(2026, 3, 27), date(2026, 3, 28))
    assert waits == [0.2]  # Retry-After, not the 5 s backoff
    assert len(data["1"]["quotes"]) == 1
    assert [r.status for r in cmc.requests] == [429, 200]


def test_5xx_is_retried_with_exponential_backoff_and_gives_up_with_a_clear_error(cmc: FakeCmc) -> None:
    client, waits = _client(cmc, backoff_s=0.01, attempts=4)
    cmc.fail_next(2, status=503)
    client.ohlcv([1], date(2026, 3, 27), date(2026, 3, 28))
    assert waits == [0.01, 0.02]
    cmc.fail_next(10, status=502)
    with pytest.raises(ApiError, match=r"ids 1: gave up after 4 attempts \(HTTP 502: fake failure"):
        client.ohlcv([1], date(2026, 3, 27), date(2026, 3, 28))


def test_a_wrong_key_fails_at_once_with_the_fix(cmc: FakeCmc) -> None:
    client, waits = _client(cmc, key="wrong")
    with pytest.raises(ApiAuthError) as exc:
        client.ohlcv([1], date(2026, 3, 27), date(2026, 3, 28))
    assert str(exc.value) == ("CoinMarketCap API refused the key (HTTP 401: This API Key is invalid.): set the "
                              "password of Airflow connection 'cmc_api' or CMC_API_KEY")
    assert waits == [] and len(cmc.requests) == 1
    cmc.fail_next(1, status=403)
    with pytest.raises(ApiAuthError, match="HTTP 403"):
        _client(cmc)[0].ohlcv([1], date(2026, 3, 27), date(2026, 3, 28))


def test_quotes_become_source_rows_and_a_bad_quote_is_a_problem_not_a_loss() -> None:
    quotes = [FakeCmc().candle(5, date(2026, 3, d)) for d in (26, 27, 28)]
    del quotes[1]["quote"]
    out = quotes_to_rows(5, "Five", quotes, "cmc_api:x", date(2026, 3, 26), date(2026, 3, 27))
    assert [r[2] for r in out.rows] == [datetime(2026, 3, 26, tzinfo=UTC)]  # the 28th is past the last day
    row = out.rows[0]
    assert row[6] == datetime(2026, 3, 26, 23, 59, 59, 999000, tzinfo=UTC)
    assert row[7:13] == tuple(FakeCmc().candle(5, date(2026, 3, 26))["quote"]["USD"][k]
                              for k in ("open", "high", "low", "close", "volume", "market_cap"))
    assert [(p.line_no, p.reason) for p in out.problems] == [(2, "quote 2: KeyError: 'quote'")]


@pytest.mark.parametrize(("last_day", "as_of", "expected"), [
    (date(2026, 3, 26), datetime(2026, 3, 29, 6, tzinfo=UTC), date(2026, 3, 27)),  # 27th, 28th missing
    (date(2026, 3, 28), datetime(2026, 3, 29, 6, tzinfo=UTC), None),  # up to date
    (date(2026, 3, 27), datetime(2026, 3, 29, tzinfo=UTC), date(2026, 3, 28)),  # midnight as-of: 28th closed
    (date(2026, 3, 28), datetime(2026, 3, 29, tzinfo=UTC), None),
])
def test_the_missing_days_run_from_the_day_after_the_last_to_the_last_closed_day(
        last_day: date, as_of: datetime, expected: date | None) -> None:
    last_ts = datetime(last_day.year, last_day.month, last_day.day, 23, 59, 59, 999000, tzinfo=UTC)
    groups = plan([(7, "x", last_ts), (8, "no data", None)], as_of)
    assert groups == ({expected: [7]} if expected else {})


def test_configuration_from_env_and_from_the_airflow_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CMC_API_KEY", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_CMC_API", raising=False)
    assert api_config() is None
    monkeypatch.setenv("CMC_API_KEY", "k1")
    assert api_config() == ApiConfig("https://pro-api.coinmarketcap.com", "k1")
    monkeypatch.setenv("CMC_API_BASE_URL", "http://127.0.0.1:1/")
    assert api_config() == ApiConfig("http://127.0.0.1:1", "k1")
    monkeypatch.setenv("AIRFLOW_CONN_CMC_API", '{"conn_type": "http", "host": "127.0.0.1", "port": 8111, '
                                               '"password": "from-conn"}')
    assert api_config(airflow=True) == ApiConfig("http://127.0.0.1:8111", "from-conn")
    monkeypatch.setenv("AIRFLOW_CONN_CMC_API", '{"conn_type": "generic", "password": "k2"}')
    assert api_config(airflow=True) == ApiConfig("http://127.0.0.1:1", "k2")  # no host: the env root
    assert "k2" not in repr(api_config(airflow=True))
