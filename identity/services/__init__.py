"""What the product does, knowing nothing of HTTP."""
