-- 002_dim_timeframe: timeframes as data (BARS.md "dim_timeframe"). Builders select rows by
-- roll_policy / calendar_scheme; adding a row adds a timeframe. The seed upserts, so
-- re-applying is a no-op and user-added rows are kept.
CREATE TABLE IF NOT EXISTS dim_timeframe (
    tf                  text PRIMARY KEY,
    base_unit           text NOT NULL CHECK (base_unit IN ('D', 'W', 'M', 'Y')),
    tf_qty              integer NOT NULL CHECK (tf_qty > 0),
    tf_days_nominal     integer NOT NULL CHECK (tf_days_nominal > 0),
    alignment_type      text NOT NULL CHECK (alignment_type IN ('tf_day', 'calendar')),
    calendar_scheme     text CHECK (calendar_scheme IN ('US', 'ISO')),
    roll_policy         text NOT NULL CHECK (roll_policy IN ('rolling', 'calendar', 'calendar_anchor')),
    allow_partial_start boolean NOT NULL,
    allow_partial_end   boolean NOT NULL,
    tf_days_min         integer NOT NULL,
    tf_days_max         integer NOT NULL,
    is_canonical        boolean NOT NULL DEFAULT false,
    sort_order          integer NOT NULL
);

INSERT INTO dim_timeframe AS t (tf, base_unit, tf_qty, tf_days_nominal, alignment_type,
    calendar_scheme, roll_policy, allow_partial_start, allow_partial_end, tf_days_min,
    tf_days_max, is_canonical, sort_order)
VALUES
    ('1D',   'D', 1,   1,   'tf_day', NULL, 'rolling', false, true, 1, 1, true, 10),
    ('2D',   'D', 2,   2,   'tf_day', NULL, 'rolling', false, true, 2, 2, false, 20),
    ('3D',   'D', 3,   3,   'tf_day', NULL, 'rolling', false, true, 3, 3, false, 30),
    ('5D',   'D', 5,   5,   'tf_day', NULL, 'rolling', false, true, 5, 5, false, 50),
    ('7D',   'D', 7,   7,   'tf_day', NULL, 'rolling', false, true, 7, 7, true, 70),
    ('10D',  'D', 10,  10,  'tf_day', NULL, 'rolling', false, true, 10, 10, false, 100),
    ('14D',  'D', 14,  14,  'tf_day', NULL, 'rolling', false, true, 14, 14, true, 140),
    ('21D',  'D', 21,  21,  'tf_day', NULL, 'rolling', false, true, 21, 21, false, 210),
    ('30D',  'D', 30,  30,  'tf_day', NULL, 'rolling', false, true, 30, 30, true, 300),
    ('60D',  'D', 60,  60,  'tf_day', NULL, 'rolling', false, true, 60, 60, false, 600),
    ('90D',  'D', 90,  90,  'tf_day', NULL, 'rolling', false, true, 90, 90, true, 900),
    ('180D', 'D', 180, 180, 'tf_day', NULL, 'rolling', false, true, 180, 180, false, 1800),
    ('365D', 'D', 365, 365, 'tf_day', NULL, 'rolling', false, true, 365, 365, true, 3650),
    ('1W_CAL_US',  'W', 1, 7,  'calendar', 'US',  'calendar', false, true, 7, 7, true, 4070),
    ('2W_CAL_US',  'W', 2, 14, 'calendar', 'US',  'calendar', false, true, 14, 14, false, 4140),
    ('4W_CAL_US',  'W', 4, 28, 'calendar', 'US',  'calendar', false, true, 28, 28, false, 4280),
    ('1W_CAL_ISO', 'W', 1, 7,  'calendar', 'ISO', 'calendar', false, true, 7, 7, true, 4071),
    ('2W_CAL_ISO', 'W', 2, 14, 'calendar', 'ISO', 'calendar', false, true, 14, 14, false, 4141),
    ('4W_CAL_ISO', 'W', 4, 28, 'calendar', 'ISO', 'calendar', false, true, 28, 28, false, 4281),
    ('1M_CAL',  'M', 1,  30,  'calendar', NULL, 'calendar', false, true, 28, 31, true, 5030),
    ('3M_CAL',  'M', 3,  90,  'calendar', NULL, 'calendar', false, true, 89, 92, true, 5090),
    ('6M_CAL',  'M', 6,  180, 'calendar', NULL, 'calendar', false, true, 181, 184, false, 5180),
    ('12M_CAL', 'M', 12, 360, 'calendar', NULL, 'calendar', false, true, 365, 366, false, 5360),
    ('1Y_CAL',  'Y', 1,  365, 'calendar', NULL, 'calendar', false, true, 365, 366, true, 5365),
    ('1W_CAL_ANCHOR_US',  'W', 1, 7,  'calendar', 'US',  'calendar_anchor', true, true, 7, 7, true, 6070),
    ('2W_CAL_ANCHOR_US',  'W', 2, 14, 'calendar', 'US',  'calendar_anchor', true, true, 14, 14, false, 6140),
    ('1W_CAL_ANCHOR_ISO', 'W', 1, 7,  'calendar', 'ISO', 'calendar_anchor', true, true, 7, 7, true, 6071),
    ('2W_CAL_ANCHOR_ISO', 'W', 2, 14, 'calendar', 'ISO', 'calendar_anchor', true, true, 14, 14, false, 6141),
    ('1M_CAL_ANCHOR',  'M', 1, 30,  'calendar', NULL, 'calendar_anchor', true, true, 28, 31, true, 7030),
    ('3M_CAL_ANCHOR',  'M', 3, 90,  'calendar', NULL, 'calendar_anchor', true, true, 89, 92, true, 7090),
    ('6M_CAL_ANCHOR',  'M', 6, 180, 'calendar', NULL, 'calendar_anchor', true, true, 181, 184, false, 7180),
    ('1Y_CAL_ANCHOR',  'Y', 1, 365, 'calendar', NULL, 'calendar_anchor', true, true, 365, 366, true, 7365)
ON CONFLICT (tf) DO NOTHING;
