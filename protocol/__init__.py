"""Pure protocol layer: ids, canonical JSON, events, hashing, signing, client frames, errors.

Nothing in this package performs I/O or reads the clock; callers pass time as ``now_ms``.
"""
