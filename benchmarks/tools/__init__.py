"""Stand-alone benchmark tools: each prints its own table (`python -m benchmarks.tools.NAME`)."""
