"""Reports for humans (rich tables) and for CI (JSON)."""
