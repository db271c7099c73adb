"""Answer checkers: math (extraction + equivalence in killable workers), code (sandboxed unit tests, pass@k), and
exact arithmetic checks of solution steps."""

from .arithmetic import Equation, StepCheck, check_arithmetic_steps
from .code import CodeLimits, CodeResult, SandboxError, isolation, pass_at_k, run_many, run_tests
from .math import Grade, extract_answer, extract_many, gold_answer, grade, grade_many, is_equivalent
from .results import VerifyMathConfig, verify_math_file
from .workers import Outcome, PoolError, WorkerPool

__all__ = [
    "CodeLimits",
    "CodeResult",
    "Equation",
    "Grade",
    "Outcome",
    "PoolError",
    "SandboxError",
    "StepCheck",
    "VerifyMathConfig",
    "WorkerPool",
    "check_arithmetic_steps",
    "extract_answer",
    "extract_many",
    "gold_answer",
    "grade",
    "grade_many",
    "is_equivalent",
    "isolation",
    "pass_at_k",
    "run_many",
    "run_tests",
    "verify_math_file",
]
