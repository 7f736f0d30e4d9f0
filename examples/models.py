"""Models to try ``linbench capture`` on, built from torch's own modules with random weights
(nothing is downloaded).  Each function returns ``(model, example_args)``::

    linbench capture examples/models.py:bert_encoder --out sweeps/bert_encoder.toml
    linbench run --sweep sweeps/bert_encoder.toml --only answer
"""

import torch
from torch import nn


def bert_encoder(layers: int = 12, batch: int = 8, seq: int = 128):
    """A BERT-base-sized encoder: 12 layers of d_model 768, 12 heads, a 3072-wide feed-forward,
    on a batch of 8 sequences of 128 tokens (batch first, as Hugging Face's BERT)."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(768, 12, 3072, dropout=0.0, activation="gelu", batch_first=True)
    model = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
    return model, (torch.randn(batch, seq, 768),)


def bert_encoder_layer():
    """One layer of the encoder above: what a per-layer study times."""
    return bert_encoder(layers=1)


def mlp_classifier():
    """A small MLP with a bias-less head: 784 -> 512 -> 512 -> 10 on a batch of 64."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                          nn.Linear(512, 10, bias=False))
    return model, (torch.randn(64, 784),)


def hf_bert(layers: int = 2, batch: int = 8, seq: int = 128):
    """Hugging Face's BertModel, BERT-base-sized but ``layers`` deep, built from a BertConfig with
    random weights (nothing is downloaded); needs ``pip install transformers``."""
    try:
        from transformers import BertConfig, BertModel
    except ImportError as exc:
        raise ImportError("hf_bert needs Hugging Face transformers: pip install transformers") from exc
    torch.manual_seed(0)
    config = BertConfig(num_hidden_layers=layers, attn_implementation="eager")
    model = BertModel(config)
    ids = torch.randint(0, config.vocab_size, (batch, seq))
    return model, {"input_ids": ids}
