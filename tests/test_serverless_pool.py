"""The pool's rule for a burst of calls: with every warm worker busy, a call waits for whichever is free first (a
busy worker usually frees long before a model loads) while one more worker loads in the background for the next
burst; only a service with nothing warm makes a call wait for a load. Workers here are stand-ins whose load
takes LOAD seconds (the real ones: tests/test_serverless_engine.py)."""

from __future__ import annotations

import asyncio

from reeflab.oscar_engine.pool import Worker, WorkerPool, WorkerSpec

LOAD = 1.0


class Running:
    returncode = None


class LoadingPool(WorkerPool):
    starts = 0

    async def _start(self, spec: WorkerSpec) -> Worker:
        worker = Worker(spec)
        self.workers.append(worker)
        self.starts += 1
        await asyncio.sleep(LOAD)  # the module loading
        worker.proc, worker.ready = Running(), True
        return worker


def test_a_call_waits_for_a_busy_worker_not_for_a_load(tmp_path):
    async def burst() -> None:
        loop = asyncio.get_running_loop()
        pool = LoadingPool(tmp_path, {}, max_workers=4, start_timeout=10, sandbox=None)
        spec = WorkerSpec(service="detect", version="1", max_scale=2)
        began = loop.time()
        first = await pool._acquire(spec)  # nothing warm: the first call waits for the load
        assert loop.time() - began >= LOAD and pool.starts == 1

        began = loop.time()
        waiting = asyncio.ensure_future(pool._acquire(spec))
        await asyncio.sleep(0.1)
        assert pool.starts == 2  # one more loads in the background meanwhile
        pool._release(first)  # the busy worker frees (a 0.1 s predict)
        assert await waiting is first and loop.time() - began < LOAD / 2

        await asyncio.sleep(LOAD)  # the next burst finds two warm workers
        pool._release(first)
        assert len(pool.workers) == 2 and all(w.ready and not w.busy for w in pool.workers)
        a, b = await pool._acquire(spec), await pool._acquire(spec)
        assert a is not b and pool.starts == 2  # served at once, nothing loaded
        # at max_scale a burst waits for a free worker and loads nothing more
        third = asyncio.ensure_future(pool._acquire(spec))
        await asyncio.sleep(0.1)
        assert not third.done() and pool.starts == 2
        pool._release(a)
        assert await third is a

    asyncio.run(burst())
