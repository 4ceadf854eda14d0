"""Why vcagan's classifier collapses on images: one training run on scikit-learn's 8x8
digits with VirtualLabelTrainer in process, logging the dynamics every `--every` steps.

Each checkpoint logs P(C) (kept classes, entropy), the clusters Q assigns to every real image
(over the kept classes, as the service does) scored against the hidden labels (NMI, ARI,
majority-mapped accuracy), and how well Q recovers the generator's class from its fakes
(accuracy of argmax Q(G(z, c)) == c with c uniform over the kept classes): if G ignores c,
Q cannot learn classes from fakes. The final row is appended to a jsonl file.

    OMP_NUM_THREADS=1 python benchmarks/vcagan_probe.py --name base --set lambda_creg=5
    ... --set prior_decay=0.999 --set lr_d=2e-4      # any TrainConfig option, value as JSON
    ... --separate-q                                  # Q its own network (the author's CGPGAN)

`--separate-q` tries lever (c) of benchmarks/results/unlabelled.md without touching the
product: Q becomes a second critic-shaped network whose class head alone is used, with its
own AdamW group (lr 1e-4, weight decay 1e-4, betas (0, 0.99), as the author's CGPGAN); D
keeps its adversarial head and its own lr. The losses are unchanged: the adversarial and R1
terms reach D only (the real images' classes are a detached argmax of Q), the
classification and classifier-penalty terms reach Q only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.unlabelled import NETWORKS, cluster_scores, load_dataset  # noqa: E402
from models.networks import Discriminator  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.loop import TrainingSet  # noqa: E402
from training.vcagan import VirtualLabelTrainer, discovered_classes  # noqa: E402


def snapshot(trainer: VirtualLabelTrainer, x: np.ndarray, y: np.ndarray) -> dict:
    prior = trainer.prior.probs.cpu().tolist()
    kept = discovered_classes(prior, trainer.config.min_class_probability) or [
        int(np.argmax(prior))
    ]
    assigned = trainer.assign(x, kept)
    with torch.no_grad():
        n = 64 * len(kept)
        classes = torch.tensor(kept).repeat_interleave(64)
        gen = trainer.generator.eval()
        fake = gen(torch.randn(n, trainer.config.z_dim), classes)
        gen.train()
        _, logits = trainer.critic.eval()(fake)
        trainer.critic.train()
        fake_acc = float((logits.argmax(1) == classes).float().mean())
    return {
        "clusters": len(kept),
        "nonempty": int(len(np.unique(assigned))),
        "entropy": round(trainer.prior.entropy(), 3),
        "top_p": [round(prior[c], 3) for c in kept[:6]],
        **cluster_scores(y, assigned),
        "q_fake_acc": round(fake_acc, 3),
    }


class SeparateQ(torch.nn.Module):
    """(D's adversarial scores, Q's logits): the critic interface of VirtualLabelLoss with
    the classifier a network of its own."""

    def __init__(self, critic: Discriminator):
        super().__init__()
        self.d = critic
        self.q = Discriminator(**critic.config())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.d(x)[0], self.q(x)[1]


def separate_q(trainer: VirtualLabelTrainer, lr: float, weight_decay: float) -> None:
    config = trainer.config
    trainer.critic = SeparateQ(trainer.critic)
    trainer.opt_d = torch.optim.AdamW(
        [
            {"params": trainer.critic.d.parameters(), "lr": config.lr_d, "weight_decay": 0.0},
            {"params": trainer.critic.q.parameters(), "lr": lr, "weight_decay": weight_decay},
        ],
        betas=(config.beta1, config.beta2),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--separate-q", action="store_true", help="Q its own network")
    parser.add_argument("--q-lr", type=float, default=1e-4)
    parser.add_argument("--q-weight-decay", type=float, default=1e-4)
    parser.add_argument("--set", action="append", default=[], help="option=json value")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/vcagan_probe.jsonl"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, y = load_dataset(args.dataset, tiny=False)
    options = {
        "method": "vcagan",
        "max_classes": 16,
        "steps": args.steps,
        "seed": 0,
        "holdout_fraction": 0.0,
        "report": "none",
        **NETWORKS[args.dataset],
    }
    for item in args.set:
        key, value = item.split("=", 1)
        options[key] = json.loads(value)
    config = TrainConfig(**options)
    torch.manual_seed(config.seed)
    images = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    data = TrainingSet(images.contiguous(), torch.zeros(len(x), dtype=torch.int64), ["x"])
    trainer = VirtualLabelTrainer(config, data, torch.device("cpu"))
    if args.separate_q:
        separate_q(trainer, args.q_lr, args.q_weight_decay)
    start = time.process_time()
    row: dict = {}
    for step in range(1, args.steps + 1):
        stats = trainer.step()
        if step % args.every == 0 or step == args.steps:
            row = {"step": step, **snapshot(trainer, x, y)}
            row |= {k: round(float(v), 3) for k, v in stats.items()}
            print(json.dumps(row), flush=True)
    row = {"name": args.name, "set": args.set, "separate_q": args.separate_q}
    row |= {"cpu_s": round(time.process_time() - start, 1)}
    row |= {"final": snapshot(trainer, x, y)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
