"""Calls a TF Serving model over gRPC with a `tensorflow_serving.apis` `PredictRequest`.

```bash
python examples/serving/grpc_client.py --model_name=classifier \
    --text="A gripping, beautiful film." --text="Dull and far too long."
python examples/serving/grpc_client.py --model_name=gpt --input=prompt \
    --text="Once upon a time" --scalar=max_new_tokens=16
```

Needs `pip install tensorflow-serving-api` (gRPC stubs and protos). The request building
and response parsing live in `keras_llm.export.client`.
"""

from __future__ import annotations

from absl import app, flags

from keras_llm.export import client

flags.DEFINE_string("target", "localhost:8500", "Model server gRPC address.")
flags.DEFINE_string("model_name", "classifier", "The served model's name (MODEL_NAME).")
flags.DEFINE_integer("version", None, "A model version; default: the server's latest.")
flags.DEFINE_string("signature_name", "serving_default", "Signature to call.")
flags.DEFINE_string("input", "text", "Name of the string input the --text values feed.")
flags.DEFINE_multi_string("text", [], "A string in the batch (repeatable).")
flags.DEFINE_multi_string("pair", [], "Second strings, as the input `text_pair` (repeatable).")
flags.DEFINE_multi_string("scalar", [], "A scalar int input, name=value.")
flags.DEFINE_bool("dry_run", False, "Only build and print the request.")
flags.DEFINE_float("timeout", 30.0, "Seconds before giving up.")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    inputs: dict = {FLAGS.input: list(FLAGS.text)}
    if FLAGS.pair:
        inputs["text_pair"] = list(FLAGS.pair)
    for item in FLAGS.scalar:
        name, value = item.split("=", 1)
        inputs[name] = int(value)
    request = client.make_predict_request(inputs, FLAGS.model_name, FLAGS.signature_name,
                                          FLAGS.version)
    if FLAGS.dry_run:
        print(request)
        return
    try:
        response = client.send_grpc(FLAGS.target, request, FLAGS.timeout)
    except client.ServingError as error:
        raise SystemExit(f"error: {error}") from None
    for name, value in client.parse_predict_response(response).items():
        print(f"{name}: {value.tolist()}")


if __name__ == "__main__":
    app.run(main)
