"""The event pipeline: processing batches of events, storing results, reading events,
dead letters, backfill and publishing."""
