"""Errors raised at the edges of the system; each names the file and the field it is about."""

from __future__ import annotations


class InputError(ValueError):
    """Malformed input: the message always starts with ``<file>: <field>:``."""

    def __init__(self, source: str, field: str, problem: str):
        self.source = source
        self.field = field
        self.problem = problem
        super().__init__(f"{source}: {field}: {problem}")
