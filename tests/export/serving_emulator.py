"""What TF Serving's model server does with a request, in Python, on a loaded SavedModel.

No model-server binary can be installed here, so the tests call the signature the way the
server would: REST bodies are decoded following TF Serving's RESTful API rules (row format
`instances`, columnar format `inputs`, `{"b64": ...}` for binary strings, values cast to the
signature's dtypes) and the response is encoded as the server encodes it (`predictions` for
the row format, `outputs` for the columnar one; a single output is not named; string outputs
whose name ends in `_bytes` are base64-encoded). gRPC requests go through proto serialization.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2


def _decode_json(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode_json(v) for v in value]
    if isinstance(value, str):
        return value.encode("utf-8")
    return value


def _tensor(value: Any, spec: tf.TensorSpec) -> tf.Tensor:
    if spec.dtype == tf.string:
        return tf.constant(np.array(_decode_json(value), dtype=object), tf.string)
    return tf.constant(np.array(value, dtype=spec.dtype.as_numpy_dtype))


def _encode_json(name: str, value: np.ndarray) -> Any:
    if value.dtype == object:
        def encode(item):
            if isinstance(item, list):
                return [encode(i) for i in item]
            if name.endswith("_bytes"):
                return {"b64": base64.b64encode(item).decode("ascii")}
            return item.decode("utf-8")
        return encode(value.tolist())
    return value.tolist()


def rest_predict(loaded, body: dict | str) -> dict:
    """A `:predict` call: JSON body (dict or text) -> JSON response (dict), like the server."""
    body = json.loads(body) if isinstance(body, str) else json.loads(json.dumps(body))
    name = body.get("signature_name", "serving_default")
    if name not in loaded.signatures:
        return {"error": f"Serving signature name: \"{name}\" not found in signature def"}
    function = loaded.signatures[name]
    specs = function.structured_input_signature[1]
    row_format = "instances" in body
    if row_format:
        rows = body["instances"]
        if rows and not isinstance(rows[0], dict):
            rows = [{next(iter(specs)): row} for row in rows]
        given = {key for row in rows for key in row}
        inputs = {key: [row.get(key) for row in rows] for key in given}
    else:
        inputs = body["inputs"]
        if not isinstance(inputs, dict):
            inputs = {next(iter(specs)): inputs}
    if set(inputs) != set(specs):
        return {"error": f"inputs {sorted(inputs)} do not match the signature {sorted(specs)}"}
    try:
        outputs = function(**{key: _tensor(value, specs[key]) for key, value in inputs.items()})
    except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
        return {"error": getattr(error, "message", str(error))}
    outputs = {key: value.numpy() for key, value in outputs.items()}
    if row_format:
        count = len(next(iter(outputs.values())))
        if len(outputs) == 1:
            (key, value), = outputs.items()
            predictions = [_encode_json(key, value[i:i + 1])[0] for i in range(count)]
        else:
            predictions = [{key: _encode_json(key, value[i:i + 1])[0]
                            for key, value in outputs.items()} for i in range(count)]
        response = {"predictions": predictions}
    elif len(outputs) == 1:
        (key, value), = outputs.items()
        response = {"outputs": _encode_json(key, value)}
    else:
        response = {"outputs": {key: _encode_json(key, value) for key, value in outputs.items()}}
    return json.loads(json.dumps(response))  # What goes over the wire is JSON.


def grpc_predict(loaded, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    """A `PredictionService.Predict` call, request and response serialized as on the wire."""
    request = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    function = loaded.signatures[request.model_spec.signature_name or "serving_default"]
    specs = function.structured_input_signature[1]
    inputs = {}
    for key, proto in request.inputs.items():
        if key not in specs:
            raise ValueError(f"input {key!r} is not in the signature")
        if tf.dtypes.as_dtype(proto.dtype) != specs[key].dtype:
            raise ValueError(f"input {key!r}: expects {specs[key].dtype.name}")
        inputs[key] = tf.constant(tf.make_ndarray(proto), specs[key].dtype)
    outputs = function(**inputs)
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    for key, value in outputs.items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
    return predict_pb2.PredictResponse.FromString(response.SerializeToString())
