"""The inference thread pool: onnxruntime runs here, off the event loop (except a request alone
in the runtime on a model faster than core.INLINE_SECONDS, which the core runs inline).

Lighter than ``loop.run_in_executor``: jobs go through a SimpleQueue, and a worker that finds
more jobs waiting takes several at once and hands all their results back to the loop with a
single wake-up. For a model that runs in ~10 µs, waking threads costs more than the inference
itself, so this halves the CPU a request costs. A worker only takes more jobs while their
expected run time (an average per session) stays under BATCH_BUDGET, so slow models still
spread over all threads and one slow job never waits behind many.
"""

import queue
import threading
import time

BATCH_BUDGET = 0.001  # seconds of expected inference a worker takes in one go
_STOP = object()


class InferencePool:
    def __init__(self, threads, name="berth-infer"):
        self.size = threads
        self.name = name
        self._queue = queue.SimpleQueue()
        self._loop = None
        self._made = 0  # threads made so far (their names' numbers)
        self._threads = [self._thread() for _ in range(threads)]
        self._started = False

    def _thread(self):
        self._made += 1
        return threading.Thread(target=self._work, name=f"{self.name}-{self._made - 1}", daemon=True)

    def start(self, loop):
        self._loop = loop
        for thread in self._threads:
            thread.start()
        self._started = True

    def resize(self, threads):
        """Run on ``threads`` threads from now on (event loop; the spec's batching.threads): new
        ones start at once, surplus ones stop after the jobs in their hands."""
        if threads < 1:
            raise ValueError("an inference pool needs at least one thread")
        if threads > self.size:
            added = [self._thread() for _ in range(threads - self.size)]
            if self._started:
                for thread in added:
                    thread.start()
            self._threads += added
        elif threads < self.size:
            if self._started:
                for _ in range(self.size - threads):
                    self._queue.put(_STOP)  # taken by whichever threads come for work next
            else:
                del self._threads[threads:]
        self.size = threads
        self._threads = [t for t in self._threads if not self._started or t.is_alive()]

    def run(self, session, feeds):
        """An asyncio future of ``session.run(feeds)`` (call from the event loop)."""
        future = self._loop.create_future()
        self._queue.put((session, feeds, future))
        return future

    def shutdown(self, timeout=10.0):
        if not self._started:
            return
        for _ in range(self.size):  # threads stopping after a resize have their _STOP already
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
                # A running average of the session's inference time, for the batch budget.
                session.seconds += (clock() - started - session.seconds) * 0.1
            deliver(_resolve, results)


def _resolve(results):
    for future, value, error in results:
        if future.cancelled():
            continue
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)
