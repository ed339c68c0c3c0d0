"""What a web process reuses for a moment (web/caching.py): a token check and the widget-list
tag, each re-read once older than ``web_cache_seconds``; a wrong token is never remembered."""

from __future__ import annotations

import pytest

from services_ai_plugins.web import caching
from services_ai_plugins.web.caching import Recent, RecentMap, WidgetList


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [100.0]
    monkeypatch.setattr(caching.time, "monotonic", lambda: now[0])
    return now


def test_a_value_is_read_again_once_older_than_its_seconds(clock: list[float]) -> None:
    reads: list[int] = []

    def read() -> int:
        reads.append(1)
        return len(reads)

    recent = Recent[int](1.0)
    assert [recent.get(read), recent.get(read)] == [1, 1]
    clock[0] += 0.99
    assert recent.get(read) == 1
    clock[0] += 0.02
    assert recent.get(read) == 2 and len(reads) == 2
    never = Recent[int](0)
    assert [never.get(read), never.get(read)] == [3, 4]


def test_tokens_are_remembered_per_key_but_a_wrong_one_never(clock: list[float]) -> None:
    asked: list[str] = []
    valid = {"good": (1, "dashboard", "d")}

    def lookup(key: str):
        def read():
            asked.append(key)
            return valid.get(key)

        return read

    tokens = RecentMap[str, tuple[int, str, str]](1.0)
    assert tokens.get("good", lookup("good")) == (1, "dashboard", "d")
    assert tokens.get("good", lookup("good")) == (1, "dashboard", "d")
    assert tokens.get("bad", lookup("bad")) is None
    assert tokens.get("bad", lookup("bad")) is None
    assert asked == ["good", "bad", "bad"]
    del valid["good"]  # revoked (by the CLI, elsewhere): refused once the second is up
    clock[0] += 1.01
    assert tokens.get("good", lookup("good")) is None


def test_the_remembered_tokens_are_bounded(clock: list[float]) -> None:
    tokens = RecentMap[int, int](60)
    for i in range(caching.MAX_ENTRIES + 10):
        tokens.get(i, lambda i=i: i)
    assert len(tokens._values) <= caching.MAX_ENTRIES


def test_the_widget_body_is_built_again_only_when_the_tag_moves() -> None:
    built: list[str] = []

    def build(text: str):
        def make() -> bytes:
            built.append(text)
            return text.encode()

        return make

    widgets = WidgetList(1.0)
    assert widgets.body("t1", build("a")) == b"a"
    assert widgets.body("t1", build("b")) == b"a"
    assert widgets.body("t2", build("c")) == b"c"
    assert built == ["a", "c"]
