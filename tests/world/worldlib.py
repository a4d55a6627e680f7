"""What the world tests share: the world's description (world.env, written
by world.sh) and running a command inside one of its namespaces."""
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
WORLD = os.path.join(HERE, "world.sh")


def env_file(path):
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                out[k] = v
    return out


W = env_file(os.path.join(HERE, "world.env"))
URL = f'http://{W["COLLECTOR_ADDR"]}:{W["COLLECTOR_PORT"]}'


def in_ns(ns, *cmd, timeout=120, check=True):
    p = subprocess.run([WORLD, "exec", ns, "--", *cmd], capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{ns}: {' '.join(cmd)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p
