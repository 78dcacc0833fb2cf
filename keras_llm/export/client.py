"""Requests to and responses from TF Serving, over REST (JSON) and gRPC (protos).

The functions that build and parse messages are pure (no network), so they are tested
against a loaded SavedModel; `send_rest` and `send_grpc` are the thin network calls that
`examples/serving/rest_client.py` and `grpc_client.py` wrap.

REST rules followed (TF Serving's RESTful API): a Python `str` is sent as a JSON string
(UTF-8 text), `bytes` as `{"b64": "<base64>"}` (the only safe form for bytes that are not
UTF-8); the row format (`"instances"`) needs every input to have the same batch size, so a
scalar input such as GPT's `max_new_tokens` needs the columnar format (`"inputs"`).

Example:
>>> request = make_rest_request({"text": ["a fine film", "dull"]}, format="row")
>>> request["instances"]
[{'text': 'a fine film'}, {'text': 'dull'}]
>>> make_rest_request({"text": [b"\\xff"]}, format="columnar")["inputs"]
{'text': [{'b64': '/w=='}]}
>>> parse_rest_response({"predictions": [{"label_ids": 1}, {"label_ids": 0}]})
{'label_ids': array([1, 0])}
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tensorflow_serving.apis import predict_pb2

ROW_FORMAT = "row"
COLUMNAR_FORMAT = "columnar"


class ServingError(RuntimeError):
    """The model server answered with an error (its message is kept).

    Example:
    >>> try:
    ...     parse_rest_response({"error": "Missing 'text' in the request"})
    ... except ServingError as error:
    ...     print(error)
    Missing 'text' in the request
    """


# --- REST ----------------------------------------------------------------------------------


def rest_url(model_name: str, host: str = "localhost", port: int = 8501,
             version: int | None = None, verb: str = "predict") -> str:
    """`http://host:port/v1/models/<name>[/versions/<v>]:<verb>`.

    >>> rest_url("classifier")
    'http://localhost:8501/v1/models/classifier:predict'
    """
    path = f"v1/models/{model_name}" + (f"/versions/{version}" if version is not None else "")
    return f"http://{host}:{port}/{path}:{verb}"


def _json_value(value: Any) -> Any:
    """Numpy / bytes -> JSON-ready values; bytes become `{"b64": ...}`."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OSU":
            return [_json_value(v) for v in value.tolist()]
        return value.tolist()
    if isinstance(value, np.generic):
        return _json_value(value.item())
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


def _batch_size(name: str, value: Any) -> int:
    if isinstance(value, (str, bytes)) or np.ndim(value) == 0:
        raise ValueError(
            f"Input {name!r} is a scalar: the row format ('instances') stacks one value per "
            "row, so scalar inputs need the columnar format ('inputs').")
    return len(value)


def make_rest_request(inputs: Mapping[str, Any], signature_name: str = "serving_default",
                      format: str = ROW_FORMAT) -> dict:  # noqa: A002 - TF Serving's word
    """A TF Serving `:predict` JSON body, row (`instances`) or columnar (`inputs`) format.

    Args:
        inputs: input name -> a list / array over the batch (or a scalar, columnar only).
        signature_name: the SavedModel signature to call.
        format: `"row"` or `"columnar"`.
    """
    body: dict[str, Any] = {"signature_name": signature_name}
    if format == COLUMNAR_FORMAT:
        body["inputs"] = {name: _json_value(value) for name, value in inputs.items()}
        return body
    if format != ROW_FORMAT:
        raise ValueError(f"format must be {ROW_FORMAT!r} or {COLUMNAR_FORMAT!r}; got {format!r}.")
    sizes = {name: _batch_size(name, value) for name, value in inputs.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"Row format needs one batch size for every input; got {sizes}.")
    count = next(iter(sizes.values()), 0)
    body["instances"] = [
        {name: _json_value(value[i]) for name, value in inputs.items()} for i in range(count)
    ]
    return body


def _from_json(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _array(value: Any) -> np.ndarray:
    value = _from_json(value)
    array = np.asarray(value)
    if array.dtype.kind in "SU":  # Keep strings as Python objects (str or bytes).
        array = np.asarray(value, dtype=object)
    return array


def parse_rest_response(body: Mapping[str, Any] | str | bytes) -> dict[str, np.ndarray]:
    """A `:predict` JSON response -> output name -> array.

    Row-format responses (`predictions`) are stacked over rows; a signature with one output
    comes back without names from TF Serving and is returned under the key `"output"`.
    String outputs are `str` (or `bytes` when the server sent `{"b64": ...}`).
    """
    if isinstance(body, (str, bytes)):
        body = json.loads(body)
    if "error" in body:
        raise ServingError(body["error"])
    if "predictions" in body:
        rows = body["predictions"]
        if rows and isinstance(rows[0], dict):
            return {name: _array([row[name] for row in rows]) for name in rows[0]}
        return {"output": _array(rows)}
    if "outputs" in body:
        outputs = body["outputs"]
        if isinstance(outputs, dict):
            return {name: _array(value) for name, value in outputs.items()}
        return {"output": _array(outputs)}
    raise ValueError(f"Not a TF Serving predict response: keys {sorted(body)}.")


def send_rest(url: str, body: Mapping[str, Any], timeout: float = 30.0) -> dict:
    """POSTs `body` as JSON to `url` and returns the decoded JSON answer.

    Raises `ServingError` with the server's message for an HTTP error, and with the
    reason when no server answers (refused connection, unknown host, time-out).
    """
    request = urllib.request.Request(
        url, data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as error:
        detail = error.read().decode("utf-8", errors="replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except json.JSONDecodeError:
            pass
        raise ServingError(f"HTTP {error.code} from {url}: {detail}") from error
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise ServingError(
            f"No answer from {url} ({reason}). Is the model server running, with its REST port "
            "(--rest_api_port, 8501 by default) published on that host?") from error


# --- gRPC ----------------------------------------------------------------------------------


def _numpy_input(value: Any) -> np.ndarray:
    """Python / numpy values -> arrays with the dtypes keras-llm signatures take."""
    if isinstance(value, str):
        return np.asarray(value.encode("utf-8"), dtype=object)
    if isinstance(value, bytes):
        return np.asarray(value, dtype=object)
    array = np.asarray(value)
    if array.dtype.kind in "OSU":
        flat = [v.encode("utf-8") if isinstance(v, str) else v for v in array.ravel().tolist()]
        return np.asarray(flat, dtype=object).reshape(array.shape)
    # JSON-like Python ints / floats become the signatures' int32 / float32.
    if array.dtype.kind in "iu":
        return array.astype(np.int32)
    if array.dtype.kind == "f":
        return array.astype(np.float32)
    return array


def make_predict_request(inputs: Mapping[str, Any], model_name: str = "model",
                         signature_name: str = "serving_default",
                         version: int | None = None) -> predict_pb2.PredictRequest:
    """A `tensorflow_serving.apis.predict_pb2.PredictRequest` for `inputs`.

    Strings are sent as UTF-8 bytes (`DT_STRING`), integers as int32, floats as float32.

    >>> request = make_predict_request({"text": ["fine"]}, model_name="classifier")
    >>> request.model_spec.name, request.inputs["text"].string_val
    ('classifier', [b'fine'])
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(_numpy_input(value)))
    return request


def parse_predict_response(response: predict_pb2.PredictResponse) -> dict[str, np.ndarray]:
    """A `PredictResponse` -> output name -> numpy array (strings as `bytes`)."""
    import tensorflow as tf

    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def send_grpc(target: str, request: predict_pb2.PredictRequest,
              timeout: float = 30.0) -> predict_pb2.PredictResponse:
    """Sends `request` to a model server's gRPC port (e.g. `"localhost:8500"`)."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            return stub.Predict(request, timeout=timeout)
        except grpc.RpcError as error:
            raise ServingError(f"gRPC {error.code().name} from {target}: {error.details()}") \
                from error
