#!/usr/bin/env python3
"""Writes a policy-as-code directory for the `rampart plan` benchmark
(BENCHMARKS.md): the example fleet's files plus N generated devices.

Usage: bench-plan-devices.py DIR [N]   (N defaults to 100000)
"""
import pathlib
import random
import shutil
import sys

out = pathlib.Path(sys.argv[1])
count = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
out.mkdir(parents=True, exist_ok=True)
examples = pathlib.Path(__file__).resolve().parent.parent / "examples" / "fleet"
for name in ["groups.yaml", "linux.yaml", "macos.yaml", "tenant.yaml", "windows.yaml"]:
    shutil.copy(examples / name, out / name)

random.seed(1)
tags = ["web", "db", "prod", "lab", "finance", "dev", "exec", "MDE-Management"]
systems = [("linux", "22.04", "server"), ("windows", "10.0.22631", "workstation"),
           ("macos", "14.5", "workstation"), ("linux", "24.04", "workstation")]
with open(out / "devices.yaml", "w") as f:
    for i in range(count):
        os_, version, kind = random.choice(systems)
        chosen = random.sample(tags, random.randint(0, 3))
        f.write(f"kind: Device\nname: dev-{i:06d}\nos: {os_}\nos_version: \"{version}\"\n"
                f"type: {kind}\ntags: [{', '.join(chosen)}]\n---\n")
