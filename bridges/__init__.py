"""The bridge API (depends on ``protocol`` only); one sub-package per bridged network."""
