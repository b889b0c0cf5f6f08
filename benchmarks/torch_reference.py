"""Plain-PyTorch xresnet1d50 + SimCLR, BYOL, SwAV and CPC for `reference_speed.py`.

Written for the benchmark from the paper's description and the configuration of
the reference code (hhi-aml/ecg-selfsupervised: `clinical_ts/xresnet1d.py`,
`custom_simclr_bolts.py`, `custom_byol_bolts.py`, `custom_swav_bolts.py`,
`clinical_ts/cpc.py`, `main_cpc_lightning.py`), not copied from it. Shapes
follow that configuration:

- xresnet1d50: stem of three conv-BN-ReLU (32, 32, 64 filters, kernel 5, the
  first with stride 2), max pool 3/2, four stages of (3, 4, 6, 3) bottleneck
  blocks of width 64 and expansion 4 (kernel 5), ResNet-D shortcut (average
  pool, then 1x1 conv-BN when the channels change), BN momentum 0.1 (Keras
  0.9) and eps 1e-5, concat pooling (max, avg) to 512 features. The
  reference's SimCLR swaps the first conv for `nn.Conv1d(12, 32, 5, 2, 2)`,
  which has a bias (32 parameters keras-ecg has not): `stem_bias=True`.
  BYOL and SwAV build their encoder through the same class, so they carry
  the same bias.
- SimCLR projection: Linear(512, 512) -> ReLU -> Linear(512, 16), no BN;
  NT-Xent at temperature 0.5 over the 2N projections, self-similarity masked.
- BYOL: online encoder -> projector -> predictor, each MLP Linear (no bias)
  -> BN -> ReLU -> Linear, 512 -> 512 -> 16 (the predictor from 16); the
  target (encoder + projector) is a `deepcopy` without gradients, in training
  mode (batch statistics), moved after every optimizer step by
  `target = tau_k target + (1 - tau_k) online` over the parameters (not the
  BN buffers), `tau_k` on keras-ecg's cosine schedule from `tau = 0.996`.
  Loss: `mean(2 - 2 cos(p_1, z_2)) + mean(2 - 2 cos(p_2, z_1))`, each view
  through each network on its own (BN statistics per view). keras-ecg moves
  the target with the pre-update online weights (a one-step lag; the same
  arithmetic per step). The reference averages only parameters named
  `weight`; here, as in keras-ecg, every parameter.
- SwAV: both views through the encoder in one batch (as keras-ecg and the
  reference group crops of equal length), projector Linear -> BN -> ReLU ->
  Linear 512 -> 2048 -> 128, L2 normalisation, scores against 3000
  prototypes L2-normalised in the forward pass (as keras-ecg; the reference
  normalises them after each optimizer step instead), codes by Sinkhorn-Knopp
  (3 iterations, epsilon 0.05, no gradient), swapped prediction at
  temperature 0.1, averaged over the two assigned views. Two views and no
  queue or prototype freeze, as `build_method("swav", size="paper")`
  (the reference adds small crops, a queue from epoch 15 and a first-epoch
  freeze).
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

import copy
import math

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
# BYOL's projector and predictor (predictor input 16), SwAV's projector.
PAPER_BYOL_HEAD = dict(
    hidden_dim=512, output_dim=16, batch_norm=True, hidden_bias=False
)
PAPER_SWAV_HEAD = dict(hidden_dim=2048, output_dim=128, batch_norm=True)
PAPER_BYOL = dict(tau=0.996)
PAPER_SWAV = dict(
    num_prototypes=3000, temperature=0.1, epsilon=0.05, sinkhorn_iterations=3
)
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
    """Linear -> [BN] -> ReLU -> Linear (the reference SimCLR: no BN, 512 -> 16).

    `hidden_bias=False` drops the first Linear's bias (BYOL's MLP).
    """

    def __init__(
        self,
        input_dim,
        hidden_dim=512,
        output_dim=16,
        batch_norm=False,
        hidden_bias=True,
    ):
        layers = [nn.Linear(input_dim, hidden_dim, bias=hidden_bias)]
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


def byol_loss(p1, p2, z1, z2):
    """Symmetric BYOL loss: `mean(2 - 2 cos(p1, z2)) + mean(2 - 2 cos(p2, z1))`."""

    def regression(p, z):
        return (2 - 2 * (F.normalize(p, dim=1) * F.normalize(z, dim=1)).sum(1)).mean()

    return regression(p1, z2.detach()) + regression(p2, z1.detach())


class BYOLReference(nn.Module):
    """Online encoder/projector/predictor and an EMA target.

    `forward(view_1, view_2)` returns the loss; call `update_target()` after
    every optimizer step (`train_step` does).

    Args:
        encoder, projector, predictor: the online network (defaults: the
            paper's xresnet1d50 and BYOL MLPs).
        tau: base EMA decay.
        total_steps: steps `K` of the cosine schedule of `tau_k`; None keeps
            `tau` constant.
    """

    def __init__(
        self,
        encoder=None,
        projector=None,
        predictor=None,
        tau=PAPER_BYOL["tau"],
        total_steps=None,
    ):
        super().__init__()
        self.encoder = encoder if encoder is not None else XResNet1d()
        if projector is None:
            projector = ProjectionHead(self.encoder.output_dim, **PAPER_BYOL_HEAD)
        if predictor is None:
            predictor = ProjectionHead(PAPER_BYOL_HEAD["output_dim"], **PAPER_BYOL_HEAD)
        self.projector, self.predictor = projector, predictor
        # The target starts as an exact copy and never gets gradients; it
        # stays in training mode (BN batch statistics), as in BYOL.
        self.target_encoder = copy.deepcopy(self.encoder)
        self.target_projector = copy.deepcopy(self.projector)
        for p in self._target_parameters():
            p.requires_grad_(False)
        self.tau = tau
        self.total_steps = total_steps
        self.step = 0

    def _online_parameters(self):
        return list(self.encoder.parameters()) + list(self.projector.parameters())

    def _target_parameters(self):
        return list(self.target_encoder.parameters()) + list(
            self.target_projector.parameters()
        )

    def tau_at(self, step):
        if not self.total_steps:
            return self.tau
        progress = min(step / self.total_steps, 1.0)
        return 1 - (1 - self.tau) * (math.cos(math.pi * progress) + 1) / 2

    def forward(self, view_1, view_2):
        p1 = self.predictor(self.projector(self.encoder(view_1)))
        p2 = self.predictor(self.projector(self.encoder(view_2)))
        with torch.no_grad():
            z1 = self.target_projector(self.target_encoder(view_1))
            z2 = self.target_projector(self.target_encoder(view_2))
        return byol_loss(p1, p2, z1, z2)

    @torch.no_grad()
    def update_target(self):
        """`target = tau_k target + (1 - tau_k) online` over all parameters."""
        tau = self.tau_at(self.step)
        # lerp: target + (1 - tau) (online - target), one multi-tensor op.
        torch._foreach_lerp_(
            self._target_parameters(), self._online_parameters(), 1.0 - tau
        )
        self.step += 1


@torch.no_grad()
def sinkhorn_knopp(scores, epsilon=0.05, num_iterations=3):
    """SwAV's equipartition codes of `(B, K)` scores; rows sum to 1.

    The SwAV paper's exponential form: the scores are cosines, so
    `exp(scores / epsilon)` stays below `e^20` at epsilon 0.05 (keras-ecg
    computes the same normalisations in the log domain).
    """
    q = torch.exp(scores.float() / epsilon).t()  # (K, B)
    num_prototypes, batch = q.shape
    q = q / q.sum()
    for _ in range(num_iterations):
        q = q / q.sum(dim=1, keepdim=True) / num_prototypes
        q = q / q.sum(dim=0, keepdim=True) / batch
    return (q * batch).t()


def swav_loss(
    view_scores, crops_for_assign=(0, 1), temperature=0.1, epsilon=0.05, iterations=3
):
    """Swapped prediction: every other view predicts an assigned view's codes."""
    total = 0.0
    for crop_id in crops_for_assign:
        codes = sinkhorn_knopp(view_scores[crop_id].detach(), epsilon, iterations)
        subloss = 0.0
        for v, scores in enumerate(view_scores):
            if v != crop_id:
                log_probs = F.log_softmax(scores / temperature, dim=1)
                subloss = subloss - (codes * log_probs).sum(1).mean()
        total = total + subloss / (len(view_scores) - 1)
    return total / len(crops_for_assign)


class SwAVReference(nn.Module):
    """Encoder -> projector -> L2 norm -> prototypes; `forward(*views)` -> loss.

    Args:
        encoder, projector: defaults: the paper's xresnet1d50 and SwAV MLP.
        num_prototypes, temperature, epsilon, sinkhorn_iterations: SwAV's.
    """

    def __init__(
        self,
        encoder=None,
        projector=None,
        num_prototypes=PAPER_SWAV["num_prototypes"],
        temperature=PAPER_SWAV["temperature"],
        epsilon=PAPER_SWAV["epsilon"],
        sinkhorn_iterations=PAPER_SWAV["sinkhorn_iterations"],
    ):
        super().__init__()
        self.encoder = encoder if encoder is not None else XResNet1d()
        if projector is None:
            projector = ProjectionHead(self.encoder.output_dim, **PAPER_SWAV_HEAD)
        self.projector = projector
        dim = [m for m in projector.modules() if isinstance(m, nn.Linear)][-1]
        self.prototypes = nn.Parameter(torch.empty(num_prototypes, dim.out_features))
        nn.init.xavier_uniform_(self.prototypes)
        self.temperature = temperature
        self.epsilon = epsilon
        self.sinkhorn_iterations = sinkhorn_iterations

    def forward(self, *views):
        # Views of equal length share one encoder pass (and BN statistics).
        z = F.normalize(self.projector(self.encoder(torch.cat(views))), dim=1)
        scores = z @ F.normalize(self.prototypes, dim=1).t()
        return swav_loss(
            scores.chunk(len(views)),
            temperature=self.temperature,
            epsilon=self.epsilon,
            iterations=self.sinkhorn_iterations,
        )


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
    """One plain eager step: forward (the loss), backward, optimizer update.

    Then BYOL's target update (`update_target`), where the model has one.
    """
    optimizer.zero_grad(set_to_none=True)
    loss = model(*inputs)
    loss.backward()
    optimizer.step()
    update = getattr(model, "update_target", None)
    if update is not None:
        update()
    return loss
