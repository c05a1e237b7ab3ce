"""What ``redrive`` and ``reprocess`` share: settings, time windows, preflight checks, offsets
found by time, and their metrics."""
