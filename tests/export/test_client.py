"""Requests built by `keras_llm.export.client`, served the way TF Serving would serve them."""

from __future__ import annotations

import numpy as np
import pytest

from keras_llm.export import client
from tests.export.serving_emulator import grpc_predict, rest_predict

TEXTS = ["a gripping, beautiful film.", "dull and far too long.", ""]


@pytest.mark.parametrize("format", ["row", "columnar"])
def test_rest_formats(classifier_export, format):
    expected = classifier_export.signature()(text=np.array(TEXTS, object))
    body = client.make_rest_request({"text": TEXTS}, format=format)
    response = rest_predict(classifier_export.loaded, body)
    assert ("predictions" if format == "row" else "outputs") in response
    outputs = client.parse_rest_response(response)
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], atol=1e-6)
    assert outputs["label_names"].tolist() == [n.decode() for n in expected["label_names"].numpy()]
    assert outputs["label_ids"].tolist() == expected["label_ids"].numpy().tolist()


def test_rest_token_ids_signature_and_pairs(pair_regression_export):
    pre = pair_regression_export.preprocessor
    ids = {k: np.asarray(v, np.int32) for k, v in pre((TEXTS, TEXTS[::-1])).items()}
    body = client.make_rest_request(ids, signature_name="token_ids", format="row")
    from_ids = client.parse_rest_response(rest_predict(pair_regression_export.loaded, body))
    body = client.make_rest_request({"text": TEXTS, "text_pair": TEXTS[::-1]}, format="row")
    from_text = client.parse_rest_response(rest_predict(pair_regression_export.loaded, body))
    np.testing.assert_allclose(from_ids["predictions"], from_text["predictions"], atol=1e-6)
    assert from_text["predictions"].shape == (3,)


def test_rest_binary_strings_use_b64(classifier_export):
    body = client.make_rest_request({"text": [b"caf\xc3\xa9", b"\xff\xfe bad"]}, format="row")
    assert body["instances"][0] == {"text": {"b64": "Y2Fmw6k="}}
    response = rest_predict(classifier_export.loaded, body)
    assert "not valid UTF-8" in response["error"]
    with pytest.raises(client.ServingError, match="not valid UTF-8"):
        client.parse_rest_response(response)


def test_rest_generation_needs_columnar(gpt_export):
    with pytest.raises(ValueError, match="columnar"):
        client.make_rest_request({"prompt": ["Hi"], "max_new_tokens": 3}, format="row")
    body = client.make_rest_request({"prompt": ["Hello", "The quick brown fox"],
                                     "max_new_tokens": 3}, format="columnar")
    outputs = client.parse_rest_response(rest_predict(gpt_export.loaded, body))
    expected = gpt_export.signature()(prompt=np.array(["Hello", "The quick brown fox"], object),
                                      max_new_tokens=np.int32(3))
    assert outputs["generated_text"].tolist() == [
        t.decode() for t in expected["generated_text"].numpy()]
    np.testing.assert_array_equal(outputs["generated_token_ids"],
                                  expected["generated_token_ids"])


def test_grpc_predict_request(classifier_export, gpt_export):
    request = client.make_predict_request({"text": TEXTS}, model_name="classifier")
    assert request.model_spec.signature_name == "serving_default"
    outputs = client.parse_predict_response(grpc_predict(classifier_export.loaded, request))
    expected = classifier_export.signature()(text=np.array(TEXTS, object))
    np.testing.assert_allclose(outputs["logits"], expected["logits"], atol=1e-6)
    assert outputs["label_names"].tolist() == expected["label_names"].numpy().tolist()

    request = client.make_predict_request({"prompt": ["Hello"], "max_new_tokens": 2},
                                          model_name="gpt", version=1)
    assert request.inputs["max_new_tokens"].dtype == 3  # DT_INT32, a scalar
    outputs = client.parse_predict_response(grpc_predict(gpt_export.loaded, request))
    assert outputs["generated_token_ids"].shape == (1, 3)


def test_parse_unnamed_single_output():
    assert client.parse_rest_response({"outputs": [[0.5, 0.5]]})["output"].shape == (1, 2)
    parsed = client.parse_rest_response('{"predictions": [{"t": {"b64": "/w=="}}]}')
    assert parsed["t"].tolist() == [b"\xff"]
    with pytest.raises(ValueError, match="Not a TF Serving"):
        client.parse_rest_response({"result": 1})
    assert client.rest_url("m", version=2) == "http://localhost:8501/v1/models/m/versions/2:predict"


def test_send_rest_without_a_server_names_the_problem():
    import socket

    with socket.socket() as probe:  # A local port that nothing listens on once closed.
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = client.rest_url("classifier", host="127.0.0.1", port=port)
    with pytest.raises(client.ServingError, match=r"No answer from .*Is the model server running"):
        client.send_rest(url, {"instances": [{"text": "hi"}]}, timeout=5)
