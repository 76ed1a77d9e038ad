"""Ray Tune sweeps of the composite sampler's knobs on a fixed evaluation set (docs/TUNING.md)."""
