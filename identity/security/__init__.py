"""Secrets: site keys, passwords, and the keys that sign access tokens."""
