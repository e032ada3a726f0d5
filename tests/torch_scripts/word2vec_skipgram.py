"""Pretraining word2vec with the skip-gram model and negative sampling, as
Dive into Deep Learning writes it (d2l.ai chapters 15.3-15.4, the PyTorch
version, MIT-0 code, (c) the d2l authors): subsampling of frequent words,
centers and contexts within a window, negative sampling by frequency**0.75,
batchify with masks and labels, skip_gram with two nn.Embedding and
torch.bmm, SigmoidBCELoss via binary_cross_entropy_with_logits(weight=mask),
Adam, and get_similar_tokens by cosine similarity with topk.  Adapted to
small local data: this docstring's words, the sampling drawn with NumPy,
float64."""

import collections

import numpy as np
import torch
from torch import nn

rng = np.random.default_rng(15)
sentences = [line.lower().replace(",", " ").replace(".", " ").split() for line in __doc__.split("\n") if line]
counter = collections.Counter(token for line in sentences for token in line)
idx_to_token = [token for token, freq in sorted(counter.items(), key=lambda x: (-x[1], x[0])) if freq >= 1]
token_to_idx = {token: i for i, token in enumerate(idx_to_token)}
corpus = [[token_to_idx[t] for t in line] for line in sentences]
num_tokens = sum(len(line) for line in corpus)
keep = {t: np.sqrt(1e-2 / (counter[t] / num_tokens)) for t in counter}
corpus = [[i for i in line if rng.uniform() < keep[idx_to_token[i]]] for line in corpus]
print(len(idx_to_token), "tokens,", sum(len(line) for line in corpus), "kept")

centers, contexts = [], []
for line in corpus:
    for i in range(len(line)):
        window_size = int(rng.integers(1, 3))
        indices = [j for j in range(max(0, i - window_size), min(len(line), i + 1 + window_size)) if j != i]
        if indices:
            centers.append(line[i])
            contexts.append([line[j] for j in indices])
weights = np.array([counter[t] ** 0.75 for t in idx_to_token])
negatives = [list(rng.choice(len(idx_to_token), 2 * len(c), p=weights / weights.sum())) for c in contexts]


def batchify(data):
    max_len = max(len(c) + len(n) for _, c, n in data)
    centers, contexts_negatives, masks, labels = [], [], [], []
    for center, context, negative in data:
        cur_len = len(context) + len(negative)
        centers += [center]
        contexts_negatives += [context + negative + [0] * (max_len - cur_len)]
        masks += [[1] * cur_len + [0] * (max_len - cur_len)]
        labels += [[1] * len(context) + [0] * (max_len - len(context))]
    return (torch.tensor(centers).reshape((-1, 1)), torch.tensor(contexts_negatives),
            torch.tensor(masks), torch.tensor(labels))


data_iter = torch.utils.data.DataLoader(list(zip(centers, contexts, negatives)), batch_size=32, shuffle=False,
                                        collate_fn=batchify)


def skip_gram(center, contexts_and_negatives, embed_v, embed_u):
    v = embed_v(center)
    u = embed_u(contexts_and_negatives)
    pred = torch.bmm(v, u.permute(0, 2, 1))
    return pred


class SigmoidBCELoss(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, inputs, target, mask=None):
        out = nn.functional.binary_cross_entropy_with_logits(inputs, target, weight=mask, reduction="none")
        return out.mean(dim=1)


loss = SigmoidBCELoss()
embed_size = 10
net = nn.Sequential(nn.Embedding(num_embeddings=len(idx_to_token), embedding_dim=embed_size),
                    nn.Embedding(num_embeddings=len(idx_to_token), embedding_dim=embed_size)).double()
with torch.no_grad():
    for p in net.parameters():
        p.copy_(torch.from_numpy(rng.uniform(-0.5, 0.5, tuple(p.shape))))
optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
for epoch in range(6):
    total, count = 0.0, 0
    for i, batch in enumerate(data_iter):
        optimizer.zero_grad()
        center, context_negative, mask, label = batch
        pred = skip_gram(center, context_negative, net[0], net[1])
        l = (loss(pred.reshape(label.shape).double(), label.double(), mask.double())  # noqa: E741
             / mask.sum(axis=1) * mask.shape[1])
        l.sum().backward()
        optimizer.step()
        total += l.sum().item()
        count += l.numel()
    if epoch % 2 == 1:
        print(f"epoch {epoch + 1}, loss {total / count:.5f}")


def get_similar_tokens(query_token, k, embed):
    W = embed.weight.data
    x = W[token_to_idx[query_token]]
    cos = torch.mv(W, x) / torch.sqrt(torch.sum(W * W, dim=1) * torch.sum(x * x) + 1e-9)
    topk = torch.topk(cos, k=k + 1)[1].cpu().numpy().astype("int32")
    for i in topk[1:]:
        print(f"cosine sim={float(cos[i]):.3f}: {idx_to_token[i]}")


get_similar_tokens("the", 3, net[0])
