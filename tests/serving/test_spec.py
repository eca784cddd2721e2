"""The spec's batching settings as berth-serve reads them: a spec it cannot use is refused with a
message naming the setting (the runtime keeps serving its last good spec)."""

import pytest

from serving.spec import BatchingSpec, SpecError, parse_spec

from .conftest import SIGNATURE


def _spec(batching):
    return {
        "model": "digits",
        "deployments": [
            {
                "version": "1",
                "weight": 100,
                "sha256": "a" * 64,
                "artifact_url": "/a/",
                "io_signature": SIGNATURE,
            }
        ],
        "batching": batching,
    }


def test_batching_with_and_without_a_thread_count():
    assert parse_spec(_spec(None)).batching == BatchingSpec(1, 0, None)
    batching = parse_spec(_spec({"max_batch_size": 8, "max_queue_delay_us": 500, "threads": 4})).batching
    assert batching == BatchingSpec(8, 500, 4) and batching.enabled
    assert parse_spec(_spec({"max_batch_size": 1, "max_queue_delay_us": 0, "threads": None})).batching.threads is None


@pytest.mark.parametrize(
    "batching, message",
    [
        ({"max_batch_size": 0}, "'batching.max_batch_size' must be an integer from 1 to 1024"),
        ({"max_batch_size": 2, "max_queue_delay_us": -1}, "'batching.max_queue_delay_us' must be an integer"),
        ({"threads": 0}, "'batching.threads' must be null or an integer from 1 to 64"),
        ({"threads": 65}, "'batching.threads' must be null or an integer from 1 to 64"),
        ({"threads": "4"}, "'batching.threads' must be null or an integer from 1 to 64"),
        ({"threads": True}, "'batching.threads' must be null or an integer from 1 to 64"),
        ([], "'batching' must be an object"),
    ],
)
def test_bad_batching_is_refused_with_a_message_naming_the_setting(batching, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(")):
        parse_spec(_spec(batching))
