"""Secrets: site keys now; passwords and tokens as their issues land."""
