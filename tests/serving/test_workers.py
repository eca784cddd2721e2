"""Several worker processes on one port (--workers): each serves, /metrics adds them up."""

import http.client
import json

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from .conftest import deployment, infer_body, make_spec, write_bundle


def test_it_serves_from_several_workers_and_sums_their_metrics(serve, digits, tmp_path):
    model = digits["models"]["1"]
    write_bundle(tmp_path / "bundle", make_spec([deployment("1", model)]), [model])
    process = serve("--bundle", tmp_path / "bundle", "--workers", "2", "--threads", "1")
    assert "(2 worker(s), 1 inference thread(s) each)" in process.log()
    body = json.dumps(infer_body(digits["x"][:1]))
    for _ in range(40):  # a new connection each time, so that both workers take some
        connection = http.client.HTTPConnection("127.0.0.1", process.port, timeout=10)
        connection.request("POST", "/v2/models/digits/infer", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200
        np.testing.assert_array_equal(
            np.array(json.loads(response.read())["outputs"][0]["data"], np.float32),
            model.run(x=digits["x"][:1])[0].ravel(),
        )
        connection.close()
    status, text = process.client.get("/metrics")
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert sum(s.value for s in families["berth_requests"].samples if s.name == "berth_requests_total") == 40
    assert process.stop() in (0, -15)
