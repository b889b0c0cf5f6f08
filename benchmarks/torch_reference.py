"""Plain-PyTorch xresnet1d50 + SimCLR and CPC, the contenders of `reference_speed.py`.

Written for the benchmark from the paper's description and the configuration of
the reference code (hhi-aml/ecg-selfsupervised: `clinical_ts/xresnet1d.py`,
`custom_simclr_bolts.py`, `clinical_ts/cpc.py`, `main_cpc_lightning.py`), not
copied from it. Shapes follow that configuration:

- xresnet1d50: stem of three conv-BN-ReLU (32, 32, 64 filters, kernel 5, the
  first with stride 2), max pool 3/2, four stages of (3, 4, 6, 3) bottleneck
  blocks of width 64 and expansion 4 (kernel 5), ResNet-D shortcut (average
  pool, then 1x1 conv-BN when the channels change), BN momentum 0.1 (Keras
  0.9) and eps 1e-5, concat pooling (max, avg) to 512 features. The
  reference's SimCLR swaps the first conv for `nn.Conv1d(12, 32, 5, 2, 2)`,
  which has a bias (32 parameters keras-ecg has not): `stem_bias=True`.
- SimCLR projection: Linear(512, 512) -> ReLU -> Linear(512, 16), no BN;
  NT-Xent at temperature 0.5 over the 2N projections, self-similarity masked.
- CPC: per-timestep 4 x 512 encoder (kernel 1 conv without bias -> BN -> ReLU),
  2-layer 512-unit `torch.nn.LSTM`, one bias-free 512 -> 512 map predicting
  the encoding `k = 12` steps ahead, InfoNCE against 128 negatives drawn
  uniformly from the same sequence, the positive excluded.

The reference scores CPC negatives in a Python loop over positions and sums the
per-position losses; here the positions are vectorised and averaged (the same
arithmetic per position, one kernel launch instead of ~1000). `scoring="gather"`
gathers the `(B, T - k, N, D)` negatives as the reference does;
`scoring="matrix"` scores every pair of positions of a sequence first and
gathers logits, keras-ecg's default for same-sequence negatives.
"""

import torch
import torch.nn.functional as F
from torch import nn

PAPER_XRESNET = dict(
    block_depths=(3, 4, 6, 3),
    widths=(64, 64, 64, 64),
    expansion=4,
    kernel_size=5,
    stem_filters=(32, 32, 64),
    stem_kernel_size=5,
)
PAPER_HEAD = dict(hidden_dim=512, output_dim=16, batch_norm=False)
PAPER_CPC = dict(
    filters=(512, 512, 512, 512),
    kernel_sizes=(1, 1, 1, 1),
    strides=(1, 1, 1, 1),
    units=512,
    num_layers=2,
    prediction_step=12,
    num_negatives=128,
)


def _batch_norm(channels, zero=False):
    bn = nn.BatchNorm1d(channels, momentum=0.1, eps=1e-5)
    with torch.no_grad():
        # fastai's init: beta 1e-3; gamma 0 on the last BN of a residual branch.
        bn.bias.fill_(1e-3)
        bn.weight.fill_(0.0 if zero else 1.0)
    return bn


class ConvBN(nn.Sequential):
    """Conv1d (torch padding `(k - 1) // 2`) -> BN -> optional ReLU."""

    def __init__(
        self, cin, cout, kernel_size, stride=1, relu=True, zero=False, bias=False
    ):
        conv = nn.Conv1d(
            cin,
            cout,
            kernel_size,
            stride=stride,
            padding=(kernel_size - 1) // 2,
            bias=bias,
        )
        nn.init.kaiming_normal_(conv.weight)
        if bias:
            nn.init.zeros_(conv.bias)
        layers = [conv, _batch_norm(cout, zero=zero)]
        if relu:
            layers.append(nn.ReLU())
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Basic (expansion 1) or bottleneck block with the ResNet-D shortcut."""

    def __init__(self, cin, width, expansion, stride, kernel_size):
        super().__init__()
        cout = width * expansion
        if expansion == 1:
            self.branch = nn.Sequential(
                ConvBN(cin, width, kernel_size, stride),
                ConvBN(width, cout, kernel_size, relu=False, zero=True),
            )
        else:
            self.branch = nn.Sequential(
                ConvBN(cin, width, 1),
                ConvBN(width, width, kernel_size, stride),
                ConvBN(width, cout, 1, relu=False, zero=True),
            )
        shortcut = []
        if stride != 1:
            shortcut.append(nn.AvgPool1d(2, ceil_mode=True))
        if cin != cout:
            shortcut.append(ConvBN(cin, cout, 1, relu=False))
        self.shortcut = nn.Sequential(*shortcut)

    def forward(self, x):
        return F.relu(self.branch(x) + self.shortcut(x))


class XResNet1d(nn.Module):
    """xresnet1d with concat pooling; input `(batch, leads, time)`.

    Args:
        block_depths, widths, expansion, kernel_size, stem_filters,
            stem_kernel_size: as keras-ecg's `XResNet1D`.
        input_leads: input channels.
        stem_bias: give the first stem conv a bias, as the reference's SimCLR.
    """

    def __init__(
        self,
        block_depths=PAPER_XRESNET["block_depths"],
        widths=PAPER_XRESNET["widths"],
        expansion=PAPER_XRESNET["expansion"],
        kernel_size=PAPER_XRESNET["kernel_size"],
        stem_filters=PAPER_XRESNET["stem_filters"],
        stem_kernel_size=PAPER_XRESNET["stem_kernel_size"],
        input_leads=12,
        stem_bias=True,
    ):
        super().__init__()
        layers = []
        cin = input_leads
        for i, filters in enumerate(stem_filters):
            layers.append(
                ConvBN(
                    cin,
                    filters,
                    stem_kernel_size,
                    stride=2 if i == 0 else 1,
                    bias=stem_bias and i == 0,
                )
            )
            cin = filters
        layers.append(nn.MaxPool1d(3, stride=2, padding=1))
        for stage, (depth, width) in enumerate(zip(block_depths, widths)):
            for block in range(depth):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(ResBlock(cin, width, expansion, stride, kernel_size))
                cin = width * expansion
        self.body = nn.Sequential(*layers)
        self.output_dim = 2 * cin

    def forward(self, x):
        x = self.body(x)
        return torch.cat([x.amax(dim=-1), x.mean(dim=-1)], dim=-1)


class ProjectionHead(nn.Sequential):
    """Linear -> [BN] -> ReLU -> Linear (the reference: no BN, 512 -> 16)."""

    def __init__(self, input_dim, hidden_dim=512, output_dim=16, batch_norm=False):
        layers = [nn.Linear(input_dim, hidden_dim)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim, momentum=0.1, eps=1e-5))
        layers += [nn.ReLU(), nn.Linear(hidden_dim, output_dim)]
        super().__init__(*layers)


def nt_xent(z1, z2, temperature=0.5):
    """SimCLR's NT-Xent over 2N L2-normalised projections, self-pairs masked."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    logits = z @ z.t() / temperature
    eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, targets)


class SimCLRReference(nn.Module):
    """Encoder + projection head; `forward(view_1, view_2)` returns the loss."""

    def __init__(self, encoder=None, head=None, temperature=0.5):
        super().__init__()
        self.encoder = encoder if encoder is not None else XResNet1d()
        self.head = (
            head
            if head is not None
            else ProjectionHead(self.encoder.output_dim, **PAPER_HEAD)
        )
        self.temperature = temperature

    def forward(self, view_1, view_2):
        # Each view through the network on its own (BN statistics per view).
        z1 = self.head(self.encoder(view_1))
        z2 = self.head(self.encoder(view_2))
        return nt_xent(z1, z2, self.temperature)


class CPCEncoder(nn.Module):
    """Conv (no bias) -> BN -> ReLU per layer, TensorFlow "same" padding."""

    def __init__(
        self, input_leads=12, filters=PAPER_CPC["filters"], kernel_sizes=1, strides=1
    ):
        super().__init__()
        n = len(filters)
        kernel_sizes = (
            (kernel_sizes,) * n
            if isinstance(kernel_sizes, int)
            else (tuple(kernel_sizes))
        )
        strides = (strides,) * n if isinstance(strides, int) else tuple(strides)
        self.kernel_sizes, self.strides = kernel_sizes, strides
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        cin = input_leads
        for f, k, s in zip(filters, kernel_sizes, strides):
            self.convs.append(nn.Conv1d(cin, f, k, stride=s, bias=False))
            self.norms.append(nn.BatchNorm1d(f, momentum=0.1, eps=1e-5))
            cin = f
        self.output_dim = cin

    def forward(self, x):
        for conv, norm, k, s in zip(
            self.convs, self.norms, self.kernel_sizes, self.strides
        ):
            length = x.shape[-1]
            total = max(k - s + (-length) % s, 0)
            if total:
                x = F.pad(x, (total // 2, total - total // 2))
            x = F.relu(norm(conv(x)))
        return x


class CPCReference(nn.Module):
    """CPC: encoder -> LSTM -> one bias-free map predicting `k` steps ahead.

    `forward(x)` on `(batch, leads, time)` returns the InfoNCE loss.

    Args:
        filters, kernel_sizes, strides: the encoder's layers.
        units, num_layers: the LSTM.
        prediction_step: `k`, how far ahead the predictor looks.
        num_negatives: negatives per prediction, from the same sequence.
        scoring: `"gather"` (the reference's) or `"matrix"` (see module doc).
    """

    def __init__(
        self,
        input_leads=12,
        filters=PAPER_CPC["filters"],
        kernel_sizes=PAPER_CPC["kernel_sizes"],
        strides=PAPER_CPC["strides"],
        units=PAPER_CPC["units"],
        num_layers=PAPER_CPC["num_layers"],
        prediction_step=PAPER_CPC["prediction_step"],
        num_negatives=PAPER_CPC["num_negatives"],
        scoring="gather",
    ):
        super().__init__()
        if scoring not in ("gather", "matrix"):
            raise ValueError(f"CPCReference: unknown scoring {scoring!r}.")
        self.encoder = CPCEncoder(input_leads, filters, kernel_sizes, strides)
        dim = self.encoder.output_dim
        self.rnn = nn.LSTM(dim, units, num_layers=num_layers, batch_first=True)
        self.proj = nn.Linear(units, dim, bias=False)
        self.prediction_step = prediction_step
        self.num_negatives = num_negatives
        self.scoring = scoring

    def forward(self, x):
        z = self.encoder(x).transpose(1, 2)  # (B, T, D)
        context, _ = self.rnn(z)
        batch, length, _ = z.shape
        k = self.prediction_step
        predictions = self.proj(context[:, : length - k])  # (B, T - k, D)
        # Negatives: uniform over the sequence's other T - 1 positions.
        positive_t = torch.arange(k, length, device=x.device).view(1, -1, 1)
        idx = torch.randint(
            0, length - 1, (batch, length - k, self.num_negatives), device=x.device
        )
        idx = idx + (idx >= positive_t).long()
        if self.scoring == "gather":
            rows = torch.arange(batch, device=x.device).view(-1, 1, 1)
            negatives = z[rows, idx]  # (B, T - k, N, D)
            positive = (predictions * z[:, k:]).sum(-1, keepdim=True)
            negative = torch.einsum("btd,btnd->btn", predictions, negatives)
        else:
            scores = predictions @ z.transpose(1, 2)  # (B, T - k, T)
            positive = scores.gather(-1, positive_t.expand(batch, -1, 1))
            negative = scores.gather(-1, idx)
        logits = torch.cat([positive, negative], dim=-1)
        targets = torch.zeros(logits.shape[:-1], dtype=torch.long, device=x.device)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def count_parameters(module, running_stats=False):
    """Trainable parameters, plus BN running mean/var if `running_stats`.

    Keras' `count_params()` counts BN moving statistics; torch keeps them as
    buffers (beside `num_batches_tracked`, which Keras has no counterpart of).
    """
    total = sum(p.numel() for p in module.parameters() if p.requires_grad)
    if running_stats:
        total += sum(
            b.numel()
            for name, b in module.named_buffers()
            if name.endswith(("running_mean", "running_var"))
        )
    return total


def lstm_second_bias_count(lstm):
    """Parameters of torch's second LSTM bias (`bias_hh`), absent in Keras."""
    return sum(
        p.numel() for name, p in lstm.named_parameters() if name.startswith("bias_hh")
    )


def train_step(model, optimizer, *inputs):
    """One plain eager step: forward (the loss), backward, optimizer update."""
    optimizer.zero_grad(set_to_none=True)
    loss = model(*inputs)
    loss.backward()
    optimizer.step()
    return loss
