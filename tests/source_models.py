"""Small models written in the style of the codebases fastgan.convert meets: pytorch/examples DCGAN,
BigGAN-PyTorch (SN layers with u0/sv0, ccbn with a linear or an embedding, bn, hierarchical z, shared embedding,
projection discriminator) and PyTorch-StudioGAN (legacy spectral norm with eps=1e-6 on convs, linears and
embeddings, ConditionalBatchNorm2d with SN'd gain/bias, one shared ReLU(inplace=True)). Written from the public
descriptions of those codebases, at small sizes, for the tests and the convert bench suite."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm as legacy_sn

# ---------------------------------------------------------------- pytorch/examples DCGAN


class DCGANGenerator(nn.Module):
    def __init__(self, nz=16, ngf=8, nc=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())
        for m in self.modules():
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, z):
        return self.main(z)


# ---------------------------------------------------------------- BigGAN-PyTorch style


def _power_step(W, u, eps):
    # BigGAN's order: v from u, then u from v
    v = F.normalize(torch.matmul(u, W), eps=eps)
    u = F.normalize(torch.matmul(v, W.t()), eps=eps)
    return u, v


class BigSN:
    """BigGAN-style spectral norm mixin: buffers u0 (1, out) and sv0 (1,), iterate from u0, store in training."""

    def _init_sn(self, num_outputs, num_svs=1, num_itrs=1, eps=1e-12):
        self.num_svs, self.num_itrs, self.eps, self.transpose = num_svs, num_itrs, eps, False
        for i in range(num_svs):
            self.register_buffer(f"u{i}", torch.randn(1, num_outputs))
            self.register_buffer(f"sv{i}", torch.ones(1))

    def W_(self):
        W = self.weight.view(self.weight.size(0), -1)
        for _ in range(self.num_itrs):
            with torch.no_grad():
                u, v = _power_step(W, self.u0, self.eps)
                if self.training:
                    self.u0[:] = u
            sv = torch.squeeze(torch.matmul(torch.matmul(v, W.t()), u.t()))
        if self.training:
            with torch.no_grad():
                self.sv0[:] = sv
        return self.weight / sv


class BigSNConv2d(nn.Conv2d, BigSN):
    def __init__(self, cin, cout, kernel_size=3, padding=1, bias=True, eps=1e-12, num_svs=1):
        nn.Conv2d.__init__(self, cin, cout, kernel_size, padding=padding, bias=bias)
        self._init_sn(cout, num_svs=num_svs, eps=eps)

    def forward(self, x):
        return F.conv2d(x, self.W_(), self.bias, self.stride, self.padding)


class BigSNLinear(nn.Linear, BigSN):
    def __init__(self, cin, cout, bias=True, eps=1e-12):
        nn.Linear.__init__(self, cin, cout, bias)
        self._init_sn(cout, eps=eps)

    def forward(self, x):
        return F.linear(x, self.W_(), self.bias)


class BigSNEmbedding(nn.Embedding, BigSN):
    def __init__(self, n, dim, eps=1e-12):
        nn.Embedding.__init__(self, n, dim)
        self._init_sn(n, eps=eps)

    def forward(self, x):
        return F.embedding(x, self.W_())


class ccbn(nn.Module):
    def __init__(self, output_size, input_size, which_linear, eps=1e-5, momentum=0.1):
        super().__init__()
        self.output_size, self.input_size = output_size, input_size
        self.gain = which_linear(input_size, output_size)
        self.bias = which_linear(input_size, output_size)
        self.eps, self.momentum = eps, momentum
        self.cross_replica, self.mybn, self.norm_style = False, False, "bn"
        self.register_buffer("stored_mean", torch.zeros(output_size))
        self.register_buffer("stored_var", torch.ones(output_size))

    def forward(self, x, y):
        gain = (1 + self.gain(y)).view(y.size(0), -1, 1, 1)
        bias = self.bias(y).view(y.size(0), -1, 1, 1)
        out = F.batch_norm(x, self.stored_mean, self.stored_var, None, None, self.training, 0.1, self.eps)
        return out * gain + bias


class bn(nn.Module):
    def __init__(self, output_size, eps=1e-5, momentum=0.1):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(output_size))
        self.bias = nn.Parameter(torch.zeros(output_size))
        self.eps, self.momentum, self.cross_replica, self.mybn = eps, momentum, False, False
        self.register_buffer("stored_mean", torch.zeros(output_size))
        self.register_buffer("stored_var", torch.ones(output_size))

    def forward(self, x, y=None):
        return F.batch_norm(x, self.stored_mean, self.stored_var, self.gain, self.bias, self.training,
                            self.momentum, self.eps)


class GBlock(nn.Module):
    def __init__(self, cin, cout, which_conv, which_bn, activation, upsample):
        super().__init__()
        self.activation, self.upsample = activation, upsample
        self.conv1, self.conv2 = which_conv(cin, cout), which_conv(cout, cout)
        self.learnable_sc = cin != cout or upsample is not None
        if self.learnable_sc:
            self.conv_sc = which_conv(cin, cout, kernel_size=1, padding=0)
        self.bn1, self.bn2 = which_bn(cin), which_bn(cout)

    def forward(self, x, y):
        h = self.activation(self.bn1(x, y))
        if self.upsample:
            h = self.upsample(h)
            x = self.upsample(x)
        h = self.conv1(h)
        h = self.activation(self.bn2(h, y))
        h = self.conv2(h)
        if self.learnable_sc:
            x = self.conv_sc(x)
        return h + x


class BigGANGenerator(nn.Module):
    """Hierarchical z, a shared class embedding (G_shared=True: ccbn over [shared(y), z chunk] through SN linears)
    or per-layer embeddings (G_shared=False: ccbn's gain/bias are nn.Embedding)."""

    def __init__(self, ch=4, dim_z=12, n_classes=5, shared_dim=6, G_shared=True, eps=1e-6, resolution=16):
        super().__init__()
        self.ch, self.G_shared = ch, G_shared
        self.num_blocks = {16: 2, 32: 3}[resolution]
        self.z_chunk = dim_z // (self.num_blocks + 1)
        conv = functools.partial(BigSNConv2d, eps=eps)
        if G_shared:
            bn_linear = functools.partial(BigSNLinear, bias=False, eps=eps)
            cond = shared_dim + self.z_chunk
        else:
            bn_linear, cond = nn.Embedding, n_classes
        which_bn = functools.partial(ccbn, which_linear=bn_linear, input_size=cond)
        self.activation = nn.ReLU(inplace=False)
        self.shared = nn.Embedding(n_classes, shared_dim) if G_shared else nn.Identity()
        self.linear = BigSNLinear(self.z_chunk, 4 * ch * 4 * 4, eps=eps)
        up = functools.partial(F.interpolate, scale_factor=2)
        widths = [4 * ch] * (self.num_blocks - 1) + [2 * ch, ch]
        self.blocks = nn.ModuleList([nn.ModuleList([GBlock(a, b, conv, which_bn, self.activation, up)])
                                     for a, b in zip(widths[:-1], widths[1:])])
        self.output_layer = nn.Sequential(bn(ch), self.activation, conv(ch, 3))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
                nn.init.orthogonal_(m.weight)

    def forward(self, z, y):
        zs = torch.split(z, self.z_chunk, 1)
        z = zs[0]
        ys = [torch.cat([y, item], 1) for item in zs[1:]] if self.G_shared else [y] * self.num_blocks
        h = self.linear(z).view(z.size(0), -1, 4, 4)
        for index, blocklist in enumerate(self.blocks):
            for block in blocklist:
                h = block(h, ys[index])
        return torch.tanh(self.output_layer(h))


class DBlock(nn.Module):
    def __init__(self, cin, cout, which_conv, activation, preactivation, downsample):
        super().__init__()
        self.activation, self.preactivation, self.downsample = activation, preactivation, downsample
        self.conv1, self.conv2 = which_conv(cin, cout), which_conv(cout, cout)
        self.conv_sc = which_conv(cin, cout, kernel_size=1, padding=0)

    def forward(self, x):
        h = F.relu(x) if self.preactivation else x
        h = self.conv2(self.activation(self.conv1(h)))
        h = self.downsample(h)
        return h + self.downsample(self.conv_sc(x))


class BigGANDiscriminator(nn.Module):
    def __init__(self, ch=4, n_classes=5, eps=1e-6):
        super().__init__()
        conv = functools.partial(BigSNConv2d, eps=eps)
        self.activation = nn.ReLU(inplace=False)
        pool = nn.AvgPool2d(2)
        self.blocks = nn.ModuleList([nn.ModuleList([DBlock(3, ch, conv, self.activation, False, pool)]),
                                     nn.ModuleList([DBlock(ch, 2 * ch, conv, self.activation, True, pool)])])
        self.linear = BigSNLinear(2 * ch, 1, eps=eps)
        self.embed = BigSNEmbedding(n_classes, 2 * ch, eps=eps)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
                nn.init.orthogonal_(m.weight)

    def forward(self, x, y):
        h = x
        for blocklist in self.blocks:
            for block in blocklist:
                h = block(h)
        h = torch.sum(self.activation(h), [2, 3])
        out = self.linear(h)
        return out + torch.sum(self.embed(y) * h, 1, keepdim=True)


class G_D(nn.Module):
    """BigGAN's training wrapper: G (under no_grad unless training G) then D, on [G(z), x] or in two calls."""

    def __init__(self, G, D):
        super().__init__()
        self.G, self.D = G, D

    def forward(self, z, gy, x=None, dy=None, train_G=False, split_D=False):
        with torch.set_grad_enabled(train_G):
            G_z = self.G(z, self.G.shared(gy))
        if x is None:
            return self.D(G_z, gy)
        if split_D:
            return self.D(G_z, gy), self.D(x, dy)
        out = self.D(torch.cat([G_z, x]), torch.cat([gy, dy]))
        return torch.split(out, [G_z.shape[0], x.shape[0]])


# ---------------------------------------------------------------- PyTorch-StudioGAN style


def sn_conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=True):
    return legacy_sn(nn.Conv2d(cin, cout, kernel_size, stride, padding, bias=bias), eps=1e-6)


def sn_linear(in_features, out_features, bias=True):
    return legacy_sn(nn.Linear(in_features, out_features, bias=bias), eps=1e-6)


def sn_embedding(num_embeddings, embedding_dim):
    return legacy_sn(nn.Embedding(num_embeddings, embedding_dim), eps=1e-6)


class ConditionalBatchNorm2d(nn.Module):
    def __init__(self, in_features, out_features, g_linear=sn_linear):
        super().__init__()
        self.in_features = in_features
        self.bn = nn.BatchNorm2d(out_features, eps=1e-4, momentum=0.1, affine=False)
        self.gain = g_linear(in_features=in_features, out_features=out_features, bias=False)
        self.bias = g_linear(in_features=in_features, out_features=out_features, bias=False)

    def forward(self, x, y):
        gain = (1 + self.gain(y)).view(y.size(0), -1, 1, 1)
        bias = self.bias(y).view(y.size(0), -1, 1, 1)
        out = self.bn(x)
        return out * gain + bias


class GenBlock(nn.Module):
    def __init__(self, cin, cout, affine_dim, activation):
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(affine_dim, cin)
        self.bn2 = ConditionalBatchNorm2d(affine_dim, cout)
        self.activation = activation
        self.conv2d0 = sn_conv2d(cin, cout, kernel_size=1, padding=0)
        self.conv2d1 = sn_conv2d(cin, cout)
        self.conv2d2 = sn_conv2d(cout, cout)

    def forward(self, x, affine):
        x0 = x
        x = self.bn1(x, affine)
        x = self.activation(x)
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv2d1(x)
        x = self.bn2(x, affine)
        x = self.activation(x)
        x = self.conv2d2(x)
        x0 = F.interpolate(x0, scale_factor=2, mode="nearest")
        x0 = self.conv2d0(x0)
        return x + x0


class StudioGANGenerator(nn.Module):
    def __init__(self, z_dim=8, shared_dim=6, ch=4, num_classes=5):
        super().__init__()
        self.ch = ch
        self.chunk = z_dim // 3
        affine_dim = self.chunk + shared_dim
        self.activation = nn.ReLU(inplace=True)  # one instance for the whole model
        self.shared = sn_embedding(num_classes, shared_dim)
        self.linear0 = sn_linear(self.chunk, 4 * ch * 4 * 4)
        self.blocks = nn.ModuleList([nn.ModuleList([GenBlock(4 * ch, 2 * ch, affine_dim, self.activation)]),
                                     nn.ModuleList([GenBlock(2 * ch, ch, affine_dim, self.activation)])])
        self.bn4 = nn.BatchNorm2d(ch)
        self.conv2d5 = sn_conv2d(ch, 3)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
                nn.init.orthogonal_(m.weight_orig)

    def forward(self, z, label):
        zs = torch.split(z, self.chunk, 1)
        shared = self.shared(label)
        affines = [torch.cat([shared, item], 1) for item in zs[1:]]
        act = self.linear0(zs[0]).view(-1, 4 * self.ch, 4, 4)
        for index, blocklist in enumerate(self.blocks):
            for block in blocklist:
                act = block(act, affines[index])
        act = self.activation(self.bn4(act))
        return torch.tanh(self.conv2d5(act))


class DiscBlock(nn.Module):
    def __init__(self, cin, cout, activation):
        super().__init__()
        self.activation = activation
        self.conv2d0 = sn_conv2d(cin, cout, kernel_size=1, padding=0)
        self.conv2d1 = sn_conv2d(cin, cout)
        self.conv2d2 = sn_conv2d(cout, cout)
        self.average_pooling = nn.AvgPool2d(2)

    def forward(self, x):
        x0 = x
        x = self.activation(x)
        x = self.conv2d1(x)
        x = self.activation(x)
        x = self.conv2d2(x)
        x = self.average_pooling(x)
        x0 = self.average_pooling(self.conv2d0(x0))
        return x + x0


class StudioGANDiscriminator(nn.Module):
    """Projection discriminator with legacy SN on convs, the linear and the class embedding."""

    def __init__(self, ch=4, num_classes=5):
        super().__init__()
        self.activation = nn.ReLU(inplace=False)
        self.blocks = nn.ModuleList([DiscBlock(3, ch, self.activation), DiscBlock(ch, 2 * ch, self.activation)])
        self.linear1 = sn_linear(2 * ch, 1)
        self.embedding = sn_embedding(num_classes, 2 * ch)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
                nn.init.orthogonal_(m.weight_orig)

    def forward(self, x, label):
        h = x
        for block in self.blocks:
            h = block(h)
        h = torch.sum(self.activation(h), dim=[2, 3])
        return self.linear1(h) + torch.sum(self.embedding(label) * h, 1, keepdim=True)
