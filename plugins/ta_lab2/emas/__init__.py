"""EMA families as pure functions: the shared kernel, per-asset computation and validation.

- ``kernel``: the SMA-seeded EMA (TA-Lib convention) and the time-stepped recursion that runs
  many series at once, bit-identical to ``new = alpha * x + (1.0 - alpha) * prev``.
- ``compute``: bar-space EMAs (multi_tf, cal, cal_anchor) and daily-space EMAs (v2) for one
  asset and one timeframe, with the per-series state that makes an incremental refresh equal
  a full rebuild bit for bit.
- ``validate``: the ``ema_rejects`` checks (NaN, inf, negative, out of the close bounds).

No I/O here; see ``/work/shared/spec/EMAS.md`` for the semantics.
"""
