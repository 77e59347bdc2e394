"""Test helpers that ship with labelmill, as httpx ships `MockTransport`: a local OpenAI-compatible
mock teacher, generated corpora, and a harness that runs it and `labelmill` in processes of their own.
"""
