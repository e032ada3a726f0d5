"""A Transformer encoder for sequence classification, as the pytorch
tutorials write its parts ("Language Modeling with nn.Transformer",
BSD 3-Clause licence, (c) PyTorch contributors): PositionalEncoding with its
registered pe buffer of sines and cosines, nn.TransformerEncoderLayer /
nn.TransformerEncoder (batch_first, norm_first, gelu), a key padding mask,
masked mean pooling and a linear head; trained with AdamW, a warm-up
LambdaLR and label smoothing.  Adapted to small local data: sequences of
digits labelled by whether they contain more 7s than 3s, a tiny model, the
weights from NumPy, dropout 0, float64."""

import math

import numpy as np
import torch
from torch import Tensor, nn

rng = np.random.default_rng(2024)
torch.set_default_dtype(torch.float64)


class PositionalEncoding(nn.Module):
    def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = 5000):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, 1, d_model)
        pe[:, 0, 0::2] = torch.sin(position * div_term)
        pe[:, 0, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.pe[:x.size(0)]
        return self.dropout(x)


class Classifier(nn.Module):
    def __init__(self, ntoken, d_model, nhead, d_hid, nlayers, nclass):
        super().__init__()
        self.embedding = nn.Embedding(ntoken, d_model, padding_idx=0)
        self.pos_encoder = PositionalEncoding(d_model, 0.0, max_len=32)
        layer = nn.TransformerEncoderLayer(d_model, nhead, d_hid, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, nlayers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, nclass)
        self.d_model = d_model

    def forward(self, src, padding_mask):
        x = self.embedding(src) * math.sqrt(self.d_model)
        x = self.pos_encoder(x.transpose(0, 1)).transpose(0, 1)
        x = self.encoder(x, src_key_padding_mask=padding_mask)
        keep = (~padding_mask).unsqueeze(-1).to(x.dtype)
        pooled = (x * keep).sum(1) / keep.sum(1)
        return self.head(pooled)


lengths = rng.integers(4, 10, 48)
tokens = np.zeros((48, 10), dtype=np.int64)
for i, n in enumerate(lengths):
    tokens[i, :n] = rng.integers(1, 11, n)
labels = ((tokens == 8).sum(1) > (tokens == 4).sum(1)).astype(np.int64)
src, y = torch.from_numpy(tokens), torch.from_numpy(labels)
padding_mask = src == 0
model = Classifier(11, 16, 2, 32, 2, 2)
with torch.no_grad():
    for name, p in model.named_parameters():
        if "norm" not in name:
            p.copy_(torch.from_numpy(rng.uniform(-0.2, 0.2, tuple(p.shape))))
print(model.encoder.layers[0].self_attn.embed_dim, model.pos_encoder.pe.shape)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
warmup = 5
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
for step in range(24):
    batch = slice(16 * (step % 3), 16 * (step % 3 + 1))
    logits = model(src[batch], padding_mask[batch])
    loss = criterion(logits, y[batch])
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
    optimizer.step()
    scheduler.step()
    if step % 6 == 5:
        print(f"step {step + 1:3d} | loss {loss.item():.5f} | lr {scheduler.get_last_lr()[0]:.5f}")
model.eval()
with torch.no_grad():
    logits = model(src, padding_mask)
    print("accuracy", (logits.argmax(-1) == y).double().mean().item(), logits[:2])
