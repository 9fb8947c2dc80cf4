"""Helpers every test may use: the real server and cluster, fakes, strategies, scripts."""
