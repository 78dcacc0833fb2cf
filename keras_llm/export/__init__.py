"""SavedModel export for TF Serving, and TF Serving request/response helpers.

`export_saved_model` writes TF Serving's versioned layout with string-input signatures that
tokenize in the graph; `python -m keras_llm.export` does the same from a `.keras` file.
"""

from keras_llm.export.client import (
    ServingError,
    make_predict_request,
    make_rest_request,
    parse_predict_response,
    parse_rest_response,
    rest_url,
    send_grpc,
    send_rest,
)
from keras_llm.export.saved_model import (
    DEFAULT_SIGNATURE,
    TOKEN_IDS_SIGNATURE,
    WARMUP_FILE,
    ExportError,
    export_saved_model,
    next_version,
)

__all__ = [
    "DEFAULT_SIGNATURE",
    "TOKEN_IDS_SIGNATURE",
    "WARMUP_FILE",
    "ExportError",
    "ServingError",
    "export_saved_model",
    "make_predict_request",
    "make_rest_request",
    "next_version",
    "parse_predict_response",
    "parse_rest_response",
    "rest_url",
    "send_grpc",
    "send_rest",
]
