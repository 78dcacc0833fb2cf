"""What each exported signature should return, computed the Keras way (eagerly, in numpy)."""

from __future__ import annotations

import numpy as np

from keras_llm.export.signatures import MAX_ANSWER_TOKENS


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def classifier(model, preprocessor, texts, pairs=None) -> dict:
    inputs = preprocessor((texts, pairs) if pairs is not None else texts)
    logits = np.asarray(model(inputs, training=False), np.float32)
    if model.num_classes == 1:
        return {"logits": logits, "predictions": logits[:, 0]}
    out = {"logits": logits, "probabilities": softmax(logits),
           "label_ids": logits.argmax(-1).astype(np.int32)}
    if model.label_names:
        out["label_names"] = np.array([model.label_names[i].encode() for i in out["label_ids"]],
                                      dtype=object)
    return out


def embedding(model, preprocessor, texts) -> dict:
    inputs = preprocessor(texts)
    sequence = np.asarray(model(inputs, training=False)["sequence_output"])
    mask = np.asarray(inputs["padding_mask"], np.float32)[:, :, None]
    mean = (sequence * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
    return {"embedding": mean / np.linalg.norm(mean, axis=-1, keepdims=True)}


def tagger(model, preprocessor, texts) -> dict:
    inputs = preprocessor(texts)
    logits = np.asarray(model(inputs, training=False))
    label_ids = logits.argmax(-1).astype(np.int32)
    vocabulary = preprocessor.tokenizer.get_vocabulary()
    mask = np.asarray(inputs["padding_mask"], bool)
    tokens = [[vocabulary[t].encode() if m else b"" for t, m in zip(row, row_mask, strict=True)]
              for row, row_mask in zip(np.asarray(inputs["token_ids"]), mask, strict=True)]
    starts = np.full(label_ids.shape, -1, np.int32)
    ends = np.full(label_ids.shape, -1, np.int32)
    for row, text in enumerate(texts):
        pieces = [vocabulary[t] for t, m in zip(np.asarray(inputs["token_ids"])[row], mask[row],
                                                strict=True) if m][1:-1]
        for k, (start, end) in enumerate(scan_offsets(text, pieces)):
            starts[row, k + 1], ends[row, k + 1] = start, end
    return {"logits": logits, "label_ids": label_ids,
            "label_names": np.array([[model.label_names[i].encode() for i in row]
                                     for row in label_ids], dtype=object),
            "tokens": np.array(tokens, dtype=object),
            "start_offsets": starts, "end_offsets": ends}


def scan_offsets(text: str, pieces: list[str]) -> list[tuple[int, int]]:
    """Character spans of word pieces in ASCII text, found left to right (independent of
    the tokenizer's offset tracking; enough for the plain-ASCII test sentences)."""
    spans, cursor, lowered = [], 0, text.lower()
    for piece in pieces:
        piece = piece.removeprefix("##")
        start = lowered.find(piece, cursor)
        if start < 0:
            break
        spans.append((start, start + len(piece)))
        cursor = start + len(piece)
    return spans


def question_answerer(model, preprocessor, questions, contexts, raw_text=True) -> dict:
    """Brute force over all spans, independent of the exported `best_span`. With `raw_text`
    (the strings signature) the answer is the context's substring, else the joined pieces."""
    inputs = preprocessor((questions, contexts))
    outputs = model(inputs, training=False)
    start = np.asarray(outputs["start_logits"])
    end = np.asarray(outputs["end_logits"])
    ids = np.asarray(inputs["token_ids"])
    segments = np.asarray(inputs["segment_ids"])
    mask = np.asarray(inputs["padding_mask"], bool)
    sep = preprocessor.sep_token_id
    vocabulary = preprocessor.tokenizer.get_vocabulary()
    texts, scores, starts, ends = [], [], [], []
    for row in range(len(ids)):
        context = [i for i in range(ids.shape[1])
                   if segments[row, i] == 1 and mask[row, i] and ids[row, i] != sep]
        best = (-np.inf, -1, -1)
        for i in context:
            for j in context:
                if i <= j < i + MAX_ANSWER_TOKENS and start[row, i] + end[row, j] > best[0]:
                    best = (start[row, i] + end[row, j], i, j)
        score, i, j = best
        if i < 0:
            texts.append(b"")
        elif raw_text:  # The context's own characters, found by scanning for each piece.
            spans = scan_offsets(contexts[row], [vocabulary[t] for t in ids[row, context[0]:]])
            first = context[0]
            texts.append(contexts[row][spans[i - first][0]:spans[j - first][1]].encode())
        else:
            words = " ".join(vocabulary[t] for t in ids[row, i:j + 1])
            texts.append(words.replace(" ##", "").encode())
        scores.append(score)
        starts.append(i)
        ends.append(j)
    return {"start_logits": start, "end_logits": end,
            "answer_text": np.array(texts, dtype=object),
            "answer_score": np.array(scores, np.float32),
            "answer_start": np.array(starts, np.int32), "answer_end": np.array(ends, np.int32)}


def generation(lm, prompts, max_new_tokens, max_prompt_length, **sampling) -> dict:
    """`generate` on the prompt ids (the export keeps the last `max_prompt_length` tokens);
    the text is what `generate` returns for strings: prompt + continuation up to the stop."""
    eot = lm.tokenizer.end_token_id
    rows = [r[-max_prompt_length:] for r in lm.tokenizer(list(prompts)).to_list()]
    ids = lm.generate(rows, max_new_tokens=max_new_tokens, stop_token_ids=[eot],
                      pad_token_id=eot, **sampling)
    texts = []
    for row, ids_row in zip(rows, ids, strict=True):
        continuation = list(ids_row[len(row):len(row) + max_new_tokens])
        if eot in continuation:
            continuation = continuation[:continuation.index(eot)]
        texts.append(lm.detokenize(list(row) + continuation).encode())
    return {"generated_text": np.array(texts, dtype=object), "generated_token_ids": ids}
