"""The six reconstruction backbones (001 §4.1-4.4, 002 §4.2), each a small torch module + a config.

Every detector here inherits windowing, scaling, the training loop, scoring and masked minimax
feedback from :class:`~app.core.detectors.deep.TorchWindowDetector`; a class below only builds its
module and, where the error is not plain ``|X - X_hat|``, says how to compute it per step.

Defaults are deliberately small (hidden 64, latent 16, one or two layers, 10 epochs of at most
2,048 windows) so that a fit takes seconds on a CPU; raise them for GPU workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
from torch import nn

from app.core.detectors.deep import DeepConfig, TorchWindowDetector

# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DenseConfig(DeepConfig):
    """Dense (fully connected) autoencoder over the flattened window."""

    hidden: int = 64
    """Width of the hidden layer on each side of the bottleneck."""
    latent: int = 16
    """Bottleneck width (001 §4.1.4: 10-30 % of the input; 16 of 50 for a univariate window)."""


@dataclass(frozen=True)
class VAEConfig(DenseConfig):
    """Dense VAE; the score adds ``beta * KL`` per step (001 §4.2.3)."""

    beta: float = 1.0
    """Weight of the KL divergence in the loss and in the score (KL per window / (window * channels))."""


@dataclass(frozen=True)
class LSTMConfig(DeepConfig):
    """LSTM encoder -> latent vector -> LSTM decoder (001 §4.4.2)."""

    hidden: int = 64
    """LSTM hidden size."""
    latent: int = 16
    """Latent vector size."""
    layers: int = 1
    """LSTM layers in the encoder and in the decoder (001 uses 2; 1 is 2x faster on CPU)."""


@dataclass(frozen=True)
class LSTMVAEConfig(LSTMConfig):
    """LSTM-VAE (Park et al. 2018, 002 backbone)."""

    beta: float = 1.0
    """Weight of the KL divergence in the loss and in the score (KL per window / (window * channels))."""


@dataclass(frozen=True)
class USADConfig(DenseConfig):
    """USAD (Audibert et al. 2020): one encoder, two decoders trained adversarially."""

    alpha: float = 0.5
    """Score weight of ``|W - AE1(W)|``."""
    beta: float = 0.5
    """Score weight of ``|W - AE2(AE1(W))|``."""


@dataclass(frozen=True)
class TransformerConfig(DeepConfig):
    """Transformer encoder with an MLP head reconstructing every step (002 §4.2)."""

    d_model: int = 32
    """Token width (each time step is one token)."""
    heads: int = 4
    """Attention heads."""
    layers: int = 2
    """Encoder layers."""
    ff: int = 64
    """Feed-forward width inside each encoder layer and of the MLP head."""
    dropout: float = 0.1
    """Dropout in the encoder layers during training (off at inference)."""
    mask_token: bool = False
    """``True``: masked feedback hides masked steps behind a learned mask token (after the embedding, as masked
    autoencoders do) instead of setting them to 0, the 0-fill every other backbone uses. Off by default until
    the benchmark decides: on the KPI slice (2 % labels, seeds 0-2) it changed PR-AUC by -0.10/-0.03/-0.05
    against +0.17/+0.17/-0.47 for 0-fill: steadier, but not better on average."""


# ---------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------


class _DenseAE(nn.Module):
    def __init__(self, window: int, channels: int, hidden: int, latent: int) -> None:
        super().__init__()
        d = window * channels
        self.encoder = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, c = x.shape
        return cast(torch.Tensor, self.decoder(self.encoder(x.reshape(b, length * c))).reshape(b, length, c))


class _DenseVAE(nn.Module):
    def __init__(self, window: int, channels: int, hidden: int, latent: int) -> None:
        super().__init__()
        d = window * channels
        self.encoder = nn.Sequential(nn.Linear(d, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, d))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, length, c = x.shape
        h = self.encoder(x.reshape(b, length * c))
        mu, logvar = self.mu(h), self.logvar(h).clamp(-10.0, 10.0)
        z = _reparameterize(mu, logvar, self.training)
        return self.decoder(z).reshape(b, length, c), mu, logvar


class _LSTMAE(nn.Module):
    """001 §4.4.3: last encoder state -> latent, repeated over time as the decoder's input."""

    def __init__(self, channels: int, hidden: int, latent: int, layers: int, variational: bool = False) -> None:
        super().__init__()
        self.layers, self.variational = layers, variational
        self.encoder = nn.LSTM(channels, hidden, num_layers=layers, batch_first=True)
        self.to_latent = nn.Linear(hidden, 2 * latent if variational else latent)
        self.init_state = nn.Linear(latent, hidden)
        self.decoder = nn.LSTM(latent, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        _, (h, _) = self.encoder(x)  # h: (layers, B, hidden)
        code = self.to_latent(h[-1])  # (B, latent) or (B, 2 * latent)
        mu = logvar = None
        if self.variational:
            mu, logvar = code.chunk(2, dim=-1)
            logvar = logvar.clamp(-10.0, 10.0)
            z = _reparameterize(mu, logvar, self.training)
        else:
            z = code
        h0 = self.init_state(z).unsqueeze(0).repeat(self.layers, 1, 1)  # (layers, B, hidden)
        out, _ = self.decoder(z.unsqueeze(1).expand(-1, x.shape[1], -1).contiguous(), (h0, torch.zeros_like(h0)))
        return self.out(out), mu, logvar  # (B, L, C)


class _USAD(nn.Module):
    def __init__(self, window: int, channels: int, hidden: int, latent: int) -> None:
        super().__init__()
        d = window * channels
        self.encoder = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, latent), nn.ReLU())
        self.decoder1 = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, d))
        self.decoder2 = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, d))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``AE1(W)``, ``AE2(W)``, ``AE2(AE1(W))``, each ``(B, L, C)``."""
        b, length, c = x.shape
        z = self.encoder(x.reshape(b, length * c))
        w1 = self.decoder1(z)
        w2 = self.decoder2(z)
        w3 = self.decoder2(self.encoder(w1))
        return w1.reshape(b, length, c), w2.reshape(b, length, c), w3.reshape(b, length, c)


class _TransformerAE(nn.Module):
    """Per-step tokens -> post-norm transformer encoder -> MLP head: ``(B, L, C) -> (B, L, C)``.

    ``forward(x, mask)`` hides the ``mask`` steps ``(B, L)`` behind a learned mask token (feedback only).
    In eval mode the encoder runs on chunks of windows (:meth:`_encode_eval`): the same module and arithmetic,
    faster on a CPU, so training and stored models are unaffected.
    """

    optional_state = ("mask_token",)
    """Parameters models stored before they existed lack; they keep their initial value on load."""
    eval_chunk_tokens = 8192
    """Tokens (windows x steps) per encoder pass at inference on a CPU: keeps each chunk's attention maps in cache."""

    def __init__(self, window: int, channels: int, d_model: int, heads: int, layers: int, ff: int, dropout: float):
        super().__init__()
        self.embed = nn.Linear(channels, d_model)
        self.position = nn.Parameter(torch.randn(1, window, d_model) * 0.02)  # learned positional embedding
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(d_model, ff), nn.ReLU(), nn.Linear(ff, channels))
        # Zeros (an embedding with no content, position only) draw no random numbers, so the initial weights and
        # the fit are the same as before the token existed; only masked feedback uses and trains it.
        self.mask_token = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.embed(x)  # (B, L, d_model)
        if mask is not None:
            tokens = torch.where(mask[..., None], self.mask_token, tokens)
        h = tokens + self.position[:, : x.shape[1]]
        h = self.encoder(h) if self.training else self._encode_eval(h)  # (B, L, d_model)
        return cast(torch.Tensor, self.head(h))  # (B, L, C)

    def _encode_eval(self, h: torch.Tensor) -> torch.Tensor:
        """``self.encoder(h)`` in eval mode, on chunks of at most ``eval_chunk_tokens`` tokens on a CPU.

        The stock module's inference fast path forms every attention map of the batch at once (``score_batch``
        2,048 windows x 4 heads x 50 x 50 floats = 80 MB a layer) and becomes memory-bound; on chunks the same
        ``bmm``/``softmax`` stay in cache. A GPU has no such limit and prefers big launches.
        """
        chunk = max(1, self.eval_chunk_tokens // h.shape[1])
        if len(h) > chunk and h.device.type == "cpu":
            return torch.cat([self.encoder(h[i : i + chunk]) for i in range(0, len(h), chunk)])
        return cast(torch.Tensor, self.encoder(h))


def _reparameterize(mu: torch.Tensor, logvar: torch.Tensor, sample: bool) -> torch.Tensor:
    """``z = mu + sigma * eps`` while training; the mean at inference so scores are deterministic."""
    if not sample:
        return mu
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def _kl_per_step(mu: torch.Tensor, logvar: torch.Tensor, length: int, channels: int) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) of each window, spread over its ``length * channels`` values: ``(B, 1)``."""
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=-1)  # (B,)
    return (kl / (length * channels))[:, None]


def _error(x_hat: torch.Tensor, target: torch.Tensor, squared: bool) -> torch.Tensor:
    diff = x_hat - target
    return (diff.pow(2) if squared else diff.abs()).mean(dim=-1)  # (B, L)


# ---------------------------------------------------------------------------------------------
# Detectors
# ---------------------------------------------------------------------------------------------


class DenseAE(TorchWindowDetector):
    """Dense autoencoder over the flattened window (001 §4.1)."""

    name = "ae"
    summary: ClassVar[str] = "Dense autoencoder over the flattened window; fast, for short windows."
    starter_params: ClassVar[dict[str, Any]] = {"epochs": 10, "hidden": 64, "latent": 16}
    config_cls = DenseConfig
    hidden: int  # the config's fields, set by TorchWindowDetector.__init__
    latent: int

    def _build_module(self, n_channels: int) -> nn.Module:
        return _DenseAE(self.window, n_channels, self.hidden, self.latent)


class DenseVAE(TorchWindowDetector):
    """Dense VAE; step score = ``|X - X_hat|`` + ``beta`` * KL per step (001 §4.2.3)."""

    name = "vae"
    summary: ClassVar[str] = "Dense variational autoencoder; score adds the KL term."
    starter_params: ClassVar[dict[str, Any]] = {"epochs": 10, "hidden": 64, "latent": 16}
    config_cls = VAEConfig
    hidden: int  # the config's fields, set by TorchWindowDetector.__init__
    latent: int
    beta: float

    def _build_module(self, n_channels: int) -> nn.Module:
        return _DenseVAE(self.window, n_channels, self.hidden, self.latent)

    def _step_error(self, module: nn.Module, x_in: torch.Tensor, target: torch.Tensor, squared: bool) -> torch.Tensor:
        x_hat, mu, logvar = module(x_in)
        return _error(x_hat, target, squared) + self.beta * _kl_per_step(mu, logvar, *target.shape[1:])


class LSTMAE(TorchWindowDetector):
    """LSTM autoencoder (001 §4.4)."""

    name = "lstm_ae"
    summary: ClassVar[str] = "LSTM autoencoder; labels refine it with masked minimax feedback."
    starter_params: ClassVar[dict[str, Any]] = {"epochs": 10, "hidden": 64, "latent": 16, "feedback_epochs": 10}
    config_cls = LSTMConfig
    hidden: int  # the config's fields, set by TorchWindowDetector.__init__
    latent: int
    layers: int

    def _build_module(self, n_channels: int) -> nn.Module:
        return _LSTMAE(n_channels, self.hidden, self.latent, self.layers)

    def _step_error(self, module: nn.Module, x_in: torch.Tensor, target: torch.Tensor, squared: bool) -> torch.Tensor:
        return _error(module(x_in)[0], target, squared)


class LSTMVAE(TorchWindowDetector):
    """LSTM-VAE; step score = ``|X - X_hat|`` + ``beta`` * KL per step."""

    name = "lstm_vae"
    summary: ClassVar[str] = "LSTM variational autoencoder; smoother scores on noisy series."
    starter_params: ClassVar[dict[str, Any]] = {"epochs": 10, "hidden": 64, "latent": 16}
    config_cls = LSTMVAEConfig
    hidden: int  # the config's fields, set by TorchWindowDetector.__init__
    latent: int
    layers: int
    beta: float

    def _build_module(self, n_channels: int) -> nn.Module:
        return _LSTMAE(n_channels, self.hidden, self.latent, self.layers, variational=True)

    def _step_error(self, module: nn.Module, x_in: torch.Tensor, target: torch.Tensor, squared: bool) -> torch.Tensor:
        x_hat, mu, logvar = module(x_in)
        return _error(x_hat, target, squared) + self.beta * _kl_per_step(mu, logvar, *target.shape[1:])


class USAD(TorchWindowDetector):
    """USAD: shared encoder, decoders AE1 and AE2, two-phase adversarial training (Audibert et al. 2020).

    At epoch ``n`` (from 1), with ``W`` a window:
    ``L1 = 1/n |W - AE1(W)|^2 + (1 - 1/n) |W - AE2(AE1(W))|^2`` (encoder + decoder 1),
    ``L2 = 1/n |W - AE2(W)|^2 - (1 - 1/n) |W - AE2(AE1(W))|^2`` (encoder + decoder 2).
    Step score: ``alpha |W - AE1(W)| + beta |W - AE2(AE1(W))|``; feedback uses the same with squares.
    """

    name = "usad"
    summary: ClassVar[str] = "USAD: two decoders trained adversarially; robust on multichannel server metrics."
    starter_params: ClassVar[dict[str, Any]] = {"epochs": 10, "hidden": 64, "latent": 16}
    config_cls = USADConfig
    hidden: int  # the config's fields, set by TorchWindowDetector.__init__
    latent: int
    alpha: float
    beta: float

    def _build_module(self, n_channels: int) -> nn.Module:
        return _USAD(self.window, n_channels, self.hidden, self.latent)

    def _step_error(self, module: nn.Module, x_in: torch.Tensor, target: torch.Tensor, squared: bool) -> torch.Tensor:
        w1, _, w3 = module(x_in)
        return self.alpha * _error(w1, target, squared) + self.beta * _error(w3, target, squared)

    def _make_optimizers(self, module: nn.Module, lr: float) -> list[torch.optim.Optimizer]:
        enc = list(module.get_submodule("encoder").parameters())
        return [
            torch.optim.Adam(enc + list(module.get_submodule("decoder1").parameters()), lr=lr),
            torch.optim.Adam(enc + list(module.get_submodule("decoder2").parameters()), lr=lr),
        ]

    def _train_step(
        self, module: nn.Module, optimizers: list[torch.optim.Optimizer], batch: torch.Tensor, epoch: int
    ) -> float:
        opt1, opt2 = optimizers
        n = float(epoch)
        # Phase 1: AE1 learns to reconstruct and to fool AE2.
        w1, _, w3 = module(batch)
        loss1 = (1 / n) * (batch - w1).pow(2).mean() + (1 - 1 / n) * (batch - w3).pow(2).mean()
        opt1.zero_grad(set_to_none=True)
        loss1.backward()
        opt1.step()
        # Phase 2: AE2 learns to reconstruct and to tell real windows from AE1's output.
        w1, w2, w3 = module(batch)
        loss2 = (1 / n) * (batch - w2).pow(2).mean() - (1 - 1 / n) * (batch - w3).pow(2).mean()
        opt2.zero_grad(set_to_none=True)
        loss2.backward()
        opt2.step()
        return float(loss1.detach())


class TransformerAE(TorchWindowDetector):
    """Transformer encoder + MLP head reconstructing every step of the window (002 §4.2)."""

    name = "transformer"
    summary: ClassVar[str] = "Transformer encoder reconstructing every step; strongest, slowest on CPU."
    starter_params: ClassVar[dict[str, Any]] = {"epochs": 10, "d_model": 32}
    config_cls = TransformerConfig
    d_model: int  # the config's fields, set by TorchWindowDetector.__init__
    heads: int
    layers: int
    ff: int
    dropout: float
    mask_token: bool

    def _build_module(self, n_channels: int) -> nn.Module:
        return _TransformerAE(self.window, n_channels, self.d_model, self.heads, self.layers, self.ff, self.dropout)

    def _masked_step_error(
        self, module: nn.Module, x: torch.Tensor, mask: torch.Tensor, target: torch.Tensor, squared: bool
    ) -> torch.Tensor:
        """With ``mask_token``, masked steps' embeddings are replaced by the learned mask token (masked-autoencoder
        style): with 0-fill a token reading 0 is either hidden or a real 0 and the model cannot tell which."""
        if not self.mask_token:
            return super()._masked_step_error(module, x, mask, target, squared)
        return _error(module(x, mask), target, squared)
