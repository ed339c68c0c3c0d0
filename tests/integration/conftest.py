"""The fixtures shared by ``tests/integration`` and ``tests/faults`` (one copy: ``tests/integration/fixtures.py``)."""

from tests.integration.fixtures import *  # noqa: F403
