"""Workflows: standing orders in plain language — a trigger plus a checked plan.

- ``trigger``: ``Trigger`` (time | file | webhook | after) and the model's split of a
  description into trigger and task.
- ``store``: ``WorkflowStore`` (``workflows.db`` under the state directory) and ``Workflow``.
- ``saved``: ``SavedPlanRunner``, the shell's runner on a saved plan.
- ``service``: ``Workflows``, the daemon's service: compile, approve, fire, run, explain.
"""

from llmos.workflows.service import MAX_ATTEMPTS, Workflows, open_workflows
from llmos.workflows.store import State, Workflow, WorkflowStore
from llmos.workflows.trigger import Kind, Trigger

__all__ = ["Workflows", "open_workflows", "MAX_ATTEMPTS", "State", "Workflow", "WorkflowStore", "Kind",
           "Trigger"]
