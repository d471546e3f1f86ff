"""Instructor mode: a fair variant of the problem for every student, its answer key, and a checker that names
the mistake behind a wrong answer (docs/instructors.md).

>>> from mlplab.instructor import answer_key, check_answers, make_variants
>>> v = make_variants(1, seed=7)[0]
>>> key = answer_key(v.problem).rounded()
>>> result = check_answers(v.problem, {"loss.mse.relu-sigmoid": key["loss.mse.relu-sigmoid"]})
>>> result.count("right"), result.count("missing") == len(key) - 1
(1, True)
"""

from __future__ import annotations

from mlplab.instructor.check import (
    CheckResult,
    ClassReport,
    ItemResult,
    answer_template,
    check_answers,
    check_class,
    class_figure,
)
from mlplab.instructor.key import AnswerKey, agrees, answer_key, round2
from mlplab.instructor.mistakes import MISTAKE_IDS, MISTAKES, Mistake, mistaken_values
from mlplab.instructor.variants import Variant, fairness_issues, make_variant, make_variants

__all__ = [
    "MISTAKES",
    "MISTAKE_IDS",
    "AnswerKey",
    "CheckResult",
    "ClassReport",
    "ItemResult",
    "Mistake",
    "Variant",
    "agrees",
    "answer_key",
    "answer_template",
    "check_answers",
    "check_class",
    "class_figure",
    "fairness_issues",
    "make_variant",
    "make_variants",
    "mistaken_values",
    "round2",
]
