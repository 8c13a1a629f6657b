"""Prefect flows and schedulers that trigger the use cases."""
