"""Compatibility runs against suites that live outside this repository."""
