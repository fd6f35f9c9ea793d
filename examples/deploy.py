"""The sentiment model (here hidden 256, batch 16, 100 tokens) after fusedlstm.replace_lstm,
taken where nn.LSTM models go: exported to ONNX and run in onnxruntime, traced and scripted with
TorchScript (saved and loaded), per-sample gradients with torch.func (what DP-SGD clips), and a
gradient penalty (double backward). Every result is compared with the same model on nn.LSTM.

    python examples/deploy.py [--tiny] [--out DIR]
"""

import numpy as np
import onnxruntime
import torch
from common import parse_args, twin
from sentiment import Sentiment, reviews
from torch.func import functional_call, grad, vmap


def max_difference(a, b) -> float:
    return float((torch.as_tensor(a) - b).abs().max())


def onnx_roundtrip(model, tokens, expected, path) -> float:
    """Exported with a dynamic batch, run in onnxruntime on a batch of another size."""
    batch = torch.export.Dim("batch")
    torch.onnx.export(model, (tokens[:2],), path, input_names=["tokens"], output_names=["p"],
                      dynamic_shapes=({0: batch},), verbose=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(None, {"tokens": tokens.numpy()})
    return max_difference(probabilities, expected)


def torchscript_roundtrip(model, tokens, expected, path) -> tuple[float, float]:
    traced, scripted = torch.jit.trace(model, (tokens,)), torch.jit.script(model)
    results = []
    for name, compiled in (("traced", traced), ("scripted", scripted)):
        compiled.save(str(path / f"sentiment_{name}.pt"))
        loaded = torch.jit.load(str(path / f"sentiment_{name}.pt"))
        results.append(max_difference(loaded(tokens), expected))
    return results[0], results[1]


def sample_loss(model):
    """loss(params, sample, label) of one sample, for torch.func."""
    def loss(params, sample, label):
        p = functional_call(model, params, (sample[None],))
        return torch.nn.functional.binary_cross_entropy(p, label[None])
    return loss


def per_sample_grad_norms(model, tokens, labels) -> torch.Tensor:
    """|d loss_i / d params| for every sample i, in one vmap(grad(...)) call."""
    params = {name: p.detach() for name, p in model.named_parameters()}
    grads = vmap(grad(sample_loss(model)), in_dims=(None, 0, 0))(params, tokens, labels)
    return torch.stack([g.flatten(1).norm(dim=1) for g in grads.values()]).norm(dim=0)


def grad_norms_one_at_a_time(model, tokens, labels) -> torch.Tensor:
    """The same with a loop of grad(...): nn.LSTM cannot be vmapped."""
    params = {name: p.detach() for name, p in model.named_parameters()}
    norms = []
    for sample, label in zip(tokens, labels, strict=True):
        grads = grad(sample_loss(model))(params, sample, label)
        norms.append(torch.stack([g.norm() for g in grads.values()]).norm())
    return torch.stack(norms)


def gradient_penalty_grads(model, tokens) -> list[torch.Tensor]:
    """Gradients of |d p / d embeddings|^2 with respect to the parameters (double backward)."""
    embedded = model.embed(tokens).detach().requires_grad_()
    out, _ = model.lstm(embedded)
    p = torch.sigmoid(model.head(out[:, -1])).sum()
    (grad_embedded,) = torch.autograd.grad(p, embedded, create_graph=True)
    return torch.autograd.grad(grad_embedded.pow(2).sum(), list(model.lstm.parameters()))


def main():
    args = parse_args(__doc__.splitlines()[0], steps=1)
    batch, length, hidden = (6, 12, 16) if args.tiny else (16, 100, 256)
    torch.manual_seed(0)
    reference = Sentiment(hidden).eval()
    model = twin(reference).eval()  # fusedlstm.replace_lstm of a copy: same weights
    tokens, labels = reviews(batch, length, torch.Generator().manual_seed(0))
    args.out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        expected = reference(tokens)
        print(f"ONNX (onnxruntime) vs nn.LSTM: max difference "
              f"{onnx_roundtrip(model, tokens, expected, args.out / 'sentiment.onnx'):.1e}")
        traced, scripted = torchscript_roundtrip(model, tokens, expected, args.out)
        print(f"TorchScript traced / scripted, saved and loaded, vs nn.LSTM: {traced:.1e} / "
              f"{scripted:.1e}")
    ours = per_sample_grad_norms(model, tokens, labels)
    theirs = grad_norms_one_at_a_time(reference, tokens, labels)
    print(f"per-sample gradient norms (vmap(grad)) vs nn.LSTM one sample at a time: "
          f"{max_difference(ours, theirs):.1e}; norms {np.round(ours.numpy()[:4], 4)} ...")
    penalty = max(max_difference(a, b) for a, b in zip(gradient_penalty_grads(model, tokens),
                                                       gradient_penalty_grads(reference, tokens),
                                                       strict=True))
    print(f"gradient penalty (double backward) vs nn.LSTM: {penalty:.1e}")


if __name__ == "__main__":
    main()
