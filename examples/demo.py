"""`make demo`: train the smallest real model flowcore has and sample from it.

Trains a rectified flow on the toy2d "moons" dataset through the Modality contract (dataset ->
tokenizer -> linear path), samples it with Euler steps, and writes a CSV and a scatter PNG.
"""

from pathlib import Path

import torch
from tqdm import tqdm

from flowcore.flow.path import expand_t
from flowcore.registry import get_registry

torch.manual_seed(0)
out = Path("outputs/demo")
registry = get_registry()
toy = registry.modality("toy2d")
data = registry.dataset("moons").build("train")
x_all = toy.tokenizer.encode(toy.collate([data[i]["toy2d"] for i in range(len(data))])).values

net = torch.nn.Sequential(torch.nn.Linear(3, 256), torch.nn.SiLU(), torch.nn.Linear(256, 256),
                          torch.nn.SiLU(), torch.nn.Linear(256, 2))
opt = torch.optim.Adam(net.parameters(), lr=2e-3)
path = toy.path
for step in tqdm(range(2000), desc="train moons"):
    x0 = x_all[torch.randint(len(x_all), (512,))]
    t = torch.sigmoid(torch.randn(512))
    ps = path.interpolate(x0, path.prior(x0.shape), t)
    v = net(torch.cat([ps.x_t, expand_t(t, x0).expand(-1, 1, 1)], -1))
    loss = ((v - ps.v) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()

tokens = toy.tokenizer.layout(2000)
x = path.prior(tokens.values.shape, generator=torch.Generator().manual_seed(0))
steps = 32
with torch.no_grad():
    for i in range(steps):
        t = torch.full((len(x),), 1 - i / steps)
        x = path.step(x, net(torch.cat([x, expand_t(t, x).expand(-1, 1, 1)], -1)), -1 / steps)
samples = toy.split(toy.tokenizer.decode(tokens.with_values(x)))
real = [data[i]["toy2d"] for i in range(2000)]
sw = toy.metrics()["sliced_wasserstein"](real, samples)
files = toy.codec.write_all(samples, out) + [toy.preview(samples, out / "samples.png")]
print(f"sliced Wasserstein to the data: {sw:.4f}")
print("outputs:", *files, sep="\n  ")
