"""History: the capture file format and backfill to OpenMetrics."""
