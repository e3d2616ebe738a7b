from __future__ import annotations

import psycopg

from ta_lab2.registry import EMA_VARIANTS, SNAPSHOT_FAMILIES
from ta_lab2.store import db, schema


def _catalog(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        """SELECT table_name, column_name, data_type, is_nullable, column_default
           FROM information_schema.columns WHERE table_schema = 'public'
           ORDER BY table_name, ordinal_position"""
    ).fetchall()


def test_applying_schema_twice_is_a_noop(fresh_db_url: str) -> None:
    with db.connect(fresh_db_url) as conn:
        before_cols = _catalog(conn)
        before_tf = conn.execute("SELECT * FROM dim_timeframe ORDER BY tf").fetchall()
        before_p = conn.execute("SELECT * FROM dim_period ORDER BY period").fetchall()
        schema.apply_schema(conn)
        assert _catalog(conn) == before_cols
        assert conn.execute("SELECT * FROM dim_timeframe ORDER BY tf").fetchall() == before_tf
        assert conn.execute("SELECT * FROM dim_period ORDER BY period").fetchall() == before_p


def test_schema_has_every_registry_table_and_the_unified_view(fresh_db_url: str) -> None:
    with db.connect(fresh_db_url) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema='public'"
        )}
        for fam in SNAPSHOT_FAMILIES:
            assert {fam.table, fam.state_table} <= tables
        for var in EMA_VARIANTS:
            assert {var.table, var.state_table} <= tables
        for t in ("cmc_price_histories7", "dim_assets", "dim_timeframe", "cmc_price_bars_1d",
                  "cmc_price_bars_1d_state", "cmc_price_bars_1d_rejects", "refresh_runs",
                  "refresh_run_assets", "dim_period", "ema_rejects", "cmc_ema_refresh_state"):
            assert t in tables
        kind = conn.execute(
            "SELECT table_type FROM information_schema.tables WHERE table_name='cmc_ema_multi_tf_u'"
        ).fetchone()
        assert kind == ("VIEW",)
        srcs = conn.execute("SELECT DISTINCT alignment_source FROM cmc_ema_multi_tf_u").fetchall()
        assert srcs == []  # empty, but queryable


def test_seeded_timeframes_and_periods_match_the_spec(fresh_db_url: str) -> None:
    with db.connect(fresh_db_url) as conn:
        canon = {r[0] for r in conn.execute("SELECT tf FROM dim_timeframe WHERE is_canonical")}
        assert canon == {
            "1D", "7D", "14D", "30D", "90D", "365D", "1W_CAL_US", "1W_CAL_ISO", "1M_CAL", "3M_CAL",
            "1Y_CAL", "1W_CAL_ANCHOR_US", "1W_CAL_ANCHOR_ISO", "1M_CAL_ANCHOR", "3M_CAL_ANCHOR",
            "1Y_CAL_ANCHOR",
        }
        bounds = dict(((r[0]), (r[1], r[2])) for r in conn.execute(
            "SELECT tf, tf_days_min, tf_days_max FROM dim_timeframe"))
        assert bounds["1M_CAL"] == (28, 31) and bounds["3M_CAL"] == (89, 92)
        assert bounds["6M_CAL"] == (181, 184) and bounds["12M_CAL"] == (365, 366)
        assert bounds["1Y_CAL"] == (365, 366)
        periods = [r[0] for r in conn.execute("SELECT period FROM dim_period ORDER BY period")]
        assert len(periods) == 17
        defaults = [r[0] for r in conn.execute("SELECT period FROM dim_period WHERE is_default ORDER BY 1")]
        assert defaults == [10, 14, 20, 21, 30, 50, 100, 200, 252, 365]


def test_snapshot_tables_keep_only_their_primary_key_and_an_old_time_index_is_dropped(fresh_db_url: str) -> None:
    """D-engine-12: a snapshot series is in time order in its primary key (bar_seq grows with
    time), so the (id, tf, timestamp) index an earlier schema created only doubled the pages a
    daily run dirties; applying the schema to such a warehouse drops it."""
    fam = SNAPSHOT_FAMILIES[0]
    with db.connect(fresh_db_url) as conn:
        conn.execute(f'CREATE INDEX {fam.table}_ts_idx ON {fam.table} (id, tf, "timestamp")')
        conn.commit()
        schema.apply_schema(conn)
        for f in SNAPSHOT_FAMILIES:
            indexes = [r[0] for r in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = %s", (f.table,)).fetchall()]
            assert indexes == [f'CREATE UNIQUE INDEX {f.table}_pkey ON public.{f.table} USING btree '
                               '(id, tf, bar_seq, "timestamp")'], indexes
