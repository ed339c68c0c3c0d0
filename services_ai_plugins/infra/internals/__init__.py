"""The fence: the one place that uses kombu's and celery-batches' private names.

Everything in this package overrides or calls something those libraries do not promise to keep
(underscore names, internal structures). Each module lists what it relies on in its
``PRIVATE_NAMES``; ``tests/test_internals.py`` checks that each still exists with the shape used
and that no module outside this package uses such a name, so an upgrade that moves one fails
that test by name instead of misbehaving in production.

- ``embedded``: the broker that lives in the data folder (kombu's SQLAlchemy transport on a
  SQLite file), made safe against a consumer killed at any instant;
- ``redis``: kombu's Redis transport, with the crash-safe batch fetch of ``redis_fetch`` (take
  and record as unacknowledged in one step: the Lua script of ``redis_script``), one client per
  channel and a batch's acknowledgements in one round trip;
- ``batches``: the batching consumer of the events task (celery-batches, group commit).
"""
