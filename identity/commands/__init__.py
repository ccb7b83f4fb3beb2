"""The groups of the `identity` command (identity.cli registers them), a module each."""
