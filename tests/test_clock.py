import asyncio

import pytest

from llmos.clock import Clock, FakeClock, SystemClock


def test_protocols():
    assert isinstance(SystemClock(), Clock) and isinstance(FakeClock(), Clock)


async def test_fake_sleep_waits_for_advance():
    clock = FakeClock()
    woke = []

    async def sleeper(d):
        await clock.sleep(d)
        woke.append(d)

    tasks = [asyncio.create_task(sleeper(d)) for d in (5, 1, 3)]
    await asyncio.sleep(0)
    clock.advance(2)
    await asyncio.sleep(0)
    assert woke == [1]
    clock.advance(10)
    await asyncio.gather(*tasks)
    assert woke == [1, 3, 5]
    assert clock.monotonic() == 12


def test_fake_clock_never_goes_back():
    with pytest.raises(ValueError):
        FakeClock().advance(-1)
