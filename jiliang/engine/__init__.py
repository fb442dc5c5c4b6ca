"""Pure domain algorithms. Nothing under this package may import Django."""
