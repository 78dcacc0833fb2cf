"""Calls a TF Serving model over REST (JSON): row (`instances`) or columnar (`inputs`) format.

```bash
python examples/serving/rest_client.py --model_name=classifier \
    --text="A gripping, beautiful film." --text="Dull and far too long."
python examples/serving/rest_client.py --model_name=gpt --format=columnar \
    --input=prompt --text="Once upon a time" --scalar=max_new_tokens=16
python examples/serving/rest_client.py --model_name=classifier --print_request --dry_run \
    --text="A gripping, beautiful film."
```

The request building and response parsing live in `keras_llm.export.client`.
"""

from __future__ import annotations

import json

from absl import app, flags

from keras_llm.export import client

flags.DEFINE_string("host", "localhost", "Model server host.")
flags.DEFINE_integer("port", 8501, "Model server REST port.")
flags.DEFINE_string("model_name", "classifier", "The served model's name (MODEL_NAME).")
flags.DEFINE_integer("version", None, "A model version; default: the server's latest.")
flags.DEFINE_string("signature_name", "serving_default", "Signature to call.")
flags.DEFINE_enum("format", "row", ["row", "columnar"], "`instances` or `inputs` format.")
flags.DEFINE_string("input", "text", "Name of the string input the --text values feed.")
flags.DEFINE_multi_string("text", [], "A string in the batch (repeatable).")
flags.DEFINE_multi_string("pair", [], "Second strings, as the input `text_pair` (repeatable).")
flags.DEFINE_multi_string("scalar", [], "A scalar int input, name=value (columnar only).")
flags.DEFINE_bool("print_request", False, "Print the JSON request body.")
flags.DEFINE_bool("dry_run", False, "Only build (and print) the request.")
flags.DEFINE_float("timeout", 30.0, "Seconds before giving up.")
FLAGS = flags.FLAGS


def build_inputs() -> dict:
    inputs: dict = {FLAGS.input: list(FLAGS.text)}
    if FLAGS.pair:
        inputs["text_pair"] = list(FLAGS.pair)
    for item in FLAGS.scalar:
        name, value = item.split("=", 1)
        inputs[name] = int(value)
    return inputs


def main(argv: list[str]) -> None:
    del argv
    body = client.make_rest_request(build_inputs(), FLAGS.signature_name, FLAGS.format)
    if FLAGS.print_request or FLAGS.dry_run:
        print(json.dumps(body))
    if FLAGS.dry_run:
        return
    url = client.rest_url(FLAGS.model_name, FLAGS.host, FLAGS.port, FLAGS.version)
    try:
        response = client.send_rest(url, body, FLAGS.timeout)
    except client.ServingError as error:
        raise SystemExit(f"error: {error}") from None
    for name, value in client.parse_rest_response(response).items():
        print(f"{name}: {value.tolist()}")


if __name__ == "__main__":
    app.run(main)
