import tensorflow as tf

from keras_llm.tokenizers import ByteTokenizer

TEXTS = ["hello", "", "ünïcode ✓ 中文 👨‍👩‍👧", "tabs\tand\nnewlines"]


def test_round_trip_and_in_graph():
    tokenizer = ByteTokenizer()
    ids = tokenizer(TEXTS)
    assert ids.to_list()[0] == list(b"hello") and ids.to_list()[1] == []
    assert [t.decode() for t in tokenizer.detokenize(ids).numpy().tolist()] == TEXTS
    mapped = tf.data.Dataset.from_tensor_slices(TEXTS).map(tokenizer)
    assert [x.numpy().tolist() for x in mapped] == ids.to_list()
    assert ByteTokenizer.from_config(tokenizer.get_config()).vocabulary_size() == 256
