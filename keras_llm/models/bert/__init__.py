from keras_llm.models.bert.bert import Bert
from keras_llm.models.bert.bert_classifier import BertClassifier
from keras_llm.models.bert.bert_contrastive import BertContrastive
from keras_llm.models.bert.bert_pretrainer import BertPretrainer
from keras_llm.models.bert.bert_question_answerer import BertQuestionAnswerer
from keras_llm.models.bert.bert_token_classifier import BertTokenClassifier

__all__ = [
    "Bert",
    "BertClassifier",
    "BertContrastive",
    "BertPretrainer",
    "BertQuestionAnswerer",
    "BertTokenClassifier",
]
