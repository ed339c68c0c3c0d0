"""Infrastructure: the database, its models and migrations, the broker, the task queue, and
the one module that touches kombu's and celery-batches' private names."""
