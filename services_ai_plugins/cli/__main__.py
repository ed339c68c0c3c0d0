"""``python -m services_ai_plugins.cli`` is ``services-ai``."""

from services_ai_plugins.cli import main

main()
