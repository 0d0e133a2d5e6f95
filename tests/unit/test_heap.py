import gc
import sys
import weakref
from collections.abc import Iterator

import pytest

from model.heap import freeze_imports


@pytest.fixture
def unfrozen_after() -> Iterator[None]:
    yield
    gc.unfreeze()


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.mark.usefixtures("unfrozen_after")
def test_imports_are_frozen_and_later_objects_stay_collectable() -> None:
    frozen = freeze_imports()
    assert "tensorflow" in sys.modules
    assert "keras" in sys.modules
    assert frozen == gc.get_freeze_count() > 0
    assert gc.get_objects(generation=2) == []  # nothing left for a full collection to walk

    later = _Node()  # e.g. a bundle loaded after start-up, then replaced by hot reload
    ref = weakref.ref(later)
    del later
    gc.collect()
    assert ref() is None
