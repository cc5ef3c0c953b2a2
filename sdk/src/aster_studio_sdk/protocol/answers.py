"""Answers to an agent's questions (`ask_user`), checked as the Studio checks a person's.

Shared by the Studio's control service and the SDK's `InMemoryStudio`, so that answers a test
gives pass or fail there as they would in the Studio.
"""

from __future__ import annotations

from typing import Any

# Characters of text in one answer, and in all the answers to one request.
MAX_ANSWER = 4_000
MAX_ANSWERS = 64_000


class AnswerError(ValueError):
    """Answers of a wrong shape or size, or not answering the questions asked."""


def _answer_size(value: Any) -> int:
    """The characters of text in one answer: text, a number or a yes/no, or a list of them
    (several choices); anything else (null, an object, a list of lists) is no answer."""
    if isinstance(value, list):
        if not all(isinstance(v, (str, int, float)) for v in value):
            raise AnswerError("an answer must be text, a number, or a list of them")
        return sum(len(str(v)) for v in value)
    if not isinstance(value, (str, int, float)):
        raise AnswerError("an answer must be text, a number, or a list of them")
    return len(str(value))


def check_bounds(answers: Any) -> None:
    """Refuse answers of a wrong shape or size: an object or a list of answers, each at most
    MAX_ANSWER characters and MAX_ANSWERS in all (a 2 MB answer was stored and sent)."""
    if not isinstance(answers, (dict, list)):
        raise AnswerError("'answers' must be an object (question -> answer) or a list")
    values = answers.values() if isinstance(answers, dict) else answers
    total = 0
    for value in values:
        size = _answer_size(value)
        if size > MAX_ANSWER:
            raise AnswerError(f"an answer must be at most {MAX_ANSWER} characters")
        total += size
    if total > MAX_ANSWERS:
        raise AnswerError(f"the answers must be at most {MAX_ANSWERS} characters in all")


def question_texts(questions: Any) -> list[str] | None:
    """The text of each question of an `ask_user`, in order; None when one has no text to key
    answers by (or there are none)."""
    if not isinstance(questions, list) or not questions:
        return None
    texts = []
    for q in questions:
        text = q if isinstance(q, str) else q.get("question") if isinstance(q, dict) else None
        if not isinstance(text, str) or not text:
            return None
        texts.append(text)
    return texts


def keyed_answers(questions: Any, answers: dict[str, Any] | list[Any]) -> Any:
    """The answers as an object keyed by question text, answering every question asked and
    nothing else (AnswerError otherwise): a list answers the questions in order. Unchecked
    answers left the agent with `{}` or `{"0": ...}` reported as answered, and its default
    lost. Questions without text to check against take the answers as they are."""
    texts = question_texts(questions)
    if texts is None:
        return answers
    if isinstance(answers, list):
        if len(answers) != len(texts):
            raise AnswerError(
                f"a list of answers must have one per question ({len(texts)}), not {len(answers)}"
            )
        answers = dict(zip(texts, answers, strict=True))
    unknown = [k for k in answers if k not in texts]
    if unknown:
        raise AnswerError(f"answers to questions not asked: {unknown}; asked: {texts}")
    missing = [t for t in texts if answers.get(t) in (None, "", [])]
    if missing:
        raise AnswerError(f"every question needs an answer; none for: {missing}")
    return answers
