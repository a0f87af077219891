"""The one person rule of node and bag replay: class ids, score threshold, and filters that keep nobody."""
import math

import pytest

from starpose_ros.core.person_filter import ANY_CLASS, PersonFilter


@pytest.mark.parametrize('classes', [frozenset(), frozenset({'', ' '})])
def test_a_filter_without_classes_is_refused(classes):
    with pytest.raises(ValueError, match='person classes are empty'):
        PersonFilter(classes)


@pytest.mark.parametrize('score', [math.nan, -0.1, 5.0])
def test_a_score_threshold_outside_zero_one_is_refused(score):
    with pytest.raises(ValueError, match=r'in \[0, 1\]'):
        PersonFilter(min_score=score)


def test_class_text_is_split_and_stripped():
    assert PersonFilter.from_text(' person , 0,').classes == frozenset({'person', '0'})
    with pytest.raises(ValueError):
        PersonFilter.from_text(',')


def test_person_score_follows_classes_then_threshold():
    people = PersonFilter(min_score=0.5)
    assert people.person_score([('person', 0.9)], 0.0) == 0.9
    assert people.person_score([('car', 0.9), ('0', 0.7)], 0.0) == 0.7  # the best person hypothesis
    assert people.person_score([('Person', 0.9)], 0.0) is None  # class ids are exact: 'Person' is not 'person'
    assert people.person_score([('person', 0.4)], 0.0) is None
    assert people.person_score([('', 0.9)], 0.8) == 0.8  # no class named: kept with its own score
    assert people.person_score([], 0.2) is None  # ... which must reach the threshold too
    assert ANY_CLASS.person_score([('pedestrian', 0.1)], 0.0) == 0.1
