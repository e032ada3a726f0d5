"""Sequence models and LSTM networks (the pytorch/tutorials beginner NLP
tutorial, BSD 3-Clause licence, (c) PyTorch contributors, by Robert Guthrie):
prepare_sequence, LSTMTagger (Embedding, LSTM, Linear, log_softmax), NLLLoss
and SGD over the tutorial's two sentences; then the same tagger batched as
people write it next: a bidirectional two-layer LSTM over
pad_sequence'd sentences with pack_padded_sequence / pad_packed_sequence and
ignore_index on the padding.  Adapted: more sentences, the weights from
NumPy, float64."""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence

torch.manual_seed(1)
rng = np.random.default_rng(1)


def init_(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.from_numpy(rng.uniform(-0.3, 0.3, tuple(p.shape))))


def prepare_sequence(seq, to_ix):
    idxs = [to_ix[w] for w in seq]
    return torch.tensor(idxs, dtype=torch.long)


training_data = [
    ("The dog ate the apple".split(), ["DET", "NN", "V", "DET", "NN"]),
    ("Everybody read that book".split(), ["NN", "V", "DET", "NN"]),
    ("The cat read the book".split(), ["DET", "NN", "V", "DET", "NN"]),
    ("Everybody ate".split(), ["NN", "V"]),
]
word_to_ix = {}
for sent, tags in training_data:
    for word in sent:
        if word not in word_to_ix:
            word_to_ix[word] = len(word_to_ix)
print(word_to_ix)
tag_to_ix = {"DET": 0, "NN": 1, "V": 2}
EMBEDDING_DIM = 6
HIDDEN_DIM = 6


class LSTMTagger(nn.Module):
    def __init__(self, embedding_dim, hidden_dim, vocab_size, tagset_size):
        super(LSTMTagger, self).__init__()
        self.hidden_dim = hidden_dim
        self.word_embeddings = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_dim)
        self.hidden2tag = nn.Linear(hidden_dim, tagset_size)

    def forward(self, sentence):
        embeds = self.word_embeddings(sentence)
        lstm_out, _ = self.lstm(embeds.view(len(sentence), 1, -1))
        tag_space = self.hidden2tag(lstm_out.view(len(sentence), -1))
        tag_scores = F.log_softmax(tag_space, dim=1)
        return tag_scores


model = LSTMTagger(EMBEDDING_DIM, HIDDEN_DIM, len(word_to_ix), len(tag_to_ix)).double()
init_(model)
loss_function = nn.NLLLoss()
optimizer = optim.SGD(model.parameters(), lr=0.1)
with torch.no_grad():
    inputs = prepare_sequence(training_data[0][0], word_to_ix)
    print(model(inputs))
for epoch in range(30):
    for sentence, tags in training_data:
        model.zero_grad()
        sentence_in = prepare_sequence(sentence, word_to_ix)
        targets = prepare_sequence(tags, tag_to_ix)
        tag_scores = model(sentence_in)
        loss = loss_function(tag_scores, targets)
        loss.backward()
        optimizer.step()
with torch.no_grad():
    inputs = prepare_sequence(training_data[0][0], word_to_ix)
    tag_scores = model(inputs)
    print(tag_scores, tag_scores.argmax(1))


class BatchedTagger(nn.Module):
    def __init__(self, vocab_size, tagset_size):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size + 1, EMBEDDING_DIM, padding_idx=vocab_size)
        self.lstm = nn.LSTM(EMBEDDING_DIM, HIDDEN_DIM, num_layers=2, bidirectional=True, batch_first=True)
        self.out = nn.Linear(2 * HIDDEN_DIM, tagset_size)

    def forward(self, padded, lengths):
        packed = pack_padded_sequence(self.embedding(padded), lengths, batch_first=True, enforce_sorted=False)
        output, (h_n, c_n) = self.lstm(packed)
        output, out_lengths = pad_packed_sequence(output, batch_first=True, padding_value=0.0)
        return self.out(output), h_n, out_lengths


pad = len(word_to_ix)
sentences = [prepare_sequence(s, word_to_ix) for s, _ in training_data]
tags = [prepare_sequence(t, tag_to_ix) for _, t in training_data]
padded = pad_sequence(sentences, batch_first=True, padding_value=pad)
padded_tags = pad_sequence(tags, batch_first=True, padding_value=-100)
lengths = torch.tensor([len(s) for s in sentences])
tagger = BatchedTagger(len(word_to_ix), len(tag_to_ix)).double()
init_(tagger)
optimizer = optim.Adam(tagger.parameters(), lr=0.02)
for epoch in range(20):
    scores, h_n, out_lengths = tagger(padded, lengths)
    loss = F.cross_entropy(scores.reshape(-1, scores.size(-1)), padded_tags.reshape(-1), ignore_index=-100)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if epoch % 5 == 4:
        print(epoch, round(loss.item(), 6), h_n.shape, out_lengths.tolist())
print((scores.argmax(-1) == padded_tags).sum().item(), "of", (padded_tags != -100).sum().item())
