"""The transformer encoder shared by SASRec (causal) and BERT4Rec (bidirectional).

Item ids inside the network are shifted by one: 0 is padding, ``1..n_items`` the items and
``n_items + 1`` BERT4Rec's mask token.
"""
from __future__ import annotations

import math

import torch


class _Block(torch.nn.Module):
    """Pre-norm self-attention block. SASRec (as the original code): queries normalised,
    keys/values not, dropout on the attention weights and inside the ReLU feed-forward of width
    d. BERT4Rec: a pre-norm transformer block with GELU feed-forward of width 4d."""

    def __init__(self, d, heads, dropout, bert: bool):
        super().__init__()
        self.bert = bert
        self.norm1 = torch.nn.LayerNorm(d, eps=1e-8)
        self.attn = torch.nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.norm2 = torch.nn.LayerNorm(d, eps=1e-8)
        width = 4 * d if bert else d
        self.ff = torch.nn.Sequential(torch.nn.Linear(d, width), torch.nn.GELU() if bert else torch.nn.ReLU(),
                                      torch.nn.Dropout(dropout), torch.nn.Linear(width, d), torch.nn.Dropout(dropout))
        self.drop = torch.nn.Dropout(dropout)

    def forward(self, x, attn_mask, key_padding_mask):
        q = self.norm1(x)
        kv = q if self.bert else x
        a, _ = self.attn(q, kv, kv, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False)
        if self.bert:  # pre-norm transformer
            x = x + self.drop(a)
            return x + self.ff(self.norm2(x))
        # SASRec: residual on the normalised queries, no dropout on the attention output (only
        # on its weights); the feed-forward's residual on its normalised input
        y = self.norm2(q + a)
        return y + self.ff(y)


class SequenceEncoder(torch.nn.Module):
    """Item + learned position embeddings, ``num_blocks`` attention blocks, final LayerNorm.
    ``causal=True`` is SASRec (each position sees itself and the past), False is BERT4Rec."""

    def __init__(self, n_items, d, max_len, num_blocks, num_heads, dropout, causal: bool):
        super().__init__()
        self.n_items, self.d, self.causal = n_items, d, causal
        self.item = torch.nn.Embedding(n_items + 2, d, padding_idx=0)
        self.pos = torch.nn.Embedding(max_len, d)
        self.drop = torch.nn.Dropout(dropout)
        self.blocks = torch.nn.ModuleList(_Block(d, num_heads, dropout, bert=not causal) for _ in range(num_blocks))
        self.norm = torch.nn.LayerNorm(d, eps=1e-8)
        self.bias = torch.nn.Parameter(torch.zeros(n_items)) if not causal else None
        torch.nn.init.xavier_normal_(self.item.weight[1:].data)
        torch.nn.init.xavier_normal_(self.pos.weight.data)

    def forward(self, seq, offset: int = 0, emb=None):
        """``seq`` (B, W) left-padded ids; ``offset`` = how many leading columns of the
        ``max_len`` window were trimmed (positions stay those of the full window, so the last
        column is always position ``max_len - 1``). Padded keys are masked, so the output does
        not depend on how much padding a batch carries (batches are trimmed to their longest
        sequence). ``emb``: the item embeddings of ``seq`` when already gathered."""
        B, W = seq.shape
        pad = seq == 0
        x = (self.item(seq) if emb is None else emb) * math.sqrt(self.d) + self.pos.weight[offset:offset + W].unsqueeze(0)
        x = self.drop(x) * ~pad.unsqueeze(-1)
        eye = torch.eye(W, dtype=torch.bool, device=seq.device)
        blocked = pad.unsqueeze(1) & ~eye  # a padded key is seen by nobody but itself
        if self.causal:
            blocked = blocked | torch.ones(W, W, dtype=torch.bool, device=seq.device).triu_(1)
        mask = blocked.repeat_interleave(self.blocks[0].attn.num_heads, dim=0) if self.blocks else None
        for blk in self.blocks:
            x = blk(x, mask, None) * ~pad.unsqueeze(-1)
        return self.norm(x)

    def item_vectors(self) -> torch.Tensor:
        """Output embeddings of items ``0..n_items-1`` (shared with the input)."""
        return self.item.weight[1:self.n_items + 1]

    def logits(self, h):
        out = h @ self.item_vectors().T
        return out if self.bias is None else out + self.bias

