"""Marshmallow schemas: the API contract in code. Imports nothing of identity."""
