"""Class names: one article rule (prompts.strip_article) for datasets and closed-set detectors, and supervision's
own ``Detections.data`` key."""
from __future__ import annotations

import numpy as np
import supervision as sv
from supervision.config import CLASS_NAME_DATA_FIELD

from repvit_plugins import detections
from repvit_plugins.grounding.mmdet_closed_set import match_classes
from repvit_plugins.grounding.prompts import strip_article
from repvit_plugins.jobs.dataset import category_names


def test_strip_article_drops_one_leading_english_article():
    assert [strip_article(n) for n in ("a cat", " An Apple ", "THE  dog", "theatre", "a", "cat a", "an a cat")] == \
        ["cat", "Apple", "dog", "theatre", "a", "cat a", "a cat"]


def test_datasets_and_closed_set_detectors_share_the_rule():
    assert category_names(["a cat", "The cat", "an apple", "dog"], {"dog": "canine"}) == \
        (["cat", "apple", "canine"], [0, 0, 1, 2])
    assert match_classes(["The Cat", "a dog"], ["dog", "bird", "cat"]) == {2: 0, 0: 1}


def test_class_names_live_under_supervision_s_key():
    assert not hasattr(detections, "CLASS_NAME")  # supervision's own key, not a copy
    found = sv.Detections(xyxy=np.zeros((2, 4), dtype=np.float32))
    assert detections.class_names(found) == ["", ""]  # neither names nor ids
    detections.set_class_names(found, ["cat", "dog"], [3, 5])
    assert found.data[CLASS_NAME_DATA_FIELD].tolist() == ["cat", "dog"] and found.class_id.tolist() == [3, 5]
    assert detections.class_names(found) == ["cat", "dog"]
    assert detections.class_names(found[[1]]) == ["dog"]  # supervision indexes the names with the boxes
