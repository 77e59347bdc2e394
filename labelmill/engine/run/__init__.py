"""The run itself: producer, sender, committer, ordered output, failures, resolve, replay workers, stats.

The top of the engine: it may import every other engine room; none of them imports it.
"""
