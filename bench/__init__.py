"""Benchmarks: the pipeline measured against raw Celery on the same broker and machine.

Run ``scripts/bench`` (``python -m bench``); ``--smoke`` is the small run the test suite does.
"""
