"""Calling plugins: the one path every hook call takes (policy, executor, context, time
limits, breakers)."""
