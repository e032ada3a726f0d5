"""Text classification with nn.EmbeddingBag (the pytorch/tutorials
"Text classification with the torchtext library" tutorial, BSD 3-Clause
licence, (c) PyTorch contributors): a vocabulary built from the training
text, collate_batch with offsets from cumsum, TextClassificationModel
(EmbeddingBag, Linear, init_weights with uniform_ and zero_), train and
evaluate with CrossEntropyLoss, SGD with StepLR and clip_grad_norm_(0.1),
and predict.  Adapted to small local data: a few headlines written here,
no torchtext (the tokenizer is str.split), the weights from NumPy,
float64."""

import time
from collections import Counter

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

rng = np.random.default_rng(0)
device = torch.device("cpu")
train_iter = [(1, "stocks rally as markets rise"), (2, "team wins the final match"),
              (3, "new phone chip is faster"), (1, "markets fall on rate fears"),
              (2, "player scores twice in the match"), (3, "the chip maker shows a new phone"),
              (1, "rate cut lifts stocks"), (2, "coach praises the team"), (3, "faster chip for the phone")] * 2
counter = Counter(word for _, text in train_iter for word in text.split())
vocab = {word: i + 1 for i, (word, _) in enumerate(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))}
text_pipeline = lambda x: [vocab.get(token, 0) for token in x.split()]  # noqa: E731
label_pipeline = lambda x: int(x) - 1  # noqa: E731
print(text_pipeline("the team wins the chip"), label_pipeline("3"))


def collate_batch(batch):
    label_list, text_list, offsets = [], [], [0]
    for _label, _text in batch:
        label_list.append(label_pipeline(_label))
        processed_text = torch.tensor(text_pipeline(_text), dtype=torch.int64)
        text_list.append(processed_text)
        offsets.append(processed_text.size(0))
    label_list = torch.tensor(label_list, dtype=torch.int64)
    offsets = torch.tensor(offsets[:-1]).cumsum(dim=0)
    text_list = torch.cat(text_list)
    return label_list.to(device), text_list.to(device), offsets.to(device)


class TextClassificationModel(nn.Module):
    def __init__(self, vocab_size, embed_dim, num_class):
        super(TextClassificationModel, self).__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, sparse=False)
        self.fc = nn.Linear(embed_dim, num_class)
        self.init_weights()

    def init_weights(self):
        initrange = 0.5
        with torch.no_grad():
            self.embedding.weight.copy_(torch.from_numpy(rng.uniform(-initrange, initrange,
                                                                     tuple(self.embedding.weight.shape))))
            self.fc.weight.copy_(torch.from_numpy(rng.uniform(-initrange, initrange, tuple(self.fc.weight.shape))))
        self.fc.bias.data.zero_()

    def forward(self, text, offsets):
        embedded = self.embedding(text, offsets)
        return self.fc(embedded)


num_class = len(set([label for (label, text) in train_iter]))
model = TextClassificationModel(len(vocab) + 1, 8, num_class).double().to(device)
print(model)


def train(dataloader):
    model.train()
    total_acc, total_count = 0, 0
    log_interval = 2
    start_time = time.time()
    for idx, (label, text, offsets) in enumerate(dataloader):
        optimizer.zero_grad()
        predicted_label = model(text, offsets)
        loss = criterion(predicted_label, label)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        optimizer.step()
        total_acc += (predicted_label.argmax(1) == label).sum().item()
        total_count += label.size(0)
        if idx % log_interval == 0 and idx > 0:
            elapsed = time.time() - start_time  # noqa: F841
            print("| epoch {:3d} | {:5d}/{:5d} batches | accuracy {:8.3f} | loss {:8.5f}".format(
                epoch, idx, len(dataloader), total_acc / total_count, loss.item()))
            total_acc, total_count = 0, 0


def evaluate(dataloader):
    model.eval()
    total_acc, total_count = 0, 0
    with torch.no_grad():
        for idx, (label, text, offsets) in enumerate(dataloader):
            predicted_label = model(text, offsets)
            total_acc += (predicted_label.argmax(1) == label).sum().item()
            total_count += label.size(0)
    return total_acc / total_count


criterion = torch.nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=5)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1.0, gamma=0.1)
train_dataloader = DataLoader(train_iter, batch_size=3, shuffle=False, collate_fn=collate_batch)
valid_dataloader = DataLoader(train_iter[:6], batch_size=3, shuffle=False, collate_fn=collate_batch)
total_accu = None
for epoch in range(1, 5):
    train(train_dataloader)
    accu_val = evaluate(valid_dataloader)
    if total_accu is not None and total_accu > accu_val:
        scheduler.step()
    else:
        total_accu = accu_val
    print("| end of epoch {:3d} | valid accuracy {:8.3f} | lr {}".format(epoch, accu_val, scheduler.get_last_lr()))

ag_news_label = {1: "World", 2: "Sports", 3: "Sci/Tec"}


def predict(text, text_pipeline):
    with torch.no_grad():
        text = torch.tensor(text_pipeline(text))
        output = model(text, torch.tensor([0]))
        return output.argmax(1).item() + 1


print("This is a %s news" % ag_news_label[predict("the team wins", text_pipeline)])
print(model.embedding(torch.tensor([[1, 2], [3, 4]])).shape)
