"""Which detections count as people: one rule for the live node and the bag replay.

A detection is a person when one of its class ids is a person class (or it names no class at
all) and its person score reaches `min_score`. The detection messages are decoded through it in
`core.messages`, which counts what is filtered: a filter that keeps nobody otherwise looks
exactly like an empty scene.
"""
from __future__ import annotations

from dataclasses import dataclass

ACCEPT_ANY_CLASS = '*'
DEFAULT_PERSON_CLASSES = ('person', '0')  # the word, and COCO's class id 0 as YOLO nodes send it


@dataclass(frozen=True)
class PersonFilter:
    """Person classes and the lowest score kept; refuses a filter that could keep nobody."""

    classes: frozenset[str] = frozenset(DEFAULT_PERSON_CLASSES)
    min_score: float = 0.0

    def __post_init__(self):
        """Reject an empty class set and a score threshold outside [0, 1] (NaN included)."""
        classes = frozenset(c.strip() for c in self.classes if c.strip())
        if not classes:
            raise ValueError("the person classes are empty: no detection would count as a person ('*' accepts "
                             f'any class; the default is {",".join(DEFAULT_PERSON_CLASSES)})')
        if not (isinstance(self.min_score, (int, float)) and 0.0 <= self.min_score <= 1.0):
            raise ValueError(f'the minimum detection score must be in [0, 1], got {self.min_score}')
        object.__setattr__(self, 'classes', classes)

    @classmethod
    def from_text(cls, text: str, min_score: float = 0.0) -> PersonFilter:
        """A filter from a comma-separated class list such as ``person,0`` or ``*``."""
        return cls(frozenset(text.split(',')), min_score)

    def person_score(self, hypotheses: list[tuple[str, float]], unclassified_score: float) -> float | None:
        """The detection's person score, or None when it is not a person or scores too low.

        `hypotheses` are (class id, score) pairs; a detection without any class id is kept with
        `unclassified_score`.
        """
        named = [(c, s) for c, s in hypotheses if c != '']
        if not named:
            score = unclassified_score
        else:
            scores = [s for c, s in named if ACCEPT_ANY_CLASS in self.classes or c in self.classes]
            if not scores:
                return None
            score = max(scores)
        return score if score >= self.min_score else None


ANY_CLASS = PersonFilter(frozenset({ACCEPT_ANY_CLASS}))  # every detection is a person (ground truth, tests)
