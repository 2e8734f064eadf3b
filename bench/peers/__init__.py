"""Optional peers the benchmark compares against (each skipped when its package is missing)."""
