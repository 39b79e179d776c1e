"""Sequence models: a Conv1d audio net, LSTM text classifiers, a Conv1d front end feeding an LSTM."""

from __future__ import annotations

from torch import nn


class AudioNet(nn.Module):
    """Raw waveform [N, 1, 400] -> Conv1d/BN/ReLU x3 (with a max pool) -> global avg pool -> Linear."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 8, 9, stride=4, padding=4, bias=False), nn.BatchNorm1d(8), nn.ReLU(inplace=True),
            nn.Conv1d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm1d(16), nn.ReLU(inplace=True),
            nn.MaxPool1d(2),
            nn.Conv1d(16, 32, 3, padding=1, bias=False), nn.BatchNorm1d(32), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool1d(1),
        )
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


class LSTMText(nn.Module):
    """Embedding(100, 16) -> 2-layer LSTM(hidden 32, optional bidirectional) -> Linear on the last time step.

    Tokens are [T, N] (``batch_first=False``) or [N, T] (``batch_first=True``), int64.
    """

    def __init__(self, bidirectional: bool = False, batch_first: bool = False, vocab: int = 100,
                 num_classes: int = 5):
        super().__init__()
        self.batch_first = batch_first
        self.embed = nn.Embedding(vocab, 16)
        self.lstm = nn.LSTM(16, 32, num_layers=2, bidirectional=bidirectional, batch_first=batch_first)
        self.fc = nn.Linear(32 * (2 if bidirectional else 1), num_classes)

    def forward(self, tokens):
        out, _ = self.lstm(self.embed(tokens))
        last = out[:, -1] if self.batch_first else out[-1]
        return self.fc(last)


class ConvLSTM(nn.Module):
    """Features [N, 8, T] -> Conv1d(8, 16)/BN/ReLU -> permute to [T, N, 16] -> LSTM(16, 24) -> Linear(last step)."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(8, 16, 3, padding=1, bias=False), nn.BatchNorm1d(16),
                                  nn.ReLU(inplace=True))
        self.lstm = nn.LSTM(16, 24)
        self.fc = nn.Linear(24, num_classes)

    def forward(self, x):
        x = self.conv(x).permute(2, 0, 1)
        out, _ = self.lstm(x)
        return self.fc(out[-1])
