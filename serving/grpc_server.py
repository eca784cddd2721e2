"""The gRPC transport: the Open Inference Protocol v2 ``inference.GRPCInferenceService``
(ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer) and the
standard ``grpc.health.v1.Health`` service, on their own port (``--grpc-port``), over the same
inference core as HTTP: same routing and version pinning, size limit, metrics, telemetry and
error kinds (a 400 over HTTP is INVALID_ARGUMENT here, 404 NOT_FOUND, 413 RESOURCE_EXHAUSTED,
503 UNAVAILABLE, 500 INTERNAL, each with the same message).

grpc.aio runs on the server's event loop (uvloop included), so a request does not change
threads until it reaches the inference pool. Messages are ``serving/proto/grpc_predict_v2_pb2``
(``make proto`` regenerates it). ModelInfer takes the request's raw bytes and parses them here:
the endpoint's ``max_request_bytes`` is checked on the message's own size.
"""

import logging
import math

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from . import __version__
from .core import InferenceCore
from .proto import grpc_predict_v2_pb2 as pb
from .protocol import (
    DATATYPE_OF,
    EXTENSIONS,
    BadRequest,
    InvalidInput,
    ServeError,
    TooLarge,
    check_tensor,
    from_bytes,
    from_values,
    nbytes,
)

log = logging.getLogger("berth.serve")

SERVICE = "inference.GRPCInferenceService"
# The largest message gRPC accepts at all; an endpoint's max_request_bytes is checked on top.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}
# Typed contents field of each datatype (FP16 has none: it travels in raw_input_contents).
CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


class GrpcTransport:
    def __init__(self, core: InferenceCore, host, port, request_timeout=60.0):
        self.core = core
        self.host = host
        self.port = port
        self.request_timeout = request_timeout
        self.server = None
        self.health = health.aio.HealthServicer()

    async def start(self):
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 1),  # worker processes (--workers) share the port
                # A connection that has not completed its HTTP/2 handshake in --request-timeout is
                # closed (gRPC's default waits 120 s): silent connections cannot pile up.
                ("grpc.server_handshake_timeout_ms", int(self.request_timeout * 1000)),
            ]
        )
        self.server.add_generic_rpc_handlers((self._handlers(),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        self.port = self.server.add_insecure_port(address)
        await self.server.start()
        await self.update_health()
        log.info("gRPC listening on %s", address)

    async def stop(self, grace):
        if self.server is not None:
            await self.health.enter_graceful_shutdown()
            await self.server.stop(grace)

    async def update_health(self):
        """SERVING once a version is loaded, as /v2/health/ready (for "" and the service)."""
        status = (
            health_pb2.HealthCheckResponse.SERVING if self.core.ready else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", SERVICE):
            await self.health.set(service, status)

    def _handlers(self):
        def unary(behaviour, request_type, deserialize=True):
            return grpc.unary_unary_rpc_method_handler(
                behaviour,
                request_deserializer=request_type.FromString if deserialize else None,
                response_serializer=lambda message: message.SerializeToString(),
            )

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ServerLive": unary(self.server_live, pb.ServerLiveRequest),
                "ServerReady": unary(self.server_ready, pb.ServerReadyRequest),
                "ModelReady": unary(self.model_ready, pb.ModelReadyRequest),
                "ServerMetadata": unary(self.server_metadata, pb.ServerMetadataRequest),
                "ModelMetadata": unary(self.model_metadata, pb.ModelMetadataRequest),
                "ModelInfer": unary(self.model_infer, pb.ModelInferRequest, deserialize=False),
            },
        )

    # --- health and metadata -------------------------------------------------------------------

    async def server_live(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, request, context):
        return pb.ServerReadyResponse(ready=self.core.ready)

    async def server_metadata(self, request, context):
        return pb.ServerMetadataResponse(name="berth", version=__version__, extensions=EXTENSIONS)

    async def model_ready(self, request, context):
        try:
            return pb.ModelReadyResponse(ready=self.core.model_ready(request.name, request.version or None))
        except ServeError as exc:
            await _abort(context, exc)

    async def model_metadata(self, request, context):
        try:
            metadata = self.core.model_metadata(request.name, request.version or None)
        except ServeError as exc:
            await _abort(context, exc)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=metadata["name"],
            versions=metadata["versions"],
            platform=metadata["platform"],
            inputs=[tensor(**t) for t in metadata["inputs"]],
            outputs=[tensor(**t) for t in metadata["outputs"]],
        )

    # --- inference -----------------------------------------------------------------------------

    async def model_infer(self, raw, context):
        try:
            request = pb.ModelInferRequest.FromString(raw)
        except Exception as exc:  # protobuf's DecodeError
            return await _abort(context, BadRequest(f"the message is not a ModelInferRequest ({exc})"))
        try:
            call = self.core.open(request.model_name, request.model_version or None, encoding="grpc")
        except ServeError as exc:
            return await _abort(context, exc)
        error = response = None
        try:
            if len(raw) > call.max_request_bytes:
                raise TooLarge.over(call.max_request_bytes, close=False)
            feeds, wanted = decode_infer(request, call.signature)
            arrays = await call.run(feeds)
            response = encode_infer(call.table.model, call.version, request.id, call.output_names, arrays, wanted)
        except ServeError as exc:
            call.failed(exc)
            error = exc
        except Exception as exc:
            error = call.crashed(exc)
        finally:
            call.release()
        call.finish()
        if error is not None:
            await _abort(context, error)
        return response


async def _abort(context, error):
    await context.abort(CODES.get(error.status, grpc.StatusCode.INTERNAL), error.message)


def decode_infer(request, signature):
    """(feeds, requested output names or None) of a ModelInferRequest, checked against the
    signature like an HTTP request: raw_input_contents (one per input, in order) or typed contents."""
    if not request.inputs:
        raise BadRequest("the request has no inputs")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(
            f"raw_input_contents has {len(raw)} entries but the request has {len(request.inputs)} "
            "inputs; send one per input, in order, or typed contents for all"
        )
    feeds = {}
    for index, tensor in enumerate(request.inputs):
        name = tensor.name
        spec = signature.input_spec(name, feeds)
        shape = list(tensor.shape)
        check_tensor(spec, tensor.datatype, shape)
        if raw:
            if tensor.HasField("contents"):
                raise BadRequest(f"input {name!r} has contents while the request uses raw_input_contents; send one")
            data = raw[index]
            expected = nbytes(spec, shape)
            if len(data) != expected:
                raise InvalidInput(
                    f"input {name!r}: raw_input_contents[{index}] has {len(data)} bytes but its "
                    f"datatype and shape {shape} need {expected}"
                )
            feeds[name] = from_bytes(spec, shape, data)
            continue
        field = CONTENTS.get(spec.datatype)
        if field is None:
            raise BadRequest(f"input {name!r}: {spec.datatype} has no typed contents; send raw_input_contents")
        values = getattr(tensor.contents, field)
        expected = math.prod(shape)
        if len(values) != expected:
            raise InvalidInput(
                f"input {name!r}: contents.{field} has {len(values)} values but shape {shape} needs {expected}"
            )
        feeds[name] = from_values(spec, values).reshape(shape)
    signature.check_complete(feeds)
    wanted = None
    if request.outputs:
        wanted = []
        for output in request.outputs:
            signature.check_output(output.name)
            wanted.append(output.name)
    return feeds, wanted


def encode_infer(model, version, request_id, names, arrays, wanted):
    """A ModelInferResponse with every (wanted) output in raw_output_contents, as Triton answers."""
    response = pb.ModelInferResponse(model_name=model, model_version=version, id=request_id)
    for name, array in zip(names, arrays):
        if wanted is not None and name not in wanted:
            continue
        datatype = DATATYPE_OF.get(array.dtype)
        if datatype is None:
            raise ServeError(f"output {name!r} has dtype {array.dtype}, which the protocol does not carry")
        response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        response.raw_output_contents.append(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes())
    return response
