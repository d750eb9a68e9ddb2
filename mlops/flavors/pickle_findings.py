"""What one scan of a pickle collects, and the scanner's internal errors.

:class:`Findings` records every global a pickle imports, judged by an
:class:`~mlops.flavors.pickle_policy.ImportPolicy`, and every problem found on the way.
The errors are raised by the opcode emulator (:mod:`mlops.flavors.pickle_machine`) and
turned into offending findings by :mod:`mlops.flavors.pickle_scan`.
"""

from __future__ import annotations

from mlops.flavors.pickle_policy import ImportPolicy
from mlops.flavors.pickle_values import Global

__all__ = [
    "Findings",
    "JoblibError",
    "StreamError",
    "Truncated",
    "UnknownOpcode",
]

_TAINT_BUDGET = 20_000_000
_MAX_PROBLEMS = 100


# --------------------------------------------------------------------------------------
# errors (the scanner's public API never raises for bad data)


class StreamError(Exception):
    """The bytes are not a pickle stream the scanner can vouch for."""


class Truncated(StreamError):
    """The stream ends early."""


class UnknownOpcode(StreamError):
    """A byte that is no pickle opcode."""


class JoblibError(Exception):
    """A joblib array whose size cannot be determined exactly."""

    def __init__(self, pos: int, reason: str) -> None:
        super().__init__(reason)
        self.pos = pos


# --------------------------------------------------------------------------------------
# what one scan collects


class Findings:
    """Everything collected during one scan."""

    def __init__(self, policy: ImportPolicy) -> None:
        self.policy = policy
        self.imports: set[str] = set()
        self.bad_globals: set[str] = set()
        self.denied: set[str] = set()
        self.problems: dict[str, None] = {}
        self.dropped_problems = 0
        self.wrapper_class_seen = False
        self.arrays_read = 0
        self.taint_budget = _TAINT_BUDGET
        #: id -> emulated buffer that already backs an array (kept alive: ids stay unique)
        self.array_memory: dict[int, object] = {}

    def add_global(self, module: str, name: str) -> Global:
        """Record a global the file imports and judge it against the policy."""
        glob = Global(module, name)
        dotted = glob.dotted
        self.imports.add(dotted)
        if self.policy.is_denied(module, name):
            self.bad_globals.add(dotted)
            self.denied.add(dotted)
        elif not self.policy.is_allowed(module, name):
            self.bad_globals.add(dotted)
        if glob.is_wrapper_class:
            self.wrapper_class_seen = True
        return glob

    def claim_array_memory(self, buffer: object) -> bool:
        """Record that ``buffer`` backs an array; False if it already backs one."""
        if id(buffer) in self.array_memory:
            return False
        self.array_memory[id(buffer)] = buffer
        return True

    def problem(self, text: str) -> None:
        """Record a problem; beyond ``_MAX_PROBLEMS`` distinct ones, only count it."""
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems[text] = None
        elif text not in self.problems:
            self.dropped_problems += 1


