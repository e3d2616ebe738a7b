"""ta_lab2 refresh: CoinMarketCap candles -> price bars -> EMAs, incremental and audited."""

from __future__ import annotations

__version__ = "0.1.0"
