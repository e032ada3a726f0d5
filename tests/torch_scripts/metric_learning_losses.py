"""Metric learning as the Siamese and triplet network tutorials write it
(after adambielski/siamese-triplet, BSD 3-Clause licence, and the
pytorch/examples siamese_network): an EmbeddingNet shared by the branches,
TripletNet with nn.TripletMarginLoss (and swap), SiameseNet with
nn.CosineEmbeddingLoss on pairs, a ranking head with nn.MarginRankingLoss,
and retrieval by F.pairwise_distance / F.cosine_similarity / torch.cdist.
Adapted to small local data: four Gaussian classes in 6-D from NumPy, the
weights from NumPy, float64."""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

rng = np.random.default_rng(21)
torch.set_default_dtype(torch.float64)
centres = rng.normal(0, 2, (4, 6))
labels = np.repeat(np.arange(4), 12)
points = torch.from_numpy(centres[labels] + rng.standard_normal((48, 6)))
labels_t = torch.from_numpy(labels)


class EmbeddingNet(nn.Module):
    def __init__(self):
        super(EmbeddingNet, self).__init__()
        self.fc = nn.Sequential(nn.Linear(6, 16), nn.PReLU(), nn.Linear(16, 16), nn.PReLU(), nn.Linear(16, 2))

    def forward(self, x):
        return self.fc(x)

    def get_embedding(self, x):
        return self.forward(x)


class TripletNet(nn.Module):
    def __init__(self, embedding_net):
        super(TripletNet, self).__init__()
        self.embedding_net = embedding_net

    def forward(self, x1, x2, x3):
        return self.embedding_net(x1), self.embedding_net(x2), self.embedding_net(x3)


def init_(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.from_numpy(rng.uniform(-0.4, 0.4, tuple(p.shape))))


def triplets():
    anchors = rng.integers(0, 48, 32)
    positives = np.array([rng.choice(np.flatnonzero(labels == labels[a])) for a in anchors])
    negatives = np.array([rng.choice(np.flatnonzero(labels != labels[a])) for a in anchors])
    return anchors, positives, negatives


embedding_net = EmbeddingNet()
init_(embedding_net)
model = TripletNet(embedding_net)
for swap in (False, True):
    loss_fn = nn.TripletMarginLoss(margin=1.0, p=2, swap=swap)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for epoch in range(8):
        a, p, n = triplets()
        optimizer.zero_grad()
        loss = loss_fn(*model(points[a], points[p], points[n]))
        loss.backward()
        optimizer.step()
    print("triplet", swap, round(loss.item(), 6), loss_fn)

pairs_a, pairs_b = rng.integers(0, 48, 40), rng.integers(0, 48, 40)
pair_target = torch.from_numpy(np.where(labels[pairs_a] == labels[pairs_b], 1.0, -1.0))
cosine_loss = nn.CosineEmbeddingLoss(margin=0.2)
optimizer = torch.optim.SGD(embedding_net.parameters(), lr=0.05, momentum=0.9)
for epoch in range(8):
    optimizer.zero_grad()
    loss = cosine_loss(embedding_net(points[pairs_a]), embedding_net(points[pairs_b]), pair_target)
    loss.backward()
    optimizer.step()
print("cosine", round(loss.item(), 6))

scorer = nn.Linear(2, 1)
init_(scorer)
ranking = nn.MarginRankingLoss(margin=0.5)
rank_target = torch.from_numpy(np.where(labels[pairs_a] > labels[pairs_b], 1.0, -1.0))
optimizer = torch.optim.Adam(scorer.parameters(), lr=0.05)
with torch.no_grad():
    emb = embedding_net(points)
for epoch in range(10):
    optimizer.zero_grad()
    loss = ranking(scorer(emb[pairs_a]).squeeze(1), scorer(emb[pairs_b]).squeeze(1), rank_target)
    loss.backward()
    optimizer.step()
print("ranking", round(loss.item(), 6), ranking.margin)

with torch.no_grad():
    query = emb[:4]
    d = torch.cdist(query, emb)
    nearest = d.topk(4, largest=False).indices[:, 1:]
    print("cdist", d.shape, (labels_t[nearest] == labels_t[:4, None]).double().mean().item())
    print("pairwise", F.pairwise_distance(query, emb[4:8]).tolist())
    print("cosine", F.cosine_similarity(query, emb[4:8], dim=1).tolist())
