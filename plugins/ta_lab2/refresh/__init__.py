"""One refresh step per (asset, component): read what is new, compute, write + watermark."""
