"""Benchmark suites of `v2d bench`: each module measures one thing and returns its markdown table."""
