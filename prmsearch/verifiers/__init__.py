"""Answer checkers: math (extraction + equivalence); code (sandboxed unit tests) comes later."""

from .math import extract_answer, is_equivalent

__all__ = ["extract_answer", "is_equivalent"]
