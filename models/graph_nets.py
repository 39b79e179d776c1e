"""Graph networks in plain torch, written the way torch_geometric's layers compute (no torch_geometric needed).

Message passing is a gather over edges (``x[src]`` via ``index_select``) and a scatter into nodes
(``scatter_add`` with the index expanded from [E] to [E, C], as PyG's ``scatter`` does); the exporters write it as
Gather + ScatterElements(reduction='add'), the index an Expand whose shape states C. Not ``index_add``: TorchScript
exports it as a ScatterElements without reduction plus an Add, which keeps only one message per node when a node
receives several (every graph), so the exported model would not be the torch model.

- ``GCN``: two GCNConv layers, sym-normalised aggregation (degree from a scatter_add of ones), ReLU, Linear head.
- ``GAT``: GATConv(heads=4, concat) -> ELU -> GATConv(heads=2, mean) -> Linear: per-head projections, attention
  vectors a_src/a_dst, LeakyReLU, a segment softmax over each node's incoming edges (scatter max, scatter sum).
- ``DGCNN``: two EdgeConv blocks on a point cloud [B, 3, N]: knn by topk over pairwise distances, neighbour
  gather through a flat index, [B, C, N, k] views, Conv2d 1x1 on cat(x_j - x_i, x_i), max over k; then a Conv1d
  over the concatenated block outputs, global max pool and a Linear classifier.

Graph inputs: node features ``x`` [N, F] (dynamic node count) and ``edge_index`` [2, E] (dynamic edge count).
"""

from __future__ import annotations

import torch
from torch import nn

IN_FEATURES = 12
NUM_CLASSES = 5


class GCNConv(nn.Module):
    """x' = D^-1/2 (A + I) D^-1/2 x W + b (self loops added by the caller)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.lin = nn.Linear(cin, cout, bias=False)
        self.bias = nn.Parameter(torch.randn(cout) * 0.1)

    def forward(self, x, src, dst):
        h = self.lin(x)
        ones = torch.ones_like(dst, dtype=h.dtype)  # PyG's gcn_norm: scatter_add of edge weights into dst
        deg = torch.zeros(x.shape[0], dtype=h.dtype).scatter_add(0, dst, ones)
        norm = deg.pow(-0.5)
        w = (norm[src] * norm[dst]).unsqueeze(-1)
        msg = h.index_select(0, src) * w
        out = torch.zeros_like(h).scatter_add(0, dst.unsqueeze(-1).expand_as(msg), msg)
        return out + self.bias


class GCN(nn.Module):
    """GCNConv(12, 24) -> ReLU -> GCNConv(24, 16) -> ReLU -> Linear(16, 5), per node."""

    def __init__(self):
        super().__init__()
        self.conv1 = GCNConv(IN_FEATURES, 24)
        self.conv2 = GCNConv(24, 16)
        self.head = nn.Linear(16, NUM_CLASSES)

    def forward(self, x, edge_index):
        loops = torch.arange(x.shape[0])
        src = torch.cat([edge_index[0], loops])
        dst = torch.cat([edge_index[1], loops])
        x = torch.relu(self.conv1(x, src, dst))
        x = torch.relu(self.conv2(x, src, dst))
        return self.head(x)


class GATConv(nn.Module):
    """PyG's GATConv: h = x W viewed [N, H, C]; alpha_e = softmax over dst's edges of LeakyReLU(a_src.h_src +
    a_dst.h_dst); out_i = sum_e alpha_e h_src; heads concatenated ([N, H*C]) or averaged ([N, C]); + bias."""

    def __init__(self, cin: int, cout: int, heads: int, concat: bool):
        super().__init__()
        self.heads, self.cout, self.concat = heads, cout, concat
        self.lin = nn.Linear(cin, heads * cout, bias=False)
        self.att_src = nn.Parameter(torch.randn(1, heads, cout) * 0.3)
        self.att_dst = nn.Parameter(torch.randn(1, heads, cout) * 0.3)
        self.bias = nn.Parameter(torch.randn(heads * cout if concat else cout) * 0.1)

    def forward(self, x, src, dst):
        n = x.shape[0]
        h = self.lin(x).view(-1, self.heads, self.cout)
        a_src = (h * self.att_src).sum(-1)  # [N, H]
        a_dst = (h * self.att_dst).sum(-1)
        e = nn.functional.leaky_relu(a_src.index_select(0, src) + a_dst.index_select(0, dst), 0.2)  # [E, H]
        idx = dst.unsqueeze(-1).expand_as(e)
        # PyG subtracts each segment's max (scatter 'amax'); softmax is shift-invariant and TorchScript writes
        # scatter_reduce inside an If (opaque), so the shift here is each head's max over all edges.
        p = (e - e.amax(0, keepdim=True)).exp()
        denom = torch.zeros(n, self.heads).scatter_add(0, idx, p)
        alpha = p / (denom.index_select(0, dst) + 1e-16)
        msg = h.index_select(0, src) * alpha.unsqueeze(-1)  # [E, H, C]
        out = torch.zeros_like(h).scatter_add(0, dst.view(-1, 1, 1).expand_as(msg), msg)
        out = out.reshape(-1, self.heads * self.cout) if self.concat else out.mean(1)
        return out + self.bias


class GAT(nn.Module):
    """GATConv(12, 8, heads=4, concat) -> ELU -> GATConv(32, 8, heads=2, mean) -> ELU -> Linear(8, 5) (8 is
    ``hidden``, 4 ``heads``)."""

    def __init__(self, hidden: int = 8, heads: int = 4):
        super().__init__()
        self.conv1 = GATConv(IN_FEATURES, hidden, heads=heads, concat=True)
        self.conv2 = GATConv(heads * hidden, hidden, heads=2, concat=False)
        self.head = nn.Linear(hidden, NUM_CLASSES)

    def forward(self, x, edge_index):
        loops = torch.arange(x.shape[0])
        src = torch.cat([edge_index[0], loops])
        dst = torch.cat([edge_index[1], loops])
        x = nn.functional.elu(self.conv1(x, src, dst))
        x = nn.functional.elu(self.conv2(x, src, dst))
        return self.head(x)


def _knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [B, N, k] of each point's k nearest points (itself included), as DGCNN's reference knn."""
    inner = -2 * torch.matmul(x.transpose(2, 1), x)
    xx = torch.sum(x ** 2, dim=1, keepdim=True)
    dist = -xx - inner - xx.transpose(2, 1)
    return dist.topk(k=k, dim=-1)[1]


def _edge_features(x: torch.Tensor, k: int) -> torch.Tensor:
    """cat(x_j - x_i, x_i) as [B, 2C, N, k] (DGCNN's get_graph_feature)."""
    b, c, n = x.shape
    idx = _knn(x, k)
    base = torch.arange(b).view(-1, 1, 1) * n
    idx = (idx + base).view(-1)
    xt = x.transpose(2, 1).contiguous()  # [B, N, C]
    feat = xt.view(b * n, -1)[idx, :].view(b, n, k, c)
    xt = xt.view(b, n, 1, c).expand(-1, -1, k, -1)
    return torch.cat((feat - xt, xt), dim=3).permute(0, 3, 1, 2).contiguous()


class DGCNN(nn.Module):
    """EdgeConv(3 -> 16) -> EdgeConv(16 -> 16) -> Conv1d(32 -> 32) -> max over points -> Linear(32, 5)."""

    def __init__(self, k: int = 4):
        super().__init__()
        self.k = k
        self.conv1 = nn.Sequential(nn.Conv2d(6, 16, 1, bias=False), nn.BatchNorm2d(16), nn.LeakyReLU(0.2))
        self.conv2 = nn.Sequential(nn.Conv2d(32, 16, 1, bias=False), nn.BatchNorm2d(16), nn.LeakyReLU(0.2))
        self.conv3 = nn.Sequential(nn.Conv1d(32, 32, 1, bias=False), nn.BatchNorm1d(32), nn.LeakyReLU(0.2))
        self.head = nn.Linear(32, NUM_CLASSES)

    def forward(self, x):
        x1 = self.conv1(_edge_features(x, self.k)).max(dim=-1)[0]
        x2 = self.conv2(_edge_features(x1, self.k)).max(dim=-1)[0]
        x = self.conv3(torch.cat((x1, x2), dim=1))
        return self.head(x.max(dim=-1)[0])


def graph_inputs(batch: int = 2, nodes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Node features [N, 12] and a random edge_index [2, 3N] (N = 10 * batch unless given); deterministic."""
    n = nodes or 10 * batch
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, IN_FEATURES, generator=g)
    edge_index = torch.randint(0, n, (2, 3 * n), generator=g)
    return x, edge_index


def point_cloud(batch: int = 2, points: int = 24) -> tuple[torch.Tensor]:
    """A point cloud [B, 3, N] (deterministic)."""
    return (torch.randn(batch, 3, points, generator=torch.Generator().manual_seed(batch * 100 + points)),)
