"""The inference thread pool: onnxruntime runs here, off the event loop (except a request alone
in the runtime on a model faster than core.INLINE_SECONDS, which the core runs inline).

Lighter than ``loop.run_in_executor``: jobs go through a SimpleQueue, and a worker that finds
more jobs waiting takes several at once and hands all their results back to the loop with a
single wake-up. For a model that runs in ~10 µs, waking threads costs more than the inference
itself, so this halves the CPU a request costs. A worker only takes more jobs while their
expected run time (a running estimate per session) stays under BATCH_BUDGET, so slow models still
spread over all threads and one slow job never waits behind many.

That expected run time is ``typical_seconds``'s running estimate, which one run the OS preempted
(tens of ms on a loaded machine) moves by a tenth at most: with a plain running average, such
outliers made a 0.9 ms model (bench/serving_dataplane.py's) look slower than core.INLINE_SECONDS,
and 86 of 300 requests alone in the runtime took the hop through the pool (which costs more than
it saves) instead of running inline; with this estimate, none did.
"""

import queue
import threading
import time

BATCH_BUDGET = 0.001  # seconds of expected inference a worker takes in one go
_STOP = object()


class InferencePool:
    def __init__(self, threads, name="berth-infer"):
        self.size = threads
        self._queue = queue.SimpleQueue()
        self._loop = None
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(threads)]
        self._started = False

    def start(self, loop):
        self._loop = loop
        for thread in self._threads:
            thread.start()
        self._started = True

    def run(self, session, feeds):
        """An asyncio future of ``session.run(feeds)`` (call from the event loop)."""
        future = self._loop.create_future()
        self._queue.put((session, feeds, future))
        return future

    def shutdown(self, timeout=10.0):
        if not self._started:
            return
        for _ in self._threads:
            self._queue.put(_STOP)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._started = False

    def _work(self):
        take, take_now, clock = self._queue.get, self._queue.get_nowait, time.perf_counter
        deliver = self._loop.call_soon_threadsafe
        while True:
            job = take()
            if job is _STOP:
                return
            jobs = [job]
            budget = BATCH_BUDGET - job[0].seconds
            while budget > 0:
                try:
                    job = take_now()
                except queue.Empty:
                    break
                if job is _STOP:
                    self._queue.put(_STOP)  # for this thread's next turn
                    break
                jobs.append(job)
                budget -= job[0].seconds
            results = []
            for session, feeds, future in jobs:
                started = clock()
                try:
                    results.append((future, session.run(feeds), None))
                except BaseException as exc:  # handed to the request, which answers 500
                    results.append((future, None, exc))
                session.seconds = typical_seconds(session.seconds, clock() - started)
            deliver(_resolve, results)


def typical_seconds(estimate, sample):
    """The running estimate of a session's inference time (s) after one more run of ``sample``
    seconds: a tenth of the way toward it, but never by more than a tenth of the estimate (plus
    10 µs, so that it leaves 0), up or down."""
    limit = estimate * 0.1 + 1e-5
    return estimate + min(limit, max(-limit, (sample - estimate) * 0.1))


def _resolve(results):
    for future, value, error in results:
        if future.cancelled():
            continue
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)
