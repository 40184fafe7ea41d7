"""Telegrams to Prometheus metrics: the catalog, the OBIS-to-sample map and the collector."""
