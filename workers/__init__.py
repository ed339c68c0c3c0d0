"""The Celery application of Services AI plugins: ``celery -A workers worker`` / ``beat``.

Queues (scale each on its own): ``events`` (lead and booking events, consumed in batches),
``widgets`` (dashboard widget refreshes), ``exports`` (data exports) and ``lifecycle``
(replays and backfills).
"""

from workers.celery_app import app

celery = app

__all__ = ["app", "celery"]

# Registering the tasks with the app wherever it is imported (worker, beat, in-process demo).
import workers.tasks  # noqa: E402, F401
