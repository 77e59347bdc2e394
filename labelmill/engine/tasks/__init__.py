"""What an example is: input rows, tasks that render them into prompts, and parsing the answers.

Imports only `labelmill.cache` and the standard library: everything above builds on it.
"""
