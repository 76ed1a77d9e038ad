"""Samplers: pure functions over a denoiser ``D(x; sigma)`` and a grid of noise levels."""
