"""What the world tests share: the world's description (world.env), running
a command inside one of its namespaces, bringing the world up and down, the
collector in its core and the volunteers' agents in its countries."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

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


def state_file(d):
    """DIR/state.env of a world that is up (world.sh writes it)."""
    return env_file(os.path.join(d, "state.env"))


def up(prefix):
    """Bring a world up in a fresh temporary directory and return it; exits
    77 (ctest: skipped) without root or namespaces."""
    if os.geteuid() != 0:
        print("SKIPPED: the world of network namespaces needs root", file=sys.stderr)
        sys.exit(77)
    d = tempfile.mkdtemp(prefix=prefix)
    p = subprocess.run([WORLD, "up", d], capture_output=True, text=True, timeout=120)
    if p.returncode == 77:
        print("SKIPPED: " + p.stderr.strip(), file=sys.stderr)
        sys.exit(77)
    if p.returncode != 0:
        raise AssertionError("world.sh up failed:\n" + p.stdout + p.stderr)
    return d


def down(d):
    """Tear the world down; its directory goes too unless PX_KEEP_WORLD is set."""
    subprocess.run([WORLD, "down", d], capture_output=True, timeout=120)
    if os.environ.get("PX_KEEP_WORLD") is None:
        shutil.rmtree(d, ignore_errors=True)


def world_sh(*args):
    """world.sh with these arguments (rotate, censor, ...); fails the test
    when it fails."""
    p = subprocess.run([WORLD, *args], capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError(f"world.sh {' '.join(args)} -> {p.returncode}\n{p.stdout}{p.stderr}")
    return p.stdout


def start_collector(collector_bin, d, ca, domains):
    """The collector in the core, on COLLECTOR_ADDR, with these targets and
    a SQLite database in d; returns once /healthz answers."""
    targets = os.path.join(d, "targets.txt")
    with open(targets, "w") as f:
        f.write("\n".join(domains) + "\n")
    log = open(os.path.join(d, "collector.log"), "w")
    proc = subprocess.Popen(
        [WORLD, "exec", "core", "--", collector_bin, "--listen", f'{W["COLLECTOR_ADDR"]}:{W["COLLECTOR_PORT"]}',
         "--db", f"sqlite:{d}/collector.sqlite", "--ca-file", ca, "--targets", targets,
         "--allow-nonpublic-addresses"], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 20
    while in_ns("core", "curl", "-fsS", f"{URL}/healthz", check=False).returncode != 0:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError("the collector did not start: see " + os.path.join(d, "collector.log"))
        time.sleep(0.1)
    return proc


def stop(proc):
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def agent_config(d, cc):
    return os.path.join(d, "agents", cc + ".conf")


def agent_state(d, cc):
    return os.path.join(d, "agents", cc)


def setup_agent(agent_bin, d, cc, ca):
    """`parallax setup` for the volunteer in country cc: consent, config
    (its country's resolver, trust store ca, the world's addresses allowed),
    key."""
    in_ns(cc, agent_bin, "setup", "--yes", "--config", agent_config(d, cc),
          "--state-dir", agent_state(d, cc), "--collector", URL,
          "--resolver", W["RESOLVER_" + cc], "--no-system-resolver",
          "--ca-file", ca, "--probe-cc", cc, "--probe-asn", W["ASN_" + cc],
          "--allow-nonpublic-addresses", "--timeout", "3000")


def run_round(agent_bin, d, countries):
    """One round: `parallax run` (what the timer starts) in every country at
    once; {cc: (exit status, stderr)}."""
    procs = {cc: subprocess.Popen([WORLD, "exec", cc, "--", agent_bin, "run", "--config", agent_config(d, cc)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cc in countries}
    results = {}
    for cc, p in procs.items():
        _, err = p.communicate(timeout=300)
        results[cc] = (p.returncode, err)
    return results
