"""The few lines MLServer needs to serve an ONNX file (bench/serving_dataplane.py): decode the
input with MLServer's NumpyCodec, run onnxruntime, encode the output. Runs inside MLServer's
own virtual environment (MLSERVER_VENV), never imported by Berth."""

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxModel(MLModel):
    async def load(self):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.settings.parameters.uri, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        (y,) = self.session.run([self.output_name], {self.input_name: x})
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output(self.output_name, y)])
