"""Batching concurrent requests into one session.run, and the counters /health and /metadata show
(see kerastk.deploy.serve's docstring for when batching helps)."""
import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class Job:
    __slots__ = ("feed", "rows", "key", "future")

    def __init__(self, feed, rows, future):
        self.feed = feed
        self.rows = rows
        self.key = tuple((a.shape[1:], a.dtype.str) for a in feed.values())
        self.future = future


class Batcher:
    """Merges queued requests into one session.run (see the module docstring)."""

    def __init__(self, session, stats, max_rows: int, wait_ms: float):
        self.session = session
        self.stats = stats
        self.max_rows = max_rows
        self.wait_s = wait_ms / 1e3
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kerastk-serve")
        self._loop = self._queue = self._task = self._carry = None

    def _ensure_started(self):
        # One worker per event loop (a TestClient without `with` runs each request in a fresh loop).
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop, self._queue, self._carry = loop, asyncio.Queue(), None
            self._task = loop.create_task(self._worker())
        return loop

    async def submit(self, feed: dict, rows: int) -> list:
        loop = self._ensure_started()
        job = Job(feed, rows, loop.create_future())
        self._queue.put_nowait(job)
        return await job.future

    async def _worker(self):
        loop = asyncio.get_running_loop()
        while True:
            job, self._carry = self._carry or await self._queue.get(), None
            batch, rows = [job], job.rows
            deadline = loop.time() + self.wait_s
            while rows < self.max_rows:
                try:
                    nxt = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        nxt = await asyncio.wait_for(self._queue.get(), left)
                    except asyncio.TimeoutError:
                        break
                if rows + nxt.rows > self.max_rows:
                    self._carry = nxt
                    break
                batch.append(nxt)
                rows += nxt.rows
            try:
                await self._run(batch)
            except Exception as exc:  # never let the worker die: fail this round's requests instead
                for j in batch:
                    if not j.future.done():
                        j.future.set_exception(exc)

    async def _session_run(self, feed):
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.session.run, None, feed)

    async def _run(self, batch):
        groups = {}
        for job in batch:
            groups.setdefault(job.key, []).append(job)
        for jobs in groups.values():
            live = [j for j in jobs if not j.future.done()]  # a client that went away is not run
            results = await self._run_group(live) if live else []
            for job, result in zip(live, results):
                if job.future.done():
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

    async def _run_group(self, jobs):
        if len(jobs) > 1:
            total = sum(j.rows for j in jobs)
            feed = {name: np.concatenate([j.feed[name] for j in jobs]) for name in jobs[0].feed}
            try:
                outputs = await self._session_run(feed)
            except Exception:
                outputs = None  # re-run each request alone so only the bad one fails
            ok = outputs is not None and all(o.ndim >= 1 and o.shape[0] == total for o in outputs)
            if ok:
                self.stats.record_run(len(jobs), total)
            else:  # counted apart: the requests are counted once, by their own runs below
                self.stats.failed_merged_runs += 1
            if ok:
                bounds = np.cumsum([0] + [j.rows for j in jobs])
                return [[o[a:b] for o in outputs] for a, b in zip(bounds[:-1], bounds[1:])]
        results = []
        for job in jobs:
            try:
                results.append(await self._session_run(job.feed))
            except Exception as exc:
                results.append(exc)
            self.stats.record_run(1, job.rows)
        return results


class Stats:
    """Counters shown by /health and /metadata (updated from the event loop thread only)."""

    def __init__(self):
        self.requests = self.rows = self.session_runs = self.merged_runs = 0
        self.largest_run_requests = self.largest_run_rows = 0
        self.client_errors = self.server_errors = self.in_flight = 0
        self.failed_merged_runs = 0

    def record_run(self, requests: int, rows: int):
        self.session_runs += 1
        self.requests += requests
        self.rows += rows
        self.merged_runs += requests > 1
        self.largest_run_requests = max(self.largest_run_requests, requests)
        self.largest_run_rows = max(self.largest_run_rows, rows)

    def to_dict(self) -> dict:
        return dict(vars(self))
