"""Pretrained weights: checkpoint readers, explicit per-family name maps, loading with checks."""
