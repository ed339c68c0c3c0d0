"""Plugin lifecycle: what a plugin is, and how it is validated, installed, permitted,
configured, upgraded and removed."""
