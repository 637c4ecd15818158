"""Exporters: turn a mapped IR graph into a vendor format (NIR, netx, ...). Each imports its vendor library lazily."""
