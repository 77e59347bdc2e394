"""Applications built on the engine: the prompt optimizer (OPRO) and the cost report.

Apps import the engine's surface (`labelmill.engine` and its rooms' packages), never its private modules.
"""

from labelmill.apps._costreport import write_report
from labelmill.apps._opro import OproConfig, Optimizer, write_outputs

__all__ = ["OproConfig", "Optimizer", "write_outputs", "write_report"]
