"""Matrix factorisation for recommendation, as Dive into Deep Learning
writes it (d2l.ai chapter 21.3, the PyTorch port, MIT-0 code, (c) the d2l
authors) and the BPR ranking variant of its chapter 21.5: user and item
nn.Embedding factors with bias embeddings, an MSE-trained rating model with
Adam and weight decay, evaluation by RMSE, then Bayesian personalised ranking
with -logsigmoid of score differences and hit rate at k.  Adapted to small
local data: a low-rank rating matrix made with NumPy, the weights from
NumPy, float64."""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

rng = np.random.default_rng(17)
num_users, num_items, rank = 12, 10, 3
truth = rng.normal(0, 1, (num_users, rank)) @ rng.normal(0, 1, (rank, num_items)) + 3
observed = rng.uniform(size=truth.shape) < 0.6
users, items = np.nonzero(observed)
ratings = truth[users, items] + 0.1 * rng.standard_normal(users.size)
users_t, items_t, ratings_t = torch.from_numpy(users), torch.from_numpy(items), torch.from_numpy(ratings)
print(len(users), "ratings of", num_users * num_items)


class MF(nn.Module):
    def __init__(self, num_factors, num_users, num_items, **kwargs):
        super(MF, self).__init__(**kwargs)
        self.P = nn.Embedding(num_embeddings=num_users, embedding_dim=num_factors)
        self.Q = nn.Embedding(num_embeddings=num_items, embedding_dim=num_factors)
        self.user_bias = nn.Embedding(num_users, 1)
        self.item_bias = nn.Embedding(num_items, 1)

    def forward(self, user_id, item_id):
        P_u = self.P(user_id)
        Q_i = self.Q(item_id)
        b_u = self.user_bias(user_id)
        b_i = self.item_bias(item_id)
        outputs = (P_u * Q_i).sum(axis=1) + b_u.squeeze() + b_i.squeeze()
        return outputs.flatten()


def init_(module, scale):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.from_numpy(rng.normal(0, scale, tuple(p.shape))))
    return module


def evaluator(net, users, items, ratings):
    with torch.no_grad():
        rmse = torch.sqrt(F.mse_loss(net(users, items), ratings))
    return float(rmse)


net = init_(MF(4, num_users, num_items), 0.1).double()
loss = nn.MSELoss()
trainer = torch.optim.Adam(net.parameters(), lr=0.05, weight_decay=1e-5)
for epoch in range(30):
    for start in range(0, len(users), 24):
        batch = slice(start, start + 24)
        trainer.zero_grad()
        l = loss(net(users_t[batch], items_t[batch]), ratings_t[batch])  # noqa: E741
        l.backward()
        trainer.step()
    if epoch % 10 == 9:
        print(f"epoch {epoch + 1}, train rmse {evaluator(net, users_t, items_t, ratings_t):.5f}")


class BPRLoss(nn.Module):
    def forward(self, positive, negative):
        return -F.logsigmoid(positive - negative).sum()


liked = truth > 3.5
pos_users, pos_items = np.nonzero(liked & observed)
neg_items = np.array([rng.choice(np.flatnonzero(~liked[u])) for u in pos_users])
ranker = init_(MF(4, num_users, num_items), 0.1).double()
bpr = BPRLoss()
optimizer = torch.optim.Adam(ranker.parameters(), lr=0.05)
u_t, p_t, n_t = torch.from_numpy(pos_users), torch.from_numpy(pos_items), torch.from_numpy(neg_items)
for epoch in range(20):
    optimizer.zero_grad()
    l = bpr(ranker(u_t, p_t), ranker(u_t, n_t))  # noqa: E741
    l.backward()
    optimizer.step()
print("bpr loss", round(l.item(), 6))
with torch.no_grad():
    scores = ranker(torch.arange(num_users).repeat_interleave(num_items), torch.arange(num_items).repeat(num_users))
    top = scores.view(num_users, num_items).topk(3, dim=1).indices
    hits = torch.from_numpy(liked).gather(1, top).double().mean()
print("hit rate at 3", hits.item(), top[0].tolist())
