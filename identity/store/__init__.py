"""SQL, one module per aggregate; no Flask."""
