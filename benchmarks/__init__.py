"""Benchmarks of tiktok_async against what users would write instead (`make bench`)."""
