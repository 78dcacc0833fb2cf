"""In-graph BERT WordPiece tokenizer that reproduces Hugging Face's ``BertTokenizer``.

Everything here is built from TensorFlow / tensorflow-text ops so the tokenizer runs inside
``tf.data`` pipelines, ``tf.function`` and exported SavedModels (no ``tf.py_function``).

The pipeline mirrors the ``tokenizers`` (Rust) ``BertNormalizer`` + ``BertPreTokenizer`` +
``WordPiece`` model that backs ``transformers.BertTokenizer``:

1. special tokens (``[CLS]``, ``[SEP]``, ...) written in the text are matched verbatim first;
2. clean text: drop NUL, U+FFFD, control/format/private-use characters, map whitespace to " ";
3. optionally NFD + drop non-spacing marks (strip accents), then lowercase;
4. split on whitespace, isolate punctuation and CJK ideographs;
5. greedy longest-match-first WordPiece; words longer than ``max_input_chars_per_word``
   *characters* become the unknown token.

``tokenize_with_offsets`` also returns where each token came from in the original string
(byte or character offsets, as HF's fast tokenizer's ``offset_mapping``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf
import tensorflow_text as tf_text

from keras_llm.tokenizers.string_tokenizer import StringTokenizer, escape_regex

# --- Character classes -------------------------------------------------------------------
# These sets are NOT the current Unicode categories: they were extracted code point by code
# point from the `tokenizers` BertNormalizer / BertPreTokenizer (which embed an older Unicode
# table), so that e.g. newly-assigned punctuation does not split words differently than HF.

# Characters removed by BertNormalizer(clean_text=True): NUL, U+FFFD, Cc (except \t\n\r),
# Cf and private-use (Co) code points.
_REMOVED_CHARS = (
    r"[\x{0}-\x{8}\x{B}-\x{C}\x{E}-\x{1F}\x{7F}-\x{9F}\x{AD}\x{600}-\x{605}\x{61C}\x{6DD}"
    r"\x{70F}\x{180E}\x{200B}-\x{200F}\x{202A}-\x{202E}\x{2060}-\x{2064}\x{2066}-\x{206F}"
    r"\x{E000}-\x{F8FF}\x{FEFF}\x{FFF9}-\x{FFFB}\x{FFFD}\x{110BD}\x{1BCA0}-\x{1BCA3}"
    r"\x{1D173}-\x{1D17A}\x{E0001}\x{E0020}-\x{E007F}\x{F0000}-\x{FFFFD}\x{100000}-\x{10FFFD}]"
)

# Rust `char::is_whitespace` minus the control characters already removed above.
_WHITESPACE_CHARS = (
    r"[\x{9}-\x{A}\x{D}\x{20}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}-\x{2029}\x{202F}"
    r"\x{205F}\x{3000}]"
)

# ASCII punctuation (33-47, 58-64, 91-96, 123-126) plus Unicode P* (as known to `tokenizers`).
_PUNCTUATION_CHARS = (
    r"[\x{21}-\x{2F}\x{3A}-\x{40}\x{5B}-\x{60}\x{7B}-\x{7E}\x{A1}\x{A7}\x{AB}\x{B6}-\x{B7}"
    r"\x{BB}\x{BF}\x{37E}\x{387}\x{55A}-\x{55F}\x{589}-\x{58A}\x{5BE}\x{5C0}\x{5C3}\x{5C6}"
    r"\x{5F3}-\x{5F4}\x{609}-\x{60A}\x{60C}-\x{60D}\x{61B}\x{61E}-\x{61F}\x{66A}-\x{66D}"
    r"\x{6D4}\x{700}-\x{70D}\x{7F7}-\x{7F9}\x{830}-\x{83E}\x{85E}\x{964}-\x{965}\x{970}"
    r"\x{AF0}\x{DF4}\x{E4F}\x{E5A}-\x{E5B}\x{F04}-\x{F12}\x{F14}\x{F3A}-\x{F3D}\x{F85}"
    r"\x{FD0}-\x{FD4}\x{FD9}-\x{FDA}\x{104A}-\x{104F}\x{10FB}\x{1360}-\x{1368}\x{1400}"
    r"\x{166D}-\x{166E}\x{169B}-\x{169C}\x{16EB}-\x{16ED}\x{1735}-\x{1736}\x{17D4}-\x{17D6}"
    r"\x{17D8}-\x{17DA}\x{1800}-\x{180A}\x{1944}-\x{1945}\x{1A1E}-\x{1A1F}\x{1AA0}-\x{1AA6}"
    r"\x{1AA8}-\x{1AAD}\x{1B5A}-\x{1B60}\x{1BFC}-\x{1BFF}\x{1C3B}-\x{1C3F}\x{1C7E}-\x{1C7F}"
    r"\x{1CC0}-\x{1CC7}\x{1CD3}\x{2010}-\x{2027}\x{2030}-\x{2043}\x{2045}-\x{2051}"
    r"\x{2053}-\x{205E}\x{207D}-\x{207E}\x{208D}-\x{208E}\x{2308}-\x{230B}\x{2329}-\x{232A}"
    r"\x{2768}-\x{2775}\x{27C5}-\x{27C6}\x{27E6}-\x{27EF}\x{2983}-\x{2998}\x{29D8}-\x{29DB}"
    r"\x{29FC}-\x{29FD}\x{2CF9}-\x{2CFC}\x{2CFE}-\x{2CFF}\x{2D70}\x{2E00}-\x{2E2E}"
    r"\x{2E30}-\x{2E42}\x{3001}-\x{3003}\x{3008}-\x{3011}\x{3014}-\x{301F}\x{3030}\x{303D}"
    r"\x{30A0}\x{30FB}\x{A4FE}-\x{A4FF}\x{A60D}-\x{A60F}\x{A673}\x{A67E}\x{A6F2}-\x{A6F7}"
    r"\x{A874}-\x{A877}\x{A8CE}-\x{A8CF}\x{A8F8}-\x{A8FA}\x{A8FC}\x{A92E}-\x{A92F}\x{A95F}"
    r"\x{A9C1}-\x{A9CD}\x{A9DE}-\x{A9DF}\x{AA5C}-\x{AA5F}\x{AADE}-\x{AADF}\x{AAF0}-\x{AAF1}"
    r"\x{ABEB}\x{FD3E}-\x{FD3F}\x{FE10}-\x{FE19}\x{FE30}-\x{FE52}\x{FE54}-\x{FE61}\x{FE63}"
    r"\x{FE68}\x{FE6A}-\x{FE6B}\x{FF01}-\x{FF03}\x{FF05}-\x{FF0A}\x{FF0C}-\x{FF0F}"
    r"\x{FF1A}-\x{FF1B}\x{FF1F}-\x{FF20}\x{FF3B}-\x{FF3D}\x{FF3F}\x{FF5B}\x{FF5D}"
    r"\x{FF5F}-\x{FF65}\x{10100}-\x{10102}\x{1039F}\x{103D0}\x{1056F}\x{10857}\x{1091F}"
    r"\x{1093F}\x{10A50}-\x{10A58}\x{10A7F}\x{10AF0}-\x{10AF6}\x{10B39}-\x{10B3F}"
    r"\x{10B99}-\x{10B9C}\x{11047}-\x{1104D}\x{110BB}-\x{110BC}\x{110BE}-\x{110C1}"
    r"\x{11140}-\x{11143}\x{11174}-\x{11175}\x{111C5}-\x{111C9}\x{111CD}\x{111DB}"
    r"\x{111DD}-\x{111DF}\x{11238}-\x{1123D}\x{112A9}\x{114C6}\x{115C1}-\x{115D7}"
    r"\x{11641}-\x{11643}\x{1173C}-\x{1173E}\x{12470}-\x{12474}\x{16A6E}-\x{16A6F}\x{16AF5}"
    r"\x{16B37}-\x{16B3B}\x{16B44}\x{1BC9F}\x{1DA87}-\x{1DA8B}]"
)

# Non-spacing marks (Mn) dropped by `strip_accents` after NFD.
_NONSPACING_MARKS = (
    r"[\x{300}-\x{36F}\x{483}-\x{487}\x{591}-\x{5BD}\x{5BF}\x{5C1}-\x{5C2}\x{5C4}-\x{5C5}"
    r"\x{5C7}\x{610}-\x{61A}\x{64B}-\x{65F}\x{670}\x{6D6}-\x{6DC}\x{6DF}-\x{6E4}"
    r"\x{6E7}-\x{6E8}\x{6EA}-\x{6ED}\x{711}\x{730}-\x{74A}\x{7A6}-\x{7B0}\x{7EB}-\x{7F3}"
    r"\x{816}-\x{819}\x{81B}-\x{823}\x{825}-\x{827}\x{829}-\x{82D}\x{859}-\x{85B}"
    r"\x{8E3}-\x{902}\x{93A}\x{93C}\x{941}-\x{948}\x{94D}\x{951}-\x{957}\x{962}-\x{963}\x{981}"
    r"\x{9BC}\x{9C1}-\x{9C4}\x{9CD}\x{9E2}-\x{9E3}\x{A01}-\x{A02}\x{A3C}\x{A41}-\x{A42}"
    r"\x{A47}-\x{A48}\x{A4B}-\x{A4D}\x{A51}\x{A70}-\x{A71}\x{A75}\x{A81}-\x{A82}\x{ABC}"
    r"\x{AC1}-\x{AC5}\x{AC7}-\x{AC8}\x{ACD}\x{AE2}-\x{AE3}\x{B01}\x{B3C}\x{B3F}\x{B41}-\x{B44}"
    r"\x{B4D}\x{B56}\x{B62}-\x{B63}\x{B82}\x{BC0}\x{BCD}\x{C00}\x{C3E}-\x{C40}\x{C46}-\x{C48}"
    r"\x{C4A}-\x{C4D}\x{C55}-\x{C56}\x{C62}-\x{C63}\x{C81}\x{CBC}\x{CBF}\x{CC6}\x{CCC}-\x{CCD}"
    r"\x{CE2}-\x{CE3}\x{D01}\x{D41}-\x{D44}\x{D4D}\x{D62}-\x{D63}\x{DCA}\x{DD2}-\x{DD4}\x{DD6}"
    r"\x{E31}\x{E34}-\x{E3A}\x{E47}-\x{E4E}\x{EB1}\x{EB4}-\x{EB9}\x{EBB}-\x{EBC}"
    r"\x{EC8}-\x{ECD}\x{F18}-\x{F19}\x{F35}\x{F37}\x{F39}\x{F71}-\x{F7E}\x{F80}-\x{F84}"
    r"\x{F86}-\x{F87}\x{F8D}-\x{F97}\x{F99}-\x{FBC}\x{FC6}\x{102D}-\x{1030}\x{1032}-\x{1037}"
    r"\x{1039}-\x{103A}\x{103D}-\x{103E}\x{1058}-\x{1059}\x{105E}-\x{1060}\x{1071}-\x{1074}"
    r"\x{1082}\x{1085}-\x{1086}\x{108D}\x{109D}\x{135D}-\x{135F}\x{1712}-\x{1714}"
    r"\x{1732}-\x{1734}\x{1752}-\x{1753}\x{1772}-\x{1773}\x{17B4}-\x{17B5}\x{17B7}-\x{17BD}"
    r"\x{17C6}\x{17C9}-\x{17D3}\x{17DD}\x{180B}-\x{180D}\x{18A9}\x{1920}-\x{1922}"
    r"\x{1927}-\x{1928}\x{1932}\x{1939}-\x{193B}\x{1A17}-\x{1A18}\x{1A1B}\x{1A56}"
    r"\x{1A58}-\x{1A5E}\x{1A60}\x{1A62}\x{1A65}-\x{1A6C}\x{1A73}-\x{1A7C}\x{1A7F}"
    r"\x{1AB0}-\x{1ABD}\x{1B00}-\x{1B03}\x{1B34}\x{1B36}-\x{1B3A}\x{1B3C}\x{1B42}"
    r"\x{1B6B}-\x{1B73}\x{1B80}-\x{1B81}\x{1BA2}-\x{1BA5}\x{1BA8}-\x{1BA9}\x{1BAB}-\x{1BAD}"
    r"\x{1BE6}\x{1BE8}-\x{1BE9}\x{1BED}\x{1BEF}-\x{1BF1}\x{1C2C}-\x{1C33}\x{1C36}-\x{1C37}"
    r"\x{1CD0}-\x{1CD2}\x{1CD4}-\x{1CE0}\x{1CE2}-\x{1CE8}\x{1CED}\x{1CF4}\x{1CF8}-\x{1CF9}"
    r"\x{1DC0}-\x{1DF5}\x{1DFC}-\x{1DFF}\x{20D0}-\x{20DC}\x{20E1}\x{20E5}-\x{20F0}"
    r"\x{2CEF}-\x{2CF1}\x{2D7F}\x{2DE0}-\x{2DFF}\x{302A}-\x{302D}\x{3099}-\x{309A}\x{A66F}"
    r"\x{A674}-\x{A67D}\x{A69E}-\x{A69F}\x{A6F0}-\x{A6F1}\x{A802}\x{A806}\x{A80B}"
    r"\x{A825}-\x{A826}\x{A8C4}\x{A8E0}-\x{A8F1}\x{A926}-\x{A92D}\x{A947}-\x{A951}"
    r"\x{A980}-\x{A982}\x{A9B3}\x{A9B6}-\x{A9B9}\x{A9BC}\x{A9E5}\x{AA29}-\x{AA2E}"
    r"\x{AA31}-\x{AA32}\x{AA35}-\x{AA36}\x{AA43}\x{AA4C}\x{AA7C}\x{AAB0}\x{AAB2}-\x{AAB4}"
    r"\x{AAB7}-\x{AAB8}\x{AABE}-\x{AABF}\x{AAC1}\x{AAEC}-\x{AAED}\x{AAF6}\x{ABE5}\x{ABE8}"
    r"\x{ABED}\x{FB1E}\x{FE00}-\x{FE0F}\x{FE20}-\x{FE2F}\x{101FD}\x{102E0}\x{10376}-\x{1037A}"
    r"\x{10A01}-\x{10A03}\x{10A05}-\x{10A06}\x{10A0C}-\x{10A0F}\x{10A38}-\x{10A3A}\x{10A3F}"
    r"\x{10AE5}-\x{10AE6}\x{11001}\x{11038}-\x{11046}\x{1107F}-\x{11081}\x{110B3}-\x{110B6}"
    r"\x{110B9}-\x{110BA}\x{11100}-\x{11102}\x{11127}-\x{1112B}\x{1112D}-\x{11134}\x{11173}"
    r"\x{11180}-\x{11181}\x{111B6}-\x{111BE}\x{111CA}-\x{111CC}\x{1122F}-\x{11231}\x{11234}"
    r"\x{11236}-\x{11237}\x{112DF}\x{112E3}-\x{112EA}\x{11300}-\x{11301}\x{1133C}\x{11340}"
    r"\x{11366}-\x{1136C}\x{11370}-\x{11374}\x{114B3}-\x{114B8}\x{114BA}\x{114BF}-\x{114C0}"
    r"\x{114C2}-\x{114C3}\x{115B2}-\x{115B5}\x{115BC}-\x{115BD}\x{115BF}-\x{115C0}"
    r"\x{115DC}-\x{115DD}\x{11633}-\x{1163A}\x{1163D}\x{1163F}-\x{11640}\x{116AB}\x{116AD}"
    r"\x{116B0}-\x{116B5}\x{116B7}\x{1171D}-\x{1171F}\x{11722}-\x{11725}\x{11727}-\x{1172B}"
    r"\x{16AF0}-\x{16AF4}\x{16B30}-\x{16B36}\x{16F8F}-\x{16F92}\x{1BC9D}-\x{1BC9E}"
    r"\x{1D167}-\x{1D169}\x{1D17B}-\x{1D182}\x{1D185}-\x{1D18B}\x{1D1AA}-\x{1D1AD}"
    r"\x{1D242}-\x{1D244}\x{1DA00}-\x{1DA36}\x{1DA3B}-\x{1DA6C}\x{1DA75}\x{1DA84}"
    r"\x{1DA9B}-\x{1DA9F}\x{1DAA1}-\x{1DAAF}\x{1E8D0}-\x{1E8D6}\x{E0100}-\x{E01EF}]"
)

# `_is_chinese_char` ranges of google-research/bert (CJK ideographs, not Hangul/Kana),
# including its 0x2B920 typo (for Extension E, 0x2B820) that HF reproduces.
_CJK_CHARS = (
    r"[\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}"
    r"\x{2B740}-\x{2B81F}\x{2B920}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}]"
)

_CLS, _SEP, _PAD, _MASK = "[CLS]", "[SEP]", "[PAD]", "[MASK]"

_Tokens = tf.Tensor | tf.RaggedTensor


def load_vocabulary(path: str | os.PathLike) -> list[str]:
    """Reads a BERT ``vocab.txt`` (one token per line, id = line number)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"WordPiece vocabulary file not found: '{path}'")
    with open(path, encoding="utf-8") as f:
        # Only the line terminator is stripped (like HF's `load_vocab`): tokens may contain spaces.
        return [line.rstrip("\r\n") for line in f]


def _holds(directory: str) -> str:
    """`" (it holds a, b, ...)"`: a few of the folder's entries, for an error message."""
    names = sorted(os.listdir(directory))
    if not names:
        return " (it is empty)"
    shown = ", ".join(names[:8]) + (f", ... ({len(names)} entries)" if len(names) > 8 else "")
    return f" (it holds {shown})"


def _is_cased_directory(path: str) -> bool:
    """Google BERT checkpoints encode casing only in their name (`cased_L-12_H-768_A-12`)."""
    name = os.path.basename(os.path.normpath(path)).lower()
    return "cased" in name and "uncased" not in name


@keras.saving.register_keras_serializable(package="keras_llm")
class WordPieceTokenizer(StringTokenizer):
    """BERT WordPiece tokenizer whose ids match Hugging Face's ``BertTokenizer``.

    Runs entirely in the TensorFlow graph (usable in ``tf.data`` and SavedModels).

    Args:
        vocabulary: path to a ``vocab.txt`` or a list of tokens (id = position).
        lowercase: lowercase the input (uncased models).
        strip_accents: NFD-decompose and drop non-spacing marks. ``None`` follows ``lowercase``.
        tokenize_chinese_chars: isolate CJK ideographs as single words.
        unknown_token: token for out-of-vocabulary words; must be in the vocabulary.
        max_input_chars_per_word: words with more characters become ``unknown_token``.
        special_tokens_in_strings: match special tokens (``[CLS]``, ``[SEP]``, ``[PAD]``,
            ``[MASK]``, unknown token) written literally in the input, as HF does.

    Example:
    >>> tokenizer = WordPieceTokenizer(["[PAD]", "[UNK]", "the", "qu", "##ick", "!"])
    >>> tokenizer(["The quick!"]).to_list()
    [[2, 3, 4, 5]]
    >>> tokenizer("quick").numpy().tolist()
    [3, 4]
    """

    def __init__(
        self,
        vocabulary: str | os.PathLike | Sequence[str],
        lowercase: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        unknown_token: str = "[UNK]",
        max_input_chars_per_word: int = 100,
        special_tokens_in_strings: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)

        if isinstance(vocabulary, (str, os.PathLike)):
            vocabulary = load_vocabulary(vocabulary)
        vocabulary = [str(t) for t in vocabulary]
        if not vocabulary:
            raise ValueError("WordPieceTokenizer: `vocabulary` is empty.")
        if unknown_token not in vocabulary:
            raise ValueError(
                f"WordPieceTokenizer: unknown_token {unknown_token!r} is not in the vocabulary."
            )
        if max_input_chars_per_word < 1:
            raise ValueError("`max_input_chars_per_word` must be >= 1.")

        self.vocabulary = vocabulary
        self.lowercase = bool(lowercase)
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        self.unknown_token = unknown_token
        self.max_input_chars_per_word = int(max_input_chars_per_word)
        self.special_tokens_in_strings = bool(special_tokens_in_strings)

        # Like HF's dict-based vocab, a duplicated token resolves to its last id.
        self._token_to_id = {t: i for i, t in enumerate(vocabulary)}
        self.unknown_token_id = self._token_to_id[unknown_token]
        self.cls_token_id = self._token_to_id.get(_CLS)
        self.sep_token_id = self._token_to_id.get(_SEP)
        self.pad_token_id = self._token_to_id.get(_PAD)
        self.mask_token_id = self._token_to_id.get(_MASK)
        self.special_tokens = [
            t
            for t in dict.fromkeys([_PAD, unknown_token, _CLS, _SEP, _MASK])
            if t in self._token_to_id
        ]

        # FastWordpieceTokenizer cannot build a model from a vocabulary with duplicates.
        unique_vocab = list(dict.fromkeys(vocabulary))
        self._fast_word_piece = tf_text.FastWordpieceTokenizer(
            vocab=unique_vocab,
            suffix_indicator="##",
            # Bytes bound only; the HF limit is in characters and is applied in `_split_words`.
            max_bytes_per_word=4 * self.max_input_chars_per_word + 4,
            token_out_type=tf.int32,
            unknown_token=unknown_token,
            no_pretokenization=True,
            support_detokenization=False,
        )
        if len(unique_vocab) != len(vocabulary):
            # Map FastWordpiece's ids (positions in `unique_vocab`) back to HF's ids.
            self._id_remap = tf.constant(
                [self._token_to_id[t] for t in unique_vocab], dtype=tf.int32
            )
        else:
            self._id_remap = None
        self._vocab_tensor = tf.constant(vocabulary, dtype=tf.string)
        self._special_pattern = "|".join(escape_regex(t) for t in self.special_tokens)
        # Plain constants rather than a tf.lookup table: with a non-TF Keras backend the layer
        # is not a TF trackable, and an untracked table resource would break SavedModel export.
        self._special_tokens_tensor = tf.constant(self.special_tokens or [""], tf.string)
        self._special_ids_tensor = tf.constant(
            [self._token_to_id[t] for t in self.special_tokens] or [self.unknown_token_id],
            tf.int32,
        )
        self.built = True

    # --- Construction helpers ----------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs: Any) -> WordPieceTokenizer:
        """Loads from a directory holding ``vocab.txt`` (or the path of a ``vocab.txt``).

        Casing flags come from HF's ``tokenizer_config.json`` when present; for Google BERT
        checkpoint directories (no casing flag) the model is lowercased unless the directory
        name says "cased" (and not "uncased"). Explicit ``kwargs`` win.
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"'{path}' does not exist: pass a folder that holds a WordPiece vocab.txt (a "
                "Hugging Face or Google BERT checkpoint folder) or the path of a vocab.txt.")
        if os.path.isdir(path):
            directory, vocab_file = path, os.path.join(path, "vocab.txt")
            if not os.path.isfile(vocab_file):
                raise FileNotFoundError(
                    f"The folder '{path}' has no vocab.txt, so it is not a BERT (WordPiece) "
                    f"checkpoint folder{_holds(path)}. Pass a folder that holds vocab.txt, or "
                    "the path of the vocabulary file itself.")
        else:
            directory, vocab_file = os.path.dirname(path) or ".", path

        options: dict[str, Any] = {}
        config_file = os.path.join(directory, "tokenizer_config.json")
        if os.path.isfile(config_file):
            with open(config_file, encoding="utf-8") as f:
                config = json.load(f)
            options["lowercase"] = bool(config.get("do_lower_case", True))
            if "strip_accents" in config:
                options["strip_accents"] = config["strip_accents"]
            if "tokenize_chinese_chars" in config:
                options["tokenize_chinese_chars"] = bool(config["tokenize_chinese_chars"])
            if isinstance(config.get("unk_token"), str):
                options["unknown_token"] = config["unk_token"]
        else:
            options["lowercase"] = not _is_cased_directory(directory)
        options.update(kwargs)
        return cls(vocabulary=vocab_file, **options)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "vocabulary": list(self.vocabulary),
                "lowercase": self.lowercase,
                "strip_accents": self.strip_accents,
                "tokenize_chinese_chars": self.tokenize_chinese_chars,
                "unknown_token": self.unknown_token,
                "max_input_chars_per_word": self.max_input_chars_per_word,
                "special_tokens_in_strings": self.special_tokens_in_strings,
            }
        )
        return config

    # --- Vocabulary accessors ----------------------------------------------------------------
    def vocabulary_size(self) -> int:
        return len(self.vocabulary)

    def get_vocabulary(self) -> list[str]:
        return list(self.vocabulary)

    def token_to_id(self, token: str) -> int:
        if token not in self._token_to_id:
            raise KeyError(f"Token {token!r} is not in the vocabulary.")
        return self._token_to_id[token]

    def id_to_token(self, id: int) -> str:  # noqa: A002 - mirrors keras-hub's API
        if not 0 <= int(id) < len(self.vocabulary):
            raise IndexError(f"Id {id} is out of range [0, {len(self.vocabulary)}).")
        return self.vocabulary[int(id)]

    def special_token_id(self, name: str) -> int:
        """Id of ``name`` in ("cls", "sep", "pad", "mask", "unknown"); clear error if absent."""
        value = getattr(self, f"{name}_token_id", None)
        if value is None:
            token = {"cls": _CLS, "sep": _SEP, "pad": _PAD, "mask": _MASK}.get(name, name)
            raise ValueError(
                f"The tokenizer vocabulary has no {token!r} token, which is required here."
            )
        return value

    # --- Tokenization --------------------------------------------------------------------------
    @property
    def _do_strip_accents(self) -> bool:
        return self.lowercase if self.strip_accents is None else bool(self.strip_accents)

    def split_words(self, text: Any) -> tf.RaggedTensor:
        """`[n]` strings -> `[n, (words)]`: the normalised words that WordPiece then splits
        (lowercased and accent-stripped as configured, punctuation and CJK isolated); what a
        vocabulary builder counts.

        Example:
        >>> WordPieceTokenizer(["[UNK]"]).split_words(["Café, au lait!"]).to_list()
        [[b'cafe', b',', b'au', b'lait', b'!']]
        """
        return self._split_words(self._normalize(tf.convert_to_tensor(text, tf.string)))

    def _normalize(self, text: tf.Tensor) -> tf.Tensor:
        """BertNormalizer minus the CJK spacing (CJK chars are isolated when splitting)."""
        text = tf.strings.regex_replace(text, _REMOVED_CHARS, "")
        if self._do_strip_accents:
            text = tf_text.normalize_utf8(text, "NFD")
            text = tf.strings.regex_replace(text, _NONSPACING_MARKS, "")
        if self.lowercase:
            # HF lowercases char by char (Rust `char::to_lowercase`) so a final capital sigma
            # becomes "σ"; ICU (behind tf.strings.lower) would give the final form "ς".
            text = tf.strings.regex_replace(text, "\u03a3", "\u03c3")
            text = tf.strings.lower(text, encoding="utf-8")
        return text

    def _word_split_patterns(self) -> tuple[str, str]:
        """(delimiter, kept delimiter) regexes that split normalized text into words."""
        keep = _PUNCTUATION_CHARS
        if self.tokenize_chinese_chars:
            keep = f"{_PUNCTUATION_CHARS}|{_CJK_CHARS}"
        return f"{_WHITESPACE_CHARS}+|{keep}", keep

    def _split_words(self, text: tf.Tensor) -> tf.RaggedTensor:
        """[n] normalized strings -> [n, (words)], isolating punctuation (and CJK)."""
        delimiter, keep = self._word_split_patterns()
        words = tf_text.regex_split(
            text, delim_regex_pattern=delimiter, keep_delim_regex_pattern=keep
        )
        # HF's WordPiece limit counts characters (not bytes) of the normalized word.
        too_long = (
            tf.strings.length(words.flat_values, unit="UTF8_CHAR") > self.max_input_chars_per_word
        )
        flat = tf.where(too_long, tf.constant(self.unknown_token), words.flat_values)
        return words.with_flat_values(flat)

    def _tokenize_flat(self, text: tf.Tensor) -> tf.RaggedTensor:
        """[n] strings -> [n, (ids)] int32."""
        text = self._check_utf8(text)
        if self.special_tokens_in_strings and self.special_tokens:
            # Special tokens are matched on the raw text (HF: `normalized=False`), so split
            # them out first; they are bounded by punctuation so other splits are unchanged.
            # regex_split stops at a NUL byte: swap it for U+FFFD, which is dropped just as NUL.
            text = tf.strings.regex_replace(text, r"\x00", "\ufffd")
            pieces = tf_text.regex_split(
                text,
                delim_regex_pattern=self._special_pattern,
                keep_delim_regex_pattern=self._special_pattern,
            )
            flat = pieces.flat_values
            is_special = tf.strings.regex_full_match(flat, self._special_pattern)
            matches = tf.equal(tf.expand_dims(flat, 1), self._special_tokens_tensor)
            special_ids = tf.gather(
                self._special_ids_tensor, tf.argmax(tf.cast(matches, tf.int32), axis=1)
            )
            special_rows = tf.RaggedTensor.from_row_lengths(
                tf.boolean_mask(special_ids, is_special), tf.cast(is_special, tf.int64)
            )
            normal = tf.where(is_special, tf.constant(""), flat)
            normal_rows = self._wordpiece(self._split_words(self._normalize(normal)))
            # Exactly one of the two rows is non-empty for each piece.
            ids = tf.concat([special_rows, normal_rows], axis=1)
            return pieces.with_flat_values(ids).merge_dims(1, 2)
        return self._wordpiece(self._split_words(self._normalize(text)))

    def _wordpiece(self, words: tf.RaggedTensor) -> tf.RaggedTensor:
        """[n, (words)] -> [n, (ids)]."""
        ids = self._fast_word_piece.tokenize(words.flat_values)
        if self._id_remap is not None:
            ids = ids.with_flat_values(tf.gather(self._id_remap, ids.flat_values))
        return words.with_flat_values(ids).merge_dims(1, 2)

    # --- Tokenization with offsets --------------------------------------------------------------
    def tokenize_with_offsets(
        self, inputs: Any, unit: str = "BYTE"
    ) -> tuple[_Tokens, _Tokens, _Tokens]:
        """Token ids and, for each token, the span of the ORIGINAL string that produced it.

        Returns ``(token_ids, start_offsets, end_offsets)``: ragged ``[batch, (tokens)]``
        tensors for a batch of strings (dense ``[tokens]`` for a scalar), ids int32 and
        offsets int64. The ids are exactly those of ``tokenize(inputs)``, and
        ``text[start:end]`` is the original text of each token, before lowercasing, accent
        stripping or control-character removal, as Hugging Face's fast ``BertTokenizer``
        returns with ``return_offsets_mapping=True``:

        - ``unit="BYTE"`` (the default, like tensorflow-text): offsets index the UTF-8 bytes;
        - ``unit="UTF8_CHAR"``: offsets index Unicode code points, which are Python ``str``
          indices (what HF returns, and what SQuAD's ``answer_start`` counts).

        A character that normalisation expands (``"İ"``) or drops in the middle of a token
        (a zero-width space) lies inside its token's span; characters dropped at a token's
        edge (control characters, combining accents written as separate code points) belong
        to no token, as in HF. A special token written in the text (``"[SEP]"``) spans its
        literal; a word longer than ``max_input_chars_per_word`` is one unknown token spanning
        the word.

        Normalisation is applied character by character here. That equals normalising the
        whole string, except where NFD would reorder two adjacent combining marks, out of
        canonical order, that accent stripping keeps (about 180 recent or spacing marks,
        none in the tested corpora).

        Example:
        >>> tokenizer = WordPieceTokenizer(["[UNK]", "cafe", "qu", "##ick", "!"])
        >>> ids, starts, ends = tokenizer.tokenize_with_offsets("Café QUICK!", unit="UTF8_CHAR")
        >>> ids.numpy().tolist(), starts.numpy().tolist(), ends.numpy().tolist()
        ([1, 2, 3, 4], [0, 5, 7, 10], [4, 7, 10, 11])
        >>> tokenizer.tokenize_with_offsets("Café")[2].numpy().tolist()  # "é" is 2 bytes
        [5]
        """
        if unit not in ("BYTE", "UTF8_CHAR"):
            raise ValueError(f"`unit` must be 'BYTE' or 'UTF8_CHAR', got {unit!r}.")
        inputs = tf.convert_to_tensor(inputs, dtype=tf.string)
        rank = inputs.shape.rank
        if rank is None:
            raise ValueError(f"{type(self).__name__} needs inputs of known rank.")
        results = self._tokenize_with_offsets_flat(tf.reshape(inputs, [-1]), unit)
        if rank == 0:
            return tuple(r[0] for r in results)
        outputs = []
        for result in results:
            for axis in range(rank - 1, 0, -1):
                result = tf.RaggedTensor.from_uniform_row_length(
                    result, tf.shape(inputs, out_type=tf.int64)[axis]
                )
            outputs.append(result)
        return tuple(outputs)

    def _tokenize_with_offsets_flat(
        self, text: tf.Tensor, unit: str
    ) -> tuple[tf.RaggedTensor, tf.RaggedTensor, tf.RaggedTensor]:
        """[n] strings -> ([n, (ids)], [n, (starts)], [n, (ends)])."""
        text = self._check_utf8(text)
        # tf-text's regex ops stop at a NUL byte; \x01 has the same length and, like NUL, is
        # removed by normalisation, so offsets and ids are unchanged.
        safe = tf.strings.regex_replace(text, r"\x00", "\x01")
        if self.special_tokens_in_strings and self.special_tokens:
            _, begins, ends = tf_text.regex_split_with_offsets(
                safe,
                delim_regex_pattern=self._special_pattern,
                keep_delim_regex_pattern=self._special_pattern,
            )
            piece_begins = begins.flat_values
            piece_lengths = ends.flat_values - piece_begins
            pieces = tf.strings.substr(
                tf.gather(safe, begins.value_rowids()), piece_begins, piece_lengths
            )
            is_special = tf.strings.regex_full_match(pieces, self._special_pattern)
            matches = tf.equal(tf.expand_dims(pieces, 1), self._special_tokens_tensor)
            special_ids = tf.gather(
                self._special_ids_tensor, tf.argmax(tf.cast(matches, tf.int32), axis=1)
            )
            special_count = tf.cast(is_special, tf.int64)
            special = (
                tf.RaggedTensor.from_row_lengths(tf.boolean_mask(v, is_special), special_count)
                for v in (special_ids, tf.zeros_like(piece_lengths), piece_lengths)
            )
            normal = self._normalized_words_with_offsets(tf.where(is_special, "", pieces))
            # Exactly one of the two rows is non-empty for each piece.
            ids, starts, ends = (
                tf.concat([a, b], axis=1) for a, b in zip(special, normal, strict=True)
            )
            shift = tf.expand_dims(piece_begins, 1)
            starts, ends = starts + shift, ends + shift
            ids, starts, ends = (begins.with_flat_values(v).merge_dims(1, 2)
                                 for v in (ids, starts, ends))
        else:
            ids, starts, ends = self._normalized_words_with_offsets(safe)
        if unit == "UTF8_CHAR":
            starts, ends = _bytes_to_characters(text, starts), _bytes_to_characters(text, ends)
        return ids, starts, ends

    def _normalized_words_with_offsets(
        self, text: tf.Tensor
    ) -> tuple[tf.RaggedTensor, tf.RaggedTensor, tf.RaggedTensor]:
        """[n] strings without special tokens -> ids, start and end byte offsets [n, (tokens)].

        Each character is normalised on its own, so every normalised byte knows the original
        character that produced it; words and word pieces are then found in the normalised
        text and their first and last bytes are mapped back.
        """
        codepoints, char_begins = tf.strings.unicode_decode_with_offsets(text, "UTF-8")
        # Texts repeat few distinct characters: normalise each distinct one once.
        distinct, index = tf.unique(codepoints.flat_values, out_idx=tf.int64)
        distinct_chars = tf.strings.unicode_encode(tf.expand_dims(distinct, 1), "UTF-8")
        distinct_normalized = self._normalize(distinct_chars)
        char_begins = char_begins.flat_values
        char_ends = char_begins + tf.gather(
            tf.cast(tf.strings.length(distinct_chars), tf.int64), index
        )
        normalized = tf.gather(distinct_normalized, index)
        normalized_lengths = tf.gather(
            tf.cast(tf.strings.length(distinct_normalized), tf.int64), index
        )
        # owner[b] = the (flat) index of the original character behind normalised byte b.
        owner = tf.repeat(tf.range(tf.size(normalized, out_type=tf.int64)), normalized_lengths)
        normalized_text = tf.strings.reduce_join(
            codepoints.with_flat_values(normalized), axis=1
        )
        row_base = tf.cumsum(
            tf.cast(tf.strings.length(normalized_text), tf.int64), exclusive=True
        )

        delimiter, keep = self._word_split_patterns()
        words, word_begins, word_ends = tf_text.regex_split_with_offsets(
            normalized_text, delim_regex_pattern=delimiter, keep_delim_regex_pattern=keep
        )
        too_long = (
            tf.strings.length(words.flat_values, unit="UTF8_CHAR") > self.max_input_chars_per_word
        )
        word_strings = tf.where(too_long, tf.constant(self.unknown_token), words.flat_values)
        pieces, piece_begins, piece_ends = self._fast_word_piece.tokenize_with_offsets(
            word_strings
        )
        ids = pieces.flat_values
        if self._id_remap is not None:
            ids = tf.gather(self._id_remap, ids)
        word = pieces.value_rowids()  # the word of each piece
        word_begin = tf.gather(word_begins.flat_values, word)
        word_length = tf.gather(word_ends.flat_values - word_begins.flat_values, word)
        piece_long = tf.gather(too_long, word)
        # A too-long word became one unknown token: it spans the whole word.
        begin = word_begin + tf.where(
            piece_long, tf.zeros_like(word_length), tf.cast(piece_begins.flat_values, tf.int64)
        )
        end = word_begin + tf.where(
            piece_long, word_length, tf.cast(piece_ends.flat_values, tf.int64)
        )
        base = tf.gather(row_base, tf.gather(words.value_rowids(), word))
        starts = tf.gather(char_begins, tf.gather(owner, base + begin))
        ends = tf.gather(char_ends, tf.gather(owner, base + end - 1))
        return tuple(
            words.with_flat_values(pieces.with_flat_values(v)).merge_dims(1, 2)
            for v in (ids, starts, ends)
        )

    def detokenize(self, ids: Any) -> tf.Tensor:
        """Ids [batch, (tokens)] (ragged or dense) -> strings [batch]; "##" pieces are joined.

        Like HF's ``decode(..., clean_up_tokenization_spaces=False)``; lowercasing and accent
        stripping are not reversible.
        """
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.convert_to_tensor(ids)
        tokens = tf.gather(self._vocab_tensor, ids)
        if isinstance(tokens, tf.RaggedTensor) or tokens.shape.rank >= 1:
            text = tf.strings.reduce_join(tokens, axis=-1, separator=" ")
        else:
            text = tokens
        return tf.strings.regex_replace(text, " ##", "")


def _bytes_to_characters(text: tf.Tensor, offsets: tf.RaggedTensor) -> tf.RaggedTensor:
    """Byte offsets [n, (k)] into the UTF-8 strings ``text`` [n] -> code point offsets."""
    char_begins = tf.strings.unicode_decode_with_offsets(text, "UTF-8")[1]
    # Offsets into all the strings laid end to end, where the character starts are sorted.
    byte_base = tf.cumsum(tf.cast(tf.strings.length(text), tf.int64), exclusive=True)
    all_begins = char_begins.flat_values + tf.gather(byte_base, char_begins.value_rowids())
    rows = offsets.value_rowids()
    absolute = offsets.flat_values + tf.gather(byte_base, rows)
    # The characters that start before an offset (on a character boundary) are its index.
    index = tf.searchsorted(all_begins, absolute, side="left", out_type=tf.int64)
    return offsets.with_flat_values(index - tf.gather(char_begins.row_starts(), rows))
