"""Meter I/O: sources, the per-meter reader, snapshots, glitch guard and link diagnostics."""
