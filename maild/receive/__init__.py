"""Receivers: thin and honest. Each commits raw mail + envelope to the spool, then acknowledges."""
