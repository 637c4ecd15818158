"""Simulators: the cycle-level IR interpreter and reference runners (Lava, sinabs)."""
