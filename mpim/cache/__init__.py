"""The Cache port: cache-aside reads with TTLs (memory now, Redis later)."""
