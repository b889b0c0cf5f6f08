"""Plain-PyTorch stand-ins for the reference's Lightning modules.

Written for these tests from the structure of hhi-aml/ecg-selfsupervised
(`models/xresnet1d.py`, `models/resnet_simclr.py`, `custom_simclr_bolts.py`,
`custom_byol_bolts.py`, `custom_swav_bolts.py`, `clinical_ts/cpc.py`,
`main_cpc_lightning.py`): the same submodules under the same attribute names
and `nn.Sequential` indices, so their `state_dict()` has the reference's
exact keys and shapes, including the keys PyTorch repeats for modules held
under two names. Only the forward passes the tests compare are implemented.
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn


def conv_layer(ni, nf, ks, stride=1, relu=True):
    """fastai `ConvLayer`: [0] Conv1d (no bias), [1] BatchNorm1d, [2] ReLU."""
    layers = [
        nn.Conv1d(ni, nf, ks, stride=stride, padding=(ks - 1) // 2, bias=False),
        nn.BatchNorm1d(nf),
    ]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """Bottleneck block: `convs` (also `convpath.0`) + `idpath` shortcut."""

    def __init__(self, ni, nf, stride, kernel_size=5, expansion=4):
        super().__init__()
        ni, nh, nf = ni * expansion, nf, nf * expansion
        self.convs = nn.Sequential(
            conv_layer(ni, nh, 1),
            conv_layer(nh, nh, kernel_size, stride=stride),
            conv_layer(nh, nf, 1, relu=False),
        )
        self.convpath = nn.Sequential(self.convs)
        idpath = []
        if stride != 1:
            idpath.append(nn.AvgPool1d(2, ceil_mode=True))
        if ni != nf:
            idpath.append(conv_layer(ni, nf, 1, relu=False))
        self.idpath = nn.Sequential(*idpath)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.convpath(x) + self.idpath(x))


class ConcatPool(nn.Module):
    """`AdaptiveConcatPool1d`: global max, then global average."""

    def forward(self, x):
        return torch.cat([x.amax(dim=2, keepdim=True), x.mean(2, keepdim=True)], 1)


def xresnet1d50(input_channels=3, num_classes=1000):
    """The reference's xresnet1d50: stem, max pool, 4 stages, head."""
    stem = [
        conv_layer(c_in, c_out, 5, stride=2 if i == 0 else 1)
        for i, (c_in, c_out) in enumerate(
            zip((input_channels, 32, 32), (32, 32, 64), strict=True)
        )
    ]
    sizes = [16, 64, 64, 64, 64]  # 64 // expansion, then widths
    stages = [
        nn.Sequential(
            *[
                ResBlock(
                    sizes[s] if b == 0 else sizes[s + 1],
                    sizes[s + 1],
                    stride=2 if (s > 0 and b == 0) else 1,
                )
                for b in range(depth)
            ]
        )
        for s, depth in enumerate((3, 4, 6, 3))
    ]
    head = nn.Sequential(
        ConcatPool(),
        nn.Flatten(),
        nn.BatchNorm1d(512),
        nn.Dropout(0.5),
        nn.Linear(512, num_classes),
    )
    return nn.Sequential(*stem, nn.MaxPool1d(3, stride=2, padding=1), *stages, head)


class ResNetSimCLR(nn.Module):
    """`features` = the xresnet without its head but with its concat pool;
    the first stem conv replaced by a 12-lead one with a bias; l1/l2."""

    def __init__(self, out_dim=16):
        super().__init__()
        resnet = xresnet1d50()
        children = list(resnet.children())
        self.features = nn.Sequential(*children[:-1], children[-1][0])
        num_features = resnet[-1][-1].in_features
        resnet[0][0] = nn.Conv1d(12, 32, kernel_size=5, stride=2, padding=2)
        self.l1 = nn.Linear(num_features, num_features)
        self.l2 = nn.Linear(num_features, out_dim)

    def forward(self, x):
        h = self.features(x).squeeze(-1)
        return h, self.l2(F.relu(self.l1(h)))


class SimCLRProjection(nn.Module):
    def __init__(self, input_dim=512, hidden_dim=512, output_dim=16):
        super().__init__()
        self.model = nn.Sequential(
            nn.Flatten(),
            nn.Linear(input_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, output_dim),
        )

    def forward(self, x):
        return F.normalize(self.model(x), dim=1)


class CustomSimCLR(nn.Module):
    """Attributes `encoder` and `projection`, as `cli_main` sets them."""

    def __init__(self):
        super().__init__()
        self.encoder = ResNetSimCLR()
        self.projection = SimCLRProjection()

    def forward(self, x):
        h = self.encoder(x)[0]
        return h, self.projection(h)


class MLP(nn.Module):
    def __init__(self, input_dim=512, hidden_size=512, output_dim=16):
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(input_dim, hidden_size, bias=False),
            nn.BatchNorm1d(hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, output_dim),
        )

    def forward(self, x):
        return self.model(x)


class SiameseArm(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = ResNetSimCLR()
        self.pooler = nn.AdaptiveAvgPool2d((1, 1))
        self.projector = MLP(512, 512, 16)
        self.predictor = MLP(16, 512, 16)

    def forward(self, x):
        y = self.encoder(x)[0]
        z = self.projector(y)
        return y, z, self.predictor(z)


class CustomBYOL(nn.Module):
    """`online_network` and `target_network`, a deep copy of the online arm
    (`randomize` then draws the two apart)."""

    def __init__(self):
        super().__init__()
        self.online_network = SiameseArm()
        self.target_network = copy.deepcopy(self.online_network)


class CustomResNet(nn.Module):
    """SwAV's network: ResNetSimCLR as `model`, its features also as
    `features`, projection head and 3000 prototypes."""

    def __init__(self, hidden_mlp=2048, output_dim=128, nmb_prototypes=3000):
        super().__init__()
        self.model = ResNetSimCLR()
        self.features = self.model.features
        self.projection_head = nn.Sequential(
            nn.Linear(512, hidden_mlp),
            nn.BatchNorm1d(hidden_mlp),
            nn.ReLU(),
            nn.Linear(hidden_mlp, output_dim),
        )
        self.prototypes = nn.Linear(output_dim, nmb_prototypes, bias=False)

    def forward(self, x):
        h = self.features(x).squeeze(-1)
        z = F.normalize(self.projection_head(h), dim=1)
        return h, z, self.prototypes(z)


class CustomSwAV(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = CustomResNet()
        self.softmax = nn.Softmax(dim=1)


class CPCModel(nn.Module):
    """`--fc-encoder` CPC: 4 x (Conv1d k=1, BatchNorm, ReLU), 2-layer LSTM,
    bias-free `proj`."""

    def __init__(self, input_channels=12, features=512, n_hidden=512, n_layers=2):
        super().__init__()
        layers = []
        for i in range(4):
            layers.append(
                nn.Sequential(
                    nn.Conv1d(
                        input_channels if i == 0 else features,
                        features,
                        kernel_size=1,
                        bias=False,
                    ),
                    nn.BatchNorm1d(features),
                    nn.ReLU(),
                )
            )
        self.encoder = nn.Sequential(*layers)
        self.rnn = nn.LSTM(features, n_hidden, num_layers=n_layers, batch_first=True)
        self.proj = nn.Linear(n_hidden, features, bias=False)

    def forward(self, x):
        encoded = self.encoder(x).transpose(1, 2)
        context, _ = self.rnn(encoded)
        return encoded, context, self.proj(context)


class LightningCPC(nn.Module):
    def __init__(self):
        super().__init__()
        self.model_cpc = CPCModel()


MODULES = {
    "simclr": CustomSimCLR,
    "byol": CustomBYOL,
    "swav": CustomSwAV,
    "cpc": LightningCPC,
}


def randomize(module, generator, calibration_input):
    """Random weights and non-trivial BatchNorm statistics, in place.

    Weights are drawn at Kaiming scale (BatchNorm gammas around 1, betas and
    every bias nonzero); the running statistics are then measured on
    `calibration_input` in training mode and perturbed. The last BatchNorm of
    each residual branch gets gammas around 0.2 (fastai starts them at zero):
    with gammas of order one the 16 blocks grow the features to ~35, where
    PyTorch's own float32 result differs from its float64 one by 3e-4 and no
    1e-5 comparison could pass; this way activations stay of order one.
    """
    with torch.no_grad():
        for name, param in module.named_parameters():
            if _is_batch_norm_param(module, name):
                continue
            if param.ndim >= 2:
                fan_in = param[0].numel()
                param.copy_(torch.randn(param.shape, generator=generator))
                param.mul_((2.0 / fan_in) ** 0.5)
            else:
                param.copy_(0.3 * torch.randn(param.shape, generator=generator))
        batch_norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm1d)]
        for bn in batch_norms:
            bn.weight.copy_(0.5 + torch.rand(bn.weight.shape, generator=generator))
            bn.bias.copy_(0.2 * torch.randn(bn.bias.shape, generator=generator))
            bn.reset_running_stats()
            bn.momentum = None  # cumulative: the stats of the calibration batch
        for block in module.modules():
            if isinstance(block, ResBlock):
                block.convs[-1][1].weight.mul_(0.2)
        module.train()
        _calibrate(module, calibration_input)
        for bn in batch_norms:
            bn.momentum = 0.1
    module.eval()


def _is_batch_norm_param(module, name):
    owner = module.get_submodule(name.rsplit(".", 1)[0])
    return isinstance(owner, nn.BatchNorm1d)


def _calibrate(module, x):
    if isinstance(module, (CustomSimCLR, SiameseArm)):
        module(x)
    elif isinstance(module, CustomBYOL):
        module.online_network(x)
        module.target_network(x)
    elif isinstance(module, CustomSwAV):
        module.model(x)
    else:
        module.model_cpc(x)


def lightning_checkpoint(module, hyper_parameters=None, **extra):
    """The dict `Trainer.save_checkpoint` writes (Lightning 1.1)."""
    checkpoint = {
        "epoch": 41,
        "global_step": 12345,
        "pytorch-lightning_version": "1.1.8",
        "callbacks": {},
        "optimizer_states": [],
        "lr_schedulers": [],
        "state_dict": module.state_dict(),
    }
    if hyper_parameters is not None:
        checkpoint["hparams_name"] = "kwargs"
        checkpoint["hyper_parameters"] = hyper_parameters
    checkpoint.update(extra)
    return checkpoint
