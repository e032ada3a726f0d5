"""The word-level language model of the official PyTorch examples
(github.com/pytorch/examples, word_language_model/model.py and main.py, BSD
3-Clause licence, (c) PyTorch contributors): RNNModel (Embedding ->
LSTM/GRU/RNN_TANH -> Linear, tied weights, log_softmax), batchify,
get_batch, repackage_hidden, the training loop with clip_grad_norm_ and the
hand-written SGD step, and evaluate.  Adapted to small local data: a corpus
of this file's own docstring, a few steps per model, the weights drawn from
one NumPy generator (torch's and gpugrad's random streams differ), float64,
no dropout (the dropout masks would differ too).  The script's first lines
are today's plumbing: seeds, cudnn flags, the accelerator."""

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(1111)
torch.cuda.manual_seed(1111)
torch.backends.cudnn.benchmark = False
torch.backends.cudnn.deterministic = True
device = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else torch.device("cpu")


class Dictionary:
    def __init__(self):
        self.word2idx = {}
        self.idx2word = []

    def add_word(self, word):
        if word not in self.word2idx:
            self.idx2word.append(word)
            self.word2idx[word] = len(self.idx2word) - 1
        return self.word2idx[word]

    def __len__(self):
        return len(self.idx2word)


class Corpus:
    def __init__(self, text):
        self.dictionary = Dictionary()
        lines = [line.split() + ["<eos>"] for line in text.splitlines() if line.strip()]
        ids = [self.dictionary.add_word(word) for line in lines for word in line]
        cut = len(ids) * 4 // 5
        self.train = torch.tensor(ids[:cut], dtype=torch.int64)
        self.valid = torch.tensor(ids[cut:], dtype=torch.int64)


class RNNModel(nn.Module):
    """Container module with an encoder, a recurrent module, and a decoder."""

    def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.5, tie_weights=False):
        super(RNNModel, self).__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        if rnn_type in ['LSTM', 'GRU']:
            self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        else:
            try:
                nonlinearity = {'RNN_TANH': 'tanh', 'RNN_RELU': 'relu'}[rnn_type]
            except KeyError as e:
                raise ValueError("""An invalid option for `--model` was supplied,
                                 options are ['LSTM', 'GRU', 'RNN_TANH' or 'RNN_RELU']""") from e
            self.rnn = nn.RNN(ninp, nhid, nlayers, nonlinearity=nonlinearity, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            if nhid != ninp:
                raise ValueError('When using the tied flag, nhid must be equal to emsize')
            self.decoder.weight = self.encoder.weight
        self.init_weights()
        self.rnn_type = rnn_type
        self.nhid = nhid
        self.nlayers = nlayers

    def init_weights(self):
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output)
        decoded = decoded.view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        if self.rnn_type == 'LSTM':
            return (weight.new_zeros(self.nlayers, bsz, self.nhid),
                    weight.new_zeros(self.nlayers, bsz, self.nhid))
        else:
            return weight.new_zeros(self.nlayers, bsz, self.nhid)


def batchify(data, bsz):
    nbatch = data.size(0) // bsz
    data = data.narrow(0, 0, nbatch * bsz)
    data = data.view(bsz, -1).t().contiguous()
    return data.to(device)


def repackage_hidden(h):
    """Wraps hidden states in new Tensors, to detach them from their history."""
    if isinstance(h, torch.Tensor):
        return h.detach()
    else:
        return tuple(repackage_hidden(v) for v in h)


def get_batch(source, i, bptt):
    seq_len = min(bptt, len(source) - 1 - i)
    data = source[i:i + seq_len]
    target = source[i + 1:i + 1 + seq_len].view(-1)
    return data, target


corpus = Corpus(__doc__ * 3)
ntokens = len(corpus.dictionary)
print("vocab size", ntokens)
train_data = batchify(corpus.train, 4)
val_data = batchify(corpus.valid, 2)
criterion = nn.NLLLoss()
rng = np.random.default_rng(0)


def evaluate(model, data_source, bptt):
    model.eval()
    total_loss = 0.
    hidden = model.init_hidden(2)
    with torch.no_grad():
        for i in range(0, data_source.size(0) - 1, bptt):
            data, targets = get_batch(data_source, i, bptt)
            output, hidden = model(data, hidden)
            hidden = repackage_hidden(hidden)
            total_loss += len(data) * criterion(output, targets).item()
    return total_loss / (len(data_source) - 1)


def train(model, lr, bptt, clip, epoch):
    model.train()
    total_loss = 0.
    hidden = model.init_hidden(4)
    for batch, i in enumerate(range(0, train_data.size(0) - 1, bptt)):
        data, targets = get_batch(train_data, i, bptt)
        model.zero_grad()
        hidden = repackage_hidden(hidden)
        output, hidden = model(data, hidden)
        loss = criterion(output, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
        total_loss += loss.item()
    cur_loss = total_loss / (batch + 1)
    print('| epoch {:3d} | {:5d} batches | lr {:02.2f} | loss {:5.2f} | ppl {:8.2f}'.format(
        epoch, batch + 1, lr, cur_loss, math.exp(cur_loss)))


for rnn_type, nlayers, tied in (("LSTM", 2, True), ("GRU", 1, False), ("RNN_TANH", 2, False)):
    model = RNNModel(rnn_type, ntokens, 16, 16, nlayers, dropout=0.0, tie_weights=tied).double().to(device)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.from_numpy(rng.uniform(-0.2, 0.2, tuple(p.shape))))
    print(rnn_type, sum(p.numel() for p in model.parameters()), "parameters")
    lr = 5.0
    best_val_loss = None
    for epoch in range(1, 4):
        train(model, lr, bptt=7, clip=0.25, epoch=epoch)
        val_loss = evaluate(model, val_data, bptt=7)
        print('| end of epoch {:3d} | valid loss {:5.3f} | valid ppl {:8.3f}'.format(epoch, val_loss,
                                                                                     math.exp(val_loss)))
        if not best_val_loss or val_loss < best_val_loss:
            best_val_loss = val_loss
        else:
            lr /= 4.0
