"""Dynamic batching: requests for the same version wait in a queue at most ``max_queue_delay``
and run as one batch, concatenated along axis 0, of at most ``max_batch_size`` rows; each request
gets exactly its own rows of the outputs back.

Only requests whose inputs agree on everything but the first axis (dtype and the other
dimensions) go into one batch: each such shape has its own queue. A queue is dispatched when it
holds ``max_batch_size`` rows, or when its oldest request has waited ``max_queue_delay`` and an
inference thread is free; while every thread is busy, requests keep joining the queue (up to
``max_batch_size``), so batches grow with the load instead of piling up behind each other. A
request larger than ``max_batch_size`` runs alone. Concatenating and splitting happen in the
inference thread, never on the event loop.

A request whose client went away (its future cancelled) is left out of a batch that has not
started, and its rows of a running batch are dropped: the other requests are not affected.
"""

import numpy as np


class BatchRunner:
    """What the inference pool runs for a batch: concatenate, run the session, split."""

    __slots__ = ("session",)

    def __init__(self, session):
        self.session = session

    @property
    def seconds(self):  # the pool's running average, kept on the session
        return self.session.seconds

    @seconds.setter
    def seconds(self, value):
        self.session.seconds = value

    def run(self, parts):
        """``parts``: [(feeds, rows)]; returns one output list per part."""
        if len(parts) == 1:
            return [self.session.run(parts[0][0])]
        names = parts[0][0].keys()
        feeds = {name: np.concatenate([feeds[name] for feeds, _ in parts]) for name in names}
        total = sum(rows for _, rows in parts)
        arrays = self.session.run(feeds)
        for name, array in zip(self.session.output_names, arrays):
            if array.ndim == 0 or array.shape[0] != total:
                raise ValueError(
                    f"output {name!r} has shape {list(array.shape)}, not the batch of {total} rows on its "
                    "first axis; this model cannot be batched (set max_batch_size to 1)"
                )
        results, start = [], 0
        for _, rows in parts:
            results.append([array[start : start + rows] for array in arrays])
            start += rows
        return results


class _Queue:
    __slots__ = ("entries", "rows", "timer", "expired")

    def __init__(self):
        self.entries = []  # (feeds, rows, future)
        self.rows = 0
        self.timer = None
        self.expired = False


class Batcher:
    """One version's queues (event loop only)."""

    def __init__(self, session, pool, loop, *, max_batch_size, max_queue_delay_us, on_batch=None):
        self.runner = BatchRunner(session)
        self.pool = pool
        self.loop = loop
        self.max_batch_size = max_batch_size
        self.delay = max_queue_delay_us / 1e6
        self.on_batch = on_batch  # called with the rows of each batch dispatched
        self.running = 0
        self._queues = {}

    @property
    def limit(self):
        """Batches handed to the pool at once: one per inference thread (the spec may resize it)."""
        return max(1, self.pool.size)

    def submit(self, feeds, rows):
        """A future of the outputs of ``feeds`` (``rows`` on axis 0 of every input)."""
        future = self.loop.create_future()
        if rows == 0 or rows >= self.max_batch_size:
            self._start([(feeds, rows, future)])
            return future
        key = tuple((name, array.dtype.str, array.shape[1:]) for name, array in feeds.items())
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue()
        if queue.rows + rows > self.max_batch_size:  # it would overflow: send what waits first
            self._dispatch(key, queue)
            queue = self._queues[key] = _Queue()
        queue.entries.append((feeds, rows, future))
        queue.rows += rows
        if queue.rows >= self.max_batch_size:
            self._dispatch(key, queue)
        elif queue.timer is None and not queue.expired:
            queue.timer = self.loop.call_later(self.delay, self._expire, key, queue)
        return future

    def _expire(self, key, queue):
        queue.timer = None
        queue.expired = True
        if self.running < self.limit:
            self._dispatch(key, queue)

    def _dispatch(self, key, queue):
        if self._queues.get(key) is queue:
            del self._queues[key]
        if queue.timer is not None:
            queue.timer.cancel()
        entries = [entry for entry in queue.entries if not entry[2].cancelled()]
        if entries:
            self._start(entries)

    def _start(self, entries):
        self.running += 1
        if self.on_batch is not None:
            self.on_batch(sum(rows for _, rows, _ in entries))
        done = self.pool.run(self.runner, [(feeds, rows) for feeds, rows, _ in entries])
        done.add_done_callback(lambda outcome: self._finished(outcome, entries))

    def _finished(self, outcome, entries):
        self.running -= 1
        error = outcome.exception()
        results = None if error is not None else outcome.result()
        for index, (_, _, future) in enumerate(entries):
            if future.cancelled():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(results[index])
        # Queues whose delay ran out while every thread was busy go now, oldest first.
        for key, queue in list(self._queues.items()):
            if self.running >= self.limit:
                break
            if queue.expired:
                self._dispatch(key, queue)
