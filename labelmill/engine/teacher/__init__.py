"""Talking to the teacher: the HTTP client, retries, client-side limits, and the one priced attempt.

Imports `engine.money` and `engine.tasks`, nothing above it.
"""
