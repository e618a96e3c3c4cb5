"""Celery workers: the app, its tasks, and the code that runs a job on the core."""
