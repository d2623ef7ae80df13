"""Runners: one per target behind one interface (`Runner`), registered by name.

Adding a target = one module here that defines a `Runner` subclass and registers it with
`@register("name")`; `open_runner` imports it lazily so a host needs only the runtimes it uses.
"""

from .base import RUNNER_MODULES, Runner, StepOutput, get_runner_class, open_runner, register

__all__ = ["Runner", "StepOutput", "register", "get_runner_class", "open_runner", "RUNNER_MODULES"]
