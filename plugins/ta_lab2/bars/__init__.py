"""Bar builders' pure core: which window a day belongs to (:mod:`.windows`) and the
per-day snapshot rows of multi-day bars (:mod:`.snapshot`). No I/O here."""
