"""Money: prices, the ledger that keeps `spent + reserved <= budget`, the planner, the estimate.

Imports `engine.tasks` (the estimate renders prompts), nothing above it.
"""
