"""What the platform offers on top of the plugins: dashboard widgets, data exports,
status for ops."""
