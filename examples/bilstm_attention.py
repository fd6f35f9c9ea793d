"""A BiLSTM + attention classifier: a 2-layer bidirectional LSTM reads token sequences, attention
pools its outputs, a linear layer picks one of 4 classes (which of 4 marker tokens appears most).
Trained with nn.LSTM and with fusedlstm from the same initial weights; prints the time per step
and the accuracy of each, and plots both training curves.

    python examples/bilstm_attention.py [--device cuda] [--steps 60]
"""

import matplotlib.pyplot as plt
import torch
from common import parse_args, report, train_both, twin
from torch import nn

VOCAB, CLASSES = 500, 4


class AttentionClassifier(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 32)
        self.lstm = nn.LSTM(32, hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.score = nn.Linear(2 * hidden, 1)
        self.head = nn.Linear(2 * hidden, CLASSES)

    def forward(self, tokens):
        out, _ = self.lstm(self.embed(tokens))
        weights = torch.softmax(self.score(out), dim=1)
        return self.head((weights * out).sum(dim=1))


def sequences(batch: int, length: int, generator: torch.Generator):
    """Random tokens with markers 1..4 sprinkled in; the label is the most frequent marker."""
    tokens = torch.randint(CLASSES + 1, VOCAB, (batch, length), generator=generator)
    label = torch.randint(0, CLASSES, (batch,), generator=generator)
    spots = torch.randint(0, length, (batch, length // 8), generator=generator)
    markers = torch.randint(1, CLASSES + 1, spots.shape, generator=generator)
    markers[:, : spots.shape[1] // 2] = label[:, None] + 1  # the label's marker wins
    tokens.scatter_(1, spots, markers)
    return tokens, label


def accuracy(model, tokens, labels):
    with torch.no_grad():
        return (model(tokens).argmax(-1) == labels).float().mean().item()


def main():
    args = parse_args(__doc__.splitlines()[0], steps=60)
    batch, length, hidden = (4, 12, 8) if args.tiny else (32, 64, 64)
    torch.manual_seed(0)
    model = AttentionClassifier(hidden).to(args.device)
    fused = twin(model)
    generator = torch.Generator().manual_seed(0)
    data = [sequences(batch, length, generator) for _ in range(args.steps)]
    results = train_both(model, fused, data, nn.functional.cross_entropy, args, lr=3e-3)
    report("BiLSTM + attention training", results["nn.LSTM"][1], results["fusedlstm"][1])
    tokens, labels = sequences(256, length, torch.Generator().manual_seed(1))
    tokens, labels = tokens.to(args.device), labels.to(args.device)
    print(f"held-out accuracy: nn.LSTM {accuracy(model, tokens, labels):.2f}, "
          f"fusedlstm {accuracy(fused, tokens, labels):.2f}")
    plt.figure(figsize=(6, 4))
    for name, (losses, _) in results.items():
        plt.plot(losses, label=name, linestyle="--" if name == "fusedlstm" else "-")
    plt.xlabel("step")
    plt.ylabel("cross-entropy")
    plt.legend()
    path = args.out / "bilstm_attention.png"
    plt.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
