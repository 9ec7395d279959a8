"""Webhook events (Replicate's ``start``, ``logs``, ``output``, ``completed``) on the server's
sender: the subscription's filter, one series' order, the throttle before the final event,
and retries for the final one only."""

from __future__ import annotations

import asyncio
from typing import Any

from sdworker.server.webhooks import WebhookSender


class Receiver:
    """Records posts; the first post of a body with ``slow`` set waits to be let go, so a
    later one could overtake it; ``codes`` answers in turn (then 200)."""

    def __init__(self, codes: list[int] | None = None) -> None:
        self.codes = codes or []
        self.calls: list[dict[str, Any]] = []
        self.release = asyncio.Event()

    async def __call__(self, url: str, body: dict[str, Any]) -> int:
        if body.get("slow"):
            await self.release.wait()
        self.calls.append(body)
        return self.codes.pop(0) if self.codes else 200


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _sender(receiver: Receiver, clock: Clock, retries: int = 2) -> WebhookSender:
    return WebhookSender(
        retries=retries, interval_s=0.0, poster=receiver, event_interval_s=0.5, clock=clock
    )


def test_only_the_wanted_events_are_sent() -> None:
    async def main() -> list[str]:
        receiver, clock = Receiver(), Clock()
        sender = _sender(receiver, clock)
        wanted = ("start", "completed")
        for event in ("start", "logs", "output", "completed"):
            clock.now += 1
            sender.send("http://h/", {"event": event}, event=event, wanted=wanted, key="p")
        await asyncio.sleep(0)
        await asyncio.wait(set(sender._tasks))
        return [c["event"] for c in receiver.calls]

    assert asyncio.run(main()) == ["start", "completed"]


def test_a_series_arrives_in_order_even_when_a_post_is_slow() -> None:
    async def main() -> list[str]:
        receiver, clock = Receiver(), Clock()
        sender = _sender(receiver, clock)
        sender.send("http://h/", {"event": "start", "slow": True}, event="start", key="p")
        clock.now += 1
        done = sender.send("http://h/", {"event": "completed"}, event="completed", key="p")
        other = sender.send("http://h/", {"event": "other"}, key="q")  # another series
        assert other is not None and await other
        assert receiver.calls == [{"event": "other"}]
        receiver.release.set()
        assert done is not None and await done
        return [c["event"] for c in receiver.calls]

    assert asyncio.run(main()) == ["other", "start", "completed"]


def test_events_before_the_final_one_are_throttled_and_tried_once() -> None:
    async def main() -> tuple[list[str], int]:
        receiver, clock = Receiver(codes=[200, 503, 503, 200]), Clock()
        sender = _sender(receiver, clock)
        sent = [sender.send("http://h/", {"event": "start"}, event="start", key="p")]
        clock.now += 0.2
        throttled = sender.send("http://h/", {"event": "logs"}, event="logs", key="p")
        clock.now += 0.4
        sent.append(sender.send("http://h/", {"event": "logs"}, event="logs", key="p"))  # 503
        clock.now += 0.1  # never throttled, retried after its 503
        sent.append(sender.send("http://h/", {"event": "completed"}, event="completed", key="p"))
        results = [await task for task in sent if task is not None]
        assert throttled is None and results == [True, False, True]
        return [c["event"] for c in receiver.calls], len(sender._chains)

    events, series = asyncio.run(main())
    assert events == ["start", "logs", "completed", "completed"]
    assert series == 0  # the final event ends the series


def test_a_filtered_final_event_still_ends_the_series() -> None:
    async def main() -> int:
        receiver, clock = Receiver(), Clock()
        sender = _sender(receiver, clock)
        task = sender.send("http://h/", {}, event="start", wanted=("start",), key="p")
        assert task is not None and await task
        assert sender.send("http://h/", {}, event="completed", wanted=("start",), key="p") is None
        return len(sender._chains)

    assert asyncio.run(main()) == 0


def test_plain_sends_are_as_before() -> None:
    async def main() -> int:
        receiver = Receiver(codes=[500])
        sender = WebhookSender(retries=1, interval_s=0.0, poster=receiver)
        task = sender.send("http://h/", {"id": "j"})
        assert task is not None and await task
        return len(receiver.calls)

    assert asyncio.run(main()) == 2
