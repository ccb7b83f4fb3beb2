"""What the product does, knowing nothing of HTTP: a flow or an aggregate a module."""
