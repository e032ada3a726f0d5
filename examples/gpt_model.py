"""A decoder-only transformer in GPT-2's layout, written as a PyTorch user
writes one: this file's only gpugrad-specific line is the import below.  The
torch twin (benchmarks/gpt_torch.py) runs this same file with that line
changed to ``import torch``.

Token and position embeddings, ``n_layer`` pre-LayerNorm blocks of causal
self-attention (``F.scaled_dot_product_attention``) and a GELU MLP, a final
LayerNorm, and an output layer tied to the token embedding, whose logits go
straight into ``F.linear_cross_entropy`` (chunked: the N x vocabulary logits
are never held) when targets are given.
"""

import dataclasses
import math

import gpugrad as torch
from gpugrad import nn
from gpugrad.nn import functional as F


@dataclasses.dataclass
class GPTConfig:
    vocab_size: int = 8192
    block_size: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    dropout: float = 0.0
    bias: bool = True


SIZES = {
    "tiny": dict(block_size=64, n_layer=2, n_head=4, n_embd=128),
    "small": dict(block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.1),
    "medium": dict(block_size=512, n_layer=12, n_head=12, n_embd=768, dropout=0.1),
}


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout

    def forward(self, x):
        B, T, C = x.size()  # noqa: N806 (the usual names)
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():      # GPT-2's scaled init of the residual projections
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        # torch's chunked linear_cross_entropy needs these options; gpugrad's always chunks
        options = getattr(nn, "LinearCrossEntropyOptions", None)
        self.loss_options = options() if options is not None else None

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self):
        return sum(p.numel() for p in self.parameters())

    def hidden(self, idx):
        B, T = idx.size()  # noqa: N806
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} is longer than the block size {self.config.block_size}")
        pos = torch.arange(0, T, dtype=torch.long, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.h:
            x = block(x)
        return self.ln_f(x)

    def forward(self, idx, targets=None):
        """(logits of the last position, None) without targets; (None, the mean
        cross-entropy) with them: the output layer and the loss are one chunked op."""
        x = self.hidden(idx)
        if targets is None:
            return F.linear(x[:, -1, :], self.wte.weight), None
        loss = F.linear_cross_entropy(x.view(-1, x.size(-1)), self.wte.weight, targets.view(-1),
                                      options=self.loss_options)
        return None, loss

    def configure_optimizer(self, weight_decay, learning_rate, betas):
        """AdamW; matrices decay, biases, LayerNorm and the position table do not."""
        decay = [p for n, p in self.named_parameters() if p.dim() >= 2 and n != "wpe.weight"]
        no_decay = [p for n, p in self.named_parameters() if p.dim() < 2 or n == "wpe.weight"]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None):
        """Append max_new_tokens sampled tokens to idx (B, T)."""
        for _ in range(max_new_tokens):
            context = idx if idx.size(1) <= self.config.block_size else idx[:, -self.config.block_size:]
            logits, _ = self(context)
            logits = logits / temperature
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float("inf")
            probs = F.softmax(logits, dim=-1)
            idx = torch.cat((idx, torch.multinomial(probs, num_samples=1, generator=generator)), dim=1)
        return idx
