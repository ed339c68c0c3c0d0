"""The sandbox executor: each plugin in a process of its own (the default isolation)."""
