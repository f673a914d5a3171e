"""A burst of costly steps takes turns: the rest of the server runs between them."""
from __future__ import annotations

import asyncio
import time

from jupyter_bai.engine.turns import Turns


def _busy(ms: float) -> None:
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


async def _burst(turns: Turns | None, n: int = 20) -> tuple[int, list[int]]:
    """Start ``n`` steps at once, and a timer due at once: how many steps ran before it."""
    done: list[int] = []

    async def step(i: int) -> None:
        if turns is None:
            _busy(1)
            done.append(i)
            return
        async with turns.turn():
            _busy(1)
            done.append(i)

    tasks = [asyncio.create_task(step(i)) for i in range(n)]
    fired = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0, lambda: fired.set_result(len(done)))
    before = await fired
    await asyncio.gather(*tasks)
    return before, done


def test_without_turns_a_burst_runs_in_one_stretch() -> None:
    before, _ = asyncio.run(_burst(None))
    assert before == 20  # what the event loop did before: the timer waited for all of them


def test_with_turns_the_loop_serves_others_between_steps_in_arrival_order() -> None:
    before, done = asyncio.run(_burst(Turns()))
    assert before <= 2
    assert done == list(range(20))


def test_a_cancelled_waiter_does_not_block_the_next() -> None:
    async def main() -> list[str]:
        turns, seen = Turns(), []

        async def step(name: str) -> None:
            async with turns.turn():
                seen.append(name)

        first = asyncio.create_task(step("a"))
        second = asyncio.create_task(step("b"))
        third = asyncio.create_task(step("c"))
        await asyncio.sleep(0)
        second.cancel()
        await asyncio.gather(first, third, second, return_exceptions=True)
        return seen

    assert asyncio.run(main()) == ["a", "c"]
