"""Which examples get a rationale: one small object per policy (fixed rate, budget plan, uncertainty).

Imports `engine.money` and `engine.tasks`, nothing above it.
"""
