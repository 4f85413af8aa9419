"""Datasets (registered builders), splits, the in-memory batched fast path and augmentation."""
